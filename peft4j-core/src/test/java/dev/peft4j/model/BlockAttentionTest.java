package dev.peft4j.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Chunks of many rows take the blocked attention (keys and values laid out once as panels, each query block reading a
 * window of them that starts at a multiple of 32 cached keys); decoding token by token takes the per-row path. Both must
 * give the same logits (up to the order of float sums) where the windows start off the 32-key grid (a sliding window of
 * 9 over a cache the sliding layers have compacted), with two KV heads, a head width that is not a multiple of 32 (a
 * partial panel of values), and two sequences in one call.
 */
class BlockAttentionTest {
    @TempDir
    Path tmp;

    @Test
    void blockedChunksEqualTokenByTokenDecoding() throws Exception {
        ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(BlockAttentionTest.class.getResourceAsStream("/tiny-gemma3-config.json"));
        cfg.put("sliding_window", 9);
        cfg.put("head_dim", 48);
        Path c = tmp.resolve("config.json");
        Files.writeString(c, cfg.toString());
        Path dir = tmp.resolve("m");
        RandomInit.write(c, dir, 5, false, 0.1);
        Gemma3Model m = Gemma3Model.load(dir);
        assertEquals(2, m.config.kvHeads());
        int V = m.config.vocabSize();
        int[] a = tokens(120, 3), b = tokens(40, 11);
        float[] wantA = stepByStep(m, a), wantB = stepByStep(m, b);

        // a in chunks of 5, 37 and 78 rows, the last one in the same call as the whole of b
        KVCache ca = m.newCache(), cb = m.newCache();
        float[] gotA = new float[a.length * V], gotB = new float[b.length * V];
        logits(m, m.forward(List.of(new Gemma3Model.Input(ca, null, Arrays.copyOfRange(a, 0, 5))), null), 0, 5, gotA, 0);
        logits(m, m.forward(List.of(new Gemma3Model.Input(ca, null, Arrays.copyOfRange(a, 5, 42))), null), 0, 37, gotA, 5);
        float[] h = m.forward(List.of(new Gemma3Model.Input(ca, null, Arrays.copyOfRange(a, 42, 120)), new Gemma3Model.Input(cb, null, b)), null);
        logits(m, h, 0, 78, gotA, 42);
        logits(m, h, 78, 40, gotB, 0);
        assertTrue(ca.start[0] > 0, "the sliding layers compacted the cache");
        // a again in the same chunks, over a cache sized for all of it: nothing is dropped, so the last chunk's blocks see
        // windows that start past the first 32 cached keys
        KVCache cc = m.newCache();
        cc.ensureCapacity(a.length);
        float[] gotC = new float[a.length * V];
        int at = 0;
        for (int len : new int[]{5, 37, 78}) {
            logits(m, m.forward(List.of(new Gemma3Model.Input(cc, null, Arrays.copyOfRange(a, at, at + len))), null), 0, len, gotC, at);
            at += len;
        }
        assertEquals(0, cc.start[0], "nothing dropped");
        float[][][] cases = {{wantA, gotA}, {wantB, gotB}, {wantA, gotC}};
        for (int k = 0; k < cases.length; k++) {
            float[] want = cases[k][0], got = cases[k][1];
            for (int i = 0; i < want.length; i++) {
                assertEquals(want[i], got[i], 2e-4f * (1 + Math.abs(want[i])), "case " + k + " position " + i / V + " token " + i % V);
            }
        }
    }

    private static int[] tokens(int n, int seed) {
        int[] t = new int[n];
        t[0] = 2;
        for (int i = 1; i < n; i++) t[i] = 3 + (i * 37 + seed * 101) % 900;
        return t;
    }

    /** Every position's logits, one token per forward call (the per-row attention). */
    private static float[] stepByStep(Gemma3Model m, int[] ids) {
        int V = m.config.vocabSize();
        float[] out = new float[ids.length * V];
        KVCache c = m.newCache();
        for (int t = 0; t < ids.length; t++) logits(m, m.forward(List.of(new Gemma3Model.Input(c, null, new int[]{ids[t]})), null), 0, 1, out, t);
        return out;
    }

    private static void logits(Gemma3Model m, float[] hidden, int row0, int rows, float[] out, int pos0) {
        int V = m.config.vocabSize();
        int[] r = new int[rows];
        for (int i = 0; i < rows; i++) r[i] = row0 + i;
        System.arraycopy(m.logits(hidden, r), 0, out, pos0 * V, rows * V);
    }
}
