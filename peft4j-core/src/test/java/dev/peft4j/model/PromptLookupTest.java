package dev.peft4j.model;

import dev.peft4j.Shared;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.*;

/** Greedy decoding with prompt lookup gives exactly the tokens of plain greedy decoding, and gains tokens where text repeats. */
class PromptLookupTest {
    static Gemma3LM lm;

    @BeforeAll
    static void load() {
        lm = Models.load(Shared.require("fixtures").resolve("tiny-gemma3"), null);
    }

    private static Generator.Result gen(int[] prompt, int maxNew, float penalty, int[] eos, int lookup) {
        Sampler s = new Sampler(new Sampler.Options(0f, 0, 1f, 0f, penalty, 0));
        return new Generator(lm).generate(prompt, maxNew, s, eos, null, null, null, lookup);
    }

    @Test
    void sameTokensAsPlainGreedyWithDraftsAccepted() {
        int[] prompt = {2, 17, 33, 17, 33, 17, 33, 90, 17, 33};
        for (float penalty : new float[]{1f, 1.3f}) {
            Generator.Result plain = gen(prompt, 80, penalty, new int[0], 0);
            assertEquals(80, plain.tokens().length);
            int acceptedSomewhere = 0;
            for (int lookup : new int[]{1, 3, 7, 14, 30}) {
                Generator.Result spec = gen(prompt, 80, penalty, new int[0], lookup);
                assertArrayEquals(plain.tokens(), spec.tokens(), "lookup " + lookup + ", penalty " + penalty);
                assertEquals(plain.stopReason(), spec.stopReason());
                assertTrue(spec.draftTokens() > 0, "drafts were proposed");
                assertTrue(spec.acceptedTokens() <= spec.draftTokens());
                acceptedSomewhere += spec.acceptedTokens();
            }
            if (penalty == 1f) assertTrue(acceptedSomewhere > 0, "greedy text of the tiny model repeats: some drafts are confirmed");
        }
    }

    @Test
    void stopsAtTheSameEosAndLimit() {
        int[] prompt = {2, 17, 33, 17, 33, 17, 33, 90, 17, 33};
        int[] plain = gen(prompt, 60, 1f, new int[0], 0).tokens();
        int eos = plain[37];   // a token the text reaches: generation ends at its first occurrence
        Generator.Result a = gen(prompt, 60, 1f, new int[]{eos}, 0), b = gen(prompt, 60, 1f, new int[]{eos}, 4);
        assertEquals("eos", a.stopReason());
        assertArrayEquals(a.tokens(), b.tokens());
        assertEquals(a.stopReason(), b.stopReason());
        for (int n = 1; n <= 7; n++) assertArrayEquals(Arrays.copyOf(plain, n), gen(prompt, n, 1f, new int[0], 5).tokens(), "limit " + n);
    }

    /** With an adapter: prompt tuning's virtual tokens sit before the caller's in the cache; LoRA runs on every row. */
    @Test
    void sameTokensWithPromptTuningAndLoraAdapters() {
        java.nio.file.Path fx = Shared.require("fixtures");
        int[] prompt = {2, 17, 33, 17, 33, 17, 33, 90, 17, 33};
        for (String adapter : new String[]{"tiny-prompt-tuning", "tiny-lora"}) {
            Gemma3LM a = Models.load(fx.resolve("tiny-gemma3"), fx.resolve(adapter));
            for (float penalty : new float[]{1f, 1.3f}) {
                Sampler s0 = new Sampler(new Sampler.Options(0f, 0, 1f, 0f, penalty, 0)), s1 = new Sampler(new Sampler.Options(0f, 0, 1f, 0f, penalty, 0));
                Generator.Result plain = new Generator(a).generate(prompt, 60, s0, new int[0], null, null, null, 0);
                Generator.Result spec = new Generator(a).generate(prompt, 60, s1, new int[0], null, null, null, 7);
                assertArrayEquals(plain.tokens(), spec.tokens(), adapter + ", penalty " + penalty);
                assertTrue(spec.draftTokens() > 0);
            }
        }
    }

    @Test
    void lookupFindsTheFirstEarlierOccurrenceOfTheLastTokens() {
        assertArrayEquals(new int[]{3, 1, 2}, Generator.lookup(new int[]{1, 2, 3, 1, 2}, 5, 3));
        assertArrayEquals(new int[]{3}, Generator.lookup(new int[]{1, 2, 3, 1, 2}, 5, 1));
        assertArrayEquals(new int[]{7, 9}, Generator.lookup(new int[]{5, 6, 7, 9, 6}, 5, 2), "falls back to the last token alone");
        assertArrayEquals(new int[0], Generator.lookup(new int[]{1, 2, 3}, 3, 4));
        assertArrayEquals(new int[0], Generator.lookup(new int[]{1, 2, 1, 2}, 4, 0));
    }

    @Test
    void truncatedSessionContinuesAsIfTheDraftsWereNeverAppended() {
        int[] p = {2, 40, 41, 42};
        CausalLM.Session a = lm.newSession(), b = lm.newSession();
        a.append(p);
        b.append(p);
        a.appendAll(new int[]{7, 8, 9, 10});
        a.truncate(p.length + 1);
        assertEquals(p.length + 1, a.length());
        b.append(new int[]{7});
        assertArrayEquals(b.append(new int[]{55}).clone(), a.append(new int[]{55}).clone());
        assertThrows(IllegalArgumentException.class, () -> a.truncate(a.length() + 1));
    }
}
