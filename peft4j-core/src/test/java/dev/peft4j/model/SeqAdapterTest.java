package dev.peft4j.model;

import dev.peft4j.Shared;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Per-sequence adapters in one packed forward give, row for row, what the same adapter attached to the model's modules gives
 * for that sequence alone (LoRA, output and feed-forward (IA)³, the base), and the base weights stay untouched.
 */
class SeqAdapterTest {
    @TempDir
    static Path tmp;
    static Gemma3Model model;

    @BeforeAll
    static void setUp() throws Exception {
        Path dir = tmp.resolve("m");
        RandomInit.write(Shared.resource("tiny-gemma3-config.json"), dir, 7, false, 0.1);
        model = Gemma3Model.load(dir);
    }

    static float[] rnd(Random r, int n, float s) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian() * s;
        return a;
    }

    static Map<String, Linear.Lora> lora(long seed) {
        Random r = new Random(seed);
        Map<String, Linear.Lora> m = new HashMap<>();
        for (Linear l : model.weights.linears()) {
            if (!(l.name.endsWith("q_proj") || l.name.endsWith("v_proj") || l.name.endsWith("down_proj") || l.name.endsWith("o_proj") || l.name.endsWith("up_proj"))) continue;
            int rk = 4;
            m.put(l.name, new Linear.Lora(rk, 2f, rnd(r, rk * l.in(), 0.2f), rnd(r, l.out() * rk, 0.2f), l.in(), l.out()));
        }
        return m;
    }

    static Map<String, Linear.Ia3> ia3(long seed) {
        Random r = new Random(seed);
        Map<String, Linear.Ia3> m = new HashMap<>();
        for (Linear l : model.weights.linears()) {
            boolean ff = l.name.endsWith("down_proj");
            if (!(ff || l.name.endsWith("k_proj") || l.name.endsWith("v_proj"))) continue;
            float[] v = rnd(r, ff ? l.in() : l.out(), 0.3f);
            for (int i = 0; i < v.length; i++) v[i] += 1f;
            m.put(l.name, new Linear.Ia3(v, ff));
        }
        return m;
    }

    /** Logits of every row of {@code ids} with the adapter attached to the model (the training/generate path). */
    static float[] attached(int[] ids, Map<String, Linear.Lora> lo, Map<String, Linear.Ia3> ia) {
        for (Linear l : model.weights.linears()) { l.lora = lo.get(l.name); l.ia3 = ia.get(l.name); }
        try {
            float[] h = model.forward(List.of(new Gemma3Model.Input(model.newCache(), null, ids)), null);
            return model.logits(h, range(0, ids.length));
        } finally {
            for (Linear l : model.weights.linears()) { l.lora = null; l.ia3 = null; }
        }
    }

    static int[] range(int a, int b) {
        int[] r = new int[b - a];
        for (int i = 0; i < r.length; i++) r[i] = a + i;
        return r;
    }

    @Test
    void packedPerSequenceAdaptersMatchAttachedAdapters() {
        var lo1 = lora(1);
        var lo2 = lora(2);
        var ia = ia3(3);
        SeqAdapter a1 = SeqAdapter.of("lora1", model.weights, lo1, Map.of());
        SeqAdapter a2 = SeqAdapter.of("lora2", model.weights, lo2, Map.of());
        SeqAdapter a3 = SeqAdapter.of("ia3", model.weights, Map.of(), ia);
        int[][] seqs = {{2, 5, 9, 11, 40, 7}, {2, 8, 8}, {2, 100, 200, 300, 3, 4, 5, 6, 7}, {2, 17}, {2, 33, 44, 55, 66}};
        SeqAdapter[] who = {a1, null, a2, a3, a1};
        List<Map<String, Linear.Lora>> los = new ArrayList<>(List.of(lo1, Map.of(), lo2, Map.of(), lo1));
        List<Map<String, Linear.Ia3>> ias = new ArrayList<>(List.of(Map.of(), Map.of(), Map.of(), ia, Map.of()));
        float[] before = model.weights.layers[0].q.weight.toFloatArray();
        List<Gemma3Model.Input> in = new ArrayList<>();
        int n = 0;
        for (int s = 0; s < seqs.length; s++) { in.add(new Gemma3Model.Input(model.newCache(), null, seqs[s], who[s])); n += seqs[s].length; }
        float[] lg = model.logits(model.forward(in, null), range(0, n));
        int V = model.config.vocabSize(), at = 0;
        for (int s = 0; s < seqs.length; s++) {
            float[] want = attached(seqs[s], los.get(s), ias.get(s));
            float[] base = attached(seqs[s], Map.of(), Map.of());
            double maxDiff = 0, adapterEffect = 0;
            for (int i = 0; i < want.length; i++) {
                maxDiff = Math.max(maxDiff, Math.abs(want[i] - lg[at * V + i]));
                adapterEffect = Math.max(adapterEffect, Math.abs(want[i] - base[i]));
            }
            assertTrue(maxDiff < 1e-4, "sequence " + s + ": packed vs attached differ by " + maxDiff);
            if (who[s] != null) assertTrue(adapterEffect > 1e-2, "sequence " + s + ": the adapter should change the logits");
            at += seqs[s].length;
        }
        assertArrayEquals(before, model.weights.layers[0].q.weight.toFloatArray());
        for (Linear l : model.weights.linears()) { assertNull(l.lora); assertNull(l.ia3); }
    }
}
