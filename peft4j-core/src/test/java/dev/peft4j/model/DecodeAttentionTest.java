package dev.peft4j.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.tensor.Parallel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Decoding one sequence splits each layer's attention over the threads (its keys for the scores, its dimensions for the
 * weighted values) once the context reaches {@link Gemma3Model#SPLIT_MIN_KEYS} keys; in a batch every row runs on one
 * thread. A sequence's logits must not depend on which: bit for bit, at every position, below and past the threshold,
 * with a head width that is not a multiple of the vector length (a scalar tail in the last thread's slice).
 */
class DecodeAttentionTest {
    @TempDir
    Path tmp;

    @Test
    void oneSequenceAloneEqualsTheSameSequenceInABatchBitForBit() throws Exception {
        assumeTrue(Parallel.threads() >= 2, "one thread: the split path is never taken (nothing to compare)");
        Gemma3Model m = model(40, 400);
        assertEquals(1, m.config.kvHeads());
        int V = m.config.vocabSize(), n = Gemma3Model.SPLIT_MIN_KEYS + 60;
        int[] a = tokens(n, 3), b = tokens(n, 7), c = tokens(n, 9);
        float[] alone = decode(m, List.of(a)).get(0);
        float[] among = decode(m, List.of(b, a, c)).get(1);
        for (int i = 0; i < alone.length; i++) {
            if (Float.floatToRawIntBits(alone[i]) != Float.floatToRawIntBits(among[i])) {
                fail("position " + i / V + " token " + i % V + ": alone " + alone[i] + ", in a batch of 3 " + among[i]);
            }
        }
        // and both are the model's attention: the same positions through one prefill of the whole sequence (blocked
        // attention, another order of the float sums) agree to rounding
        KVCache cache = m.newCache();
        float[] h = m.forward(List.of(new Gemma3Model.Input(cache, null, a)), null);
        int[] rows = new int[n];
        for (int i = 0; i < n; i++) rows[i] = i;
        float[] prefill = m.logits(h, rows);
        for (int i = 0; i < alone.length; i++) assertEquals(prefill[i], alone[i], 2e-4f * (1 + Math.abs(prefill[i])), "position " + i / V);
    }

    @Test
    void aFullSlidingLayerDropsRowsOnceEveryHalfWindowNotEveryToken() throws Exception {
        Gemma3Model m = model(32, 32);   // a window of 32 positions, and a prompt that fills a cache grown to exactly 32 rows
        KVCache cache = m.newCache();
        m.forward(List.of(new Gemma3Model.Input(cache, null, tokens(32, 1))), null);
        long before = cache.compactions();
        int steps = 90;
        for (int t = 0; t < steps; t++) m.forward(List.of(new Gemma3Model.Input(cache, null, new int[]{5 + t})), null);
        int sliding = 0;
        for (boolean s : m.config.sliding()) if (s) sliding++;
        long per = (cache.compactions() - before) / sliding;
        // every (slack + 1) tokens at most; it was every token once the window was full
        assertTrue(per <= steps / cache.slack() + 1, per + " compactions per sliding layer in " + steps + " tokens");
        assertTrue(per >= 1, "the window moved");
        for (int l = 0; l < m.config.layers(); l++) {
            if (m.config.sliding()[l]) assertTrue(cache.k[l].length / cache.width <= 32 + 2 * cache.slack(), "layer " + l + " stays bounded: " + cache.k[l].length / cache.width + " rows");
        }
    }

    /** The tiny model with one KV head (four query heads share it), the given head width and sliding window. */
    private Gemma3Model model(int headDim, int window) throws Exception {
        ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(DecodeAttentionTest.class.getResourceAsStream("/tiny-gemma3-config.json"));
        cfg.put("num_key_value_heads", 1);
        cfg.put("head_dim", headDim);
        cfg.put("sliding_window", window);
        cfg.put("max_position_embeddings", 512);
        Path dir = tmp.resolve("m" + headDim + "-" + window);
        Files.createDirectories(dir);
        Path c = dir.resolve("config.in.json");
        Files.writeString(c, cfg.toString());
        RandomInit.write(c, dir.resolve("model"), 5, false, 0.1);
        return Gemma3Model.load(dir.resolve("model"));
    }

    /** Every position's logits of each sequence, all of them advancing one token per forward call. */
    private static List<float[]> decode(Gemma3Model m, List<int[]> seqs) {
        int V = m.config.vocabSize(), n = seqs.get(0).length, S = seqs.size();
        List<KVCache> caches = new ArrayList<>();
        List<float[]> out = new ArrayList<>();
        for (int s = 0; s < S; s++) {
            caches.add(m.newCache());
            out.add(new float[n * V]);
        }
        int[] rows = new int[S];
        for (int s = 0; s < S; s++) rows[s] = s;
        for (int t = 0; t < n; t++) {
            List<Gemma3Model.Input> step = new ArrayList<>();
            for (int s = 0; s < S; s++) step.add(new Gemma3Model.Input(caches.get(s), null, new int[]{seqs.get(s)[t]}));
            float[] lg = m.logits(m.forward(step, null), rows);
            for (int s = 0; s < S; s++) System.arraycopy(lg, s * V, out.get(s), t * V, V);
        }
        return out;
    }

    private static int[] tokens(int n, int seed) {
        int[] t = new int[n];
        t[0] = 2;
        for (int i = 1; i < n; i++) t[i] = 3 + (i * 37 + seed * 101) % 900;
        return t;
    }
}
