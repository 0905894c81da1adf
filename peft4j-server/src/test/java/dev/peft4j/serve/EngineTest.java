package dev.peft4j.serve;

import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Generator;
import dev.peft4j.model.Models;
import dev.peft4j.model.Sampler;
import dev.peft4j.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The engine from Java: adapters per request match the single-adapter generate path; greedy output does not depend on batching. */
class EngineTest {
    @TempDir
    static Path tmp;
    static TinyServe tiny;
    static Tokenizer tok;
    static Gemma3Model model;

    @BeforeAll
    static void setUp() throws Exception {
        tiny = new TinyServe(tmp);
        tok = Tokenizer.load(tiny.model);
        model = Gemma3Model.load(tiny.model);
    }

    @AfterAll
    static void tearDown() { tok.close(); }

    static Engine engine(int prefillChunk) {
        Engine e = new Engine(model, tok, new int[]{1}, new Engine.Config(16, 64, 1 << 16, prefillChunk), null);
        for (String a : List.of("pt", "lora", "lora2", "ia3", "prefix")) e.adapters.load(a, tiny.root.resolve(a));
        return e;
    }

    static int[] tokens(Engine.Stream s) throws InterruptedException {
        List<Integer> t = new ArrayList<>();
        for (Engine.Event ev : s.collect()) if (ev instanceof Engine.Token k) t.add(k.id());
        return t.stream().mapToInt(Integer::intValue).toArray();
    }

    static Engine.Request req(Engine e, String adapter, int[] prompt, int max) {
        return new Engine.Request(prompt, adapter == null ? null : e.adapters.get(adapter), SamplingParams.greedy(max).withIgnoreEos(true), null);
    }

    static int[] prompt(int seed, int len) {
        int[] p = new int[len];
        p[0] = 2;
        for (int i = 1; i < len; i++) p[i] = 3 + (int) ((seed * 7919L + i * 104729L) % 1000);
        return p;
    }

    @Test
    void everyAdapterTypeMatchesTheSingleAdapterGeneratePath() throws Exception {
        try (Engine e = engine(8)) {
            for (String a : new String[]{null, "pt", "lora", "ia3", "prefix"}) {
                int[] p = prompt(a == null ? 1 : a.length(), 21);
                int[] got = tokens(e.submit(req(e, a, p, 12)));
                Gemma3LM lm = Models.load(tiny.model, a == null ? null : tiny.root.resolve(a));
                int[] want = new Generator(lm).generate(p, 12, new Sampler(Sampler.Options.greedy()), new int[0], null, null, null).tokens();
                assertArrayEquals(want, got, "adapter " + a);
            }
            // the adapters do change the output (else the comparison above proves little)
            int[] p = prompt(5, 21);
            int[] base = tokens(e.submit(req(e, null, p, 12)));
            for (String a : new String[]{"pt", "lora", "ia3", "prefix"}) assertFalse(Arrays.equals(base, tokens(e.submit(req(e, a, p, 12)))), a);
        }
    }

    @Test
    void greedyOutputDoesNotDependOnBatching() throws Exception {
        String[] kinds = {null, "pt", "lora", "lora2", "ia3", "prefix"};
        try (Engine e = engine(16)) {
            int[] p = prompt(42, 37);
            int[][] alone = new int[kinds.length][];
            for (int k = 0; k < kinds.length; k++) alone[k] = tokens(e.submit(req(e, kinds[k], p, 20)));
            for (int k = 0; k < kinds.length; k++) {
                List<Engine.Stream> others = new ArrayList<>();
                for (int i = 0; i < 15; i++) others.add(e.submit(req(e, kinds[(i + k) % kinds.length], prompt(i, 5 + 3 * i), 10 + i)));
                int[] among = tokens(e.submit(req(e, kinds[k], p, 20)));
                for (Engine.Stream s : others) s.collect();
                assertArrayEquals(alone[k], among, "adapter " + kinds[k] + ": alone vs among 15 others");
            }
            assertTrue(e.stepsRun() > 0);
        }
    }

    @Test
    void aFullKvCacheAdmitsByPromptAndPreemptsInsteadOfReservingMaxTokens() throws Exception {
        int[][] prompts = new int[6][];
        for (int i = 0; i < prompts.length; i++) prompts[i] = prompt(20 + i, 12);
        int[][] alone = new int[prompts.length][];
        try (Engine e = engine(16)) {
            for (int i = 0; i < prompts.length; i++) alone[i] = tokens(e.submit(req(e, null, prompts[i], 40)));
        }
        // 120 positions: each request alone needs 12 + 40 (max_tokens reserved up front, only two could run at once); all six
        // prompts are admitted together, and as they grow the last admitted are preempted and recomputed later
        try (Engine e = new Engine(model, tok, new int[]{1}, new Engine.Config(16, 64, 120, 16), null)) {
            List<Engine.Stream> all = new ArrayList<>();
            for (int[] p : prompts) all.add(e.submit(req(e, null, p, 40)));
            for (int i = 0; i < prompts.length; i++) assertArrayEquals(alone[i], tokens(all.get(i)), "request " + i + " after preemption");
            assertTrue(e.preemptions() > 0, "the cache was full at some point");
            assertEquals(0, e.kvReserved(), "every sequence gave back what it held");
        }
    }

    @Test
    void aFailingStepEndsItsSequencesWithAnErrorAndTheEngineKeepsServing() throws Exception {
        try (Engine e = new Engine(model, tok, new int[]{1}, new Engine.Config(1, 8, 1 << 16, 16), null)) {
            Engine.Stream first = e.submit(req(e, null, prompt(1, 5), 100));
            int[] bad = prompt(2, 6);
            Engine.Stream second = e.submit(req(e, null, bad, 5));
            bad[3] = 1 << 20;        // corrupted after validation: the forward of its step throws
            assertEquals(100, tokens(first).length);
            Engine.Finished f = (Engine.Finished) second.collect().getLast();
            assertTrue(f.reason().startsWith("error"), f.reason());
            assertEquals(0, e.running());
            assertEquals(4, tokens(e.submit(req(e, null, prompt(3, 6), 4))).length);
        }
    }

    @Test
    void cancelFreesTheSequenceAndTheEngineKeepsServing() throws Exception {
        try (Engine e = engine(16)) {
            Engine.Stream s = e.submit(req(e, "lora", prompt(3, 10), 200));
            assertNotNull(s.poll(10_000));
            s.cancel();
            long t0 = System.currentTimeMillis();
            while (e.running() > 0 && System.currentTimeMillis() - t0 < 10_000) Thread.sleep(5);
            assertEquals(0, e.running());
            assertEquals(5, tokens(e.submit(req(e, null, prompt(4, 6), 5))).length);
        }
    }
}
