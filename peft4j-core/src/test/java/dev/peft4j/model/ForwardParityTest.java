package dev.peft4j.model;

import dev.peft4j.Shared;
import dev.peft4j.io.SafeTensors;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The forward pass against transformers' outputs for the tiny random Gemma 3 (../shared/fixtures). */
class ForwardParityTest {

    static float maxAbsDiff(float[] a, int ao, float[] b, int bo, int n) {
        float m = 0;
        for (int i = 0; i < n; i++) m = Math.max(m, Math.abs(a[ao + i] - b[bo + i]));
        return m;
    }

    static int[][] rows(int[] flat, int b, int t) {
        int[][] r = new int[b][t];
        for (int i = 0; i < b; i++) System.arraycopy(flat, i * t, r[i], 0, t);
        return r;
    }

    @Test
    void logitsAndHiddenStatesMatchTransformers() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-gemma3-reference.safetensors"))) {
            int[] ids = ref.get("input_ids").toInts();
            int B = 3, T = 20, V = 1024, H = 64;
            float[] refLogits = ref.get("logits").toFloats();
            int[][] seqs = rows(ids, B, T);
            List<Gemma3Model.Input> in = new ArrayList<>();
            for (int[] s : seqs) in.add(new Gemma3Model.Input(m.newCache(), null, s));
            Tape tape = new Tape();
            float[] hidden = m.forward(in, tape);
            int[] all = new int[B * T];
            for (int i = 0; i < all.length; i++) all[i] = i;
            float[] logits = m.logits(hidden, all);
            assertTrue(maxAbsDiff(logits, 0, refLogits, 0, B * T * V) < 1e-4, "logits differ by " + maxAbsDiff(logits, 0, refLogits, 0, B * T * V));
            for (int k = 0; k <= 6; k++) {
                float[] hs = ref.get("hidden_states." + k).toFloats();
                float[] mine = k == 0 ? tape.embedded : k == 6 ? tape.finalOut : tape.layers[k].xIn;
                float d = maxAbsDiff(mine, 0, hs, 0, B * T * H);
                assertTrue(d < 1e-4, "hidden_states." + k + " differs by " + d);
            }
        }
    }

    @Test
    void bf16WeightsMatchTransformers() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3-bf16"));
        assertEquals(dev.peft4j.tensor.DType.BF16, m.weights.embed.dtype);
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-gemma3-reference.safetensors"))) {
            int[][] seqs = rows(ref.get("input_ids").toInts(), 3, 20);
            float[] refLogits = ref.get("logits_bf16_weights").toFloats();
            List<Gemma3Model.Input> in = new ArrayList<>();
            for (int[] s : seqs) in.add(new Gemma3Model.Input(m.newCache(), null, s));
            float[] hidden = m.forward(in, null);
            int[] all = new int[60];
            for (int i = 0; i < 60; i++) all[i] = i;
            float[] logits = m.logits(hidden, all);
            float d = maxAbsDiff(logits, 0, refLogits, 0, logits.length);
            assertTrue(d < 1e-4, "bf16 logits differ by " + d);
            // token by token through the KV cache (the batch-1 path converts bf16 rows in registers)
            KVCache cache = m.newCache();
            for (int t = 0; t < 20; t++) {
                float[] h = m.forward(List.of(new Gemma3Model.Input(cache, null, new int[]{seqs[2][t]})), null);
                float[] lg = m.logits(h, new int[]{0});
                float dt = maxAbsDiff(lg, 0, refLogits, (2 * 20 + t) * 1024, 1024);
                assertTrue(dt < 1e-4, "bf16 decode at position " + t + " differs by " + dt);
            }
        }
    }

    @Test
    void incrementalDecodingWithCacheEqualsFullForward() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-gemma3-reference.safetensors"))) {
            int[][] seqs = rows(ref.get("input_ids").toInts(), 3, 20);
            float[] refLogits = ref.get("logits").toFloats();
            // sequence 1 fed in chunks of 3, 1, 7, 1, 1, 7 tokens: crosses the sliding window (6) several times
            // and in two chunks of 10 (the second runs the blocked attention over a cache the sliding layers have compacted)
            for (int[] plan : new int[][]{{3, 1, 7, 1, 1, 7}, {10, 10}, {16, 4}}) {
            KVCache cache = m.newCache();
            int[] chunks = plan;
            int at = 0;
            for (int len : chunks) {
                int[] part = java.util.Arrays.copyOfRange(seqs[1], at, at + len);
                float[] h = m.forward(List.of(new Gemma3Model.Input(cache, null, part)), null);
                int[] rr = new int[len];
                for (int i = 0; i < len; i++) rr[i] = i;
                float[] lg = m.logits(h, rr);
                for (int i = 0; i < len; i++) {
                    float d = maxAbsDiff(lg, i * 1024, refLogits, (20 + at + i) * 1024, 1024);
                    assertTrue(d < 1e-4, "position " + (at + i) + " differs by " + d);
                }
                at += len;
            }
            assertEquals(20, cache.length());
            // sliding layers hold at most window-1 + chunk rows
            assertTrue(cache.count[0] <= 6 - 1 + 16, "sliding layer kept " + cache.count[0] + " rows");
            assertEquals(20, cache.count[5]);
            }
        }
    }
}
