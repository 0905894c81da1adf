package dev.peft4j.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Reusing the previous batch's cache for a shared token prefix gives the same logits as running every sequence alone. */
class PrefixReuseTest {
    @TempDir
    Path tmp;

    @Test
    void sharedPrefixesReuseTheCacheWithoutChangingResults() throws Exception {
        ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(PrefixReuseTest.class.getResourceAsStream("/tiny-gemma3-config.json"));
        cfg.put("sliding_window", 40);
        Path c = tmp.resolve("config.json");
        Files.writeString(c, cfg.toString());
        Path dir = tmp.resolve("m");
        RandomInit.write(c, dir, 3, false, 0.1);
        int[] prefix = new int[30];
        for (int i = 0; i < prefix.length; i++) prefix[i] = 5 + (i * 37) % 900;
        int[] a = concat(prefix, new int[]{7, 8, 9, 10}), b = concat(prefix, new int[]{11, 12}), d = concat(prefix, new int[]{13});
        int[] unrelated = {2, 40, 41, 42};
        for (float[] virtual : new float[][]{null, new float[3 * 64]}) {
            if (virtual != null) for (int i = 0; i < virtual.length; i++) virtual[i] = (float) Math.sin(i);
            Gemma3LM shared = new Gemma3LM(Gemma3Model.load(dir), virtual);
            List<float[]> first = shared.logits(List.of(a), new int[]{25});
            List<float[]> second = shared.logits(List.of(b, unrelated, d), new int[]{31, 1, 30});
            int nv = virtual == null ? 0 : 3;
            // a runs whole; b and d only their new tokens (2 and 1); the unrelated sequence whole
            assertEquals((nv + a.length) + 2 + (nv + unrelated.length) + 1, shared.rowsComputed, "rows run");
            for (int[][] q : new int[][][]{{a, {25}}, {b, {31}}, {unrelated, {1}}, {d, {30}}}) {
                Gemma3LM fresh = new Gemma3LM(Gemma3Model.load(dir), virtual);
                float[] want = fresh.logits(List.of(q[0]), q[1]).get(0);
                float[] got = q[0] == a ? first.get(0) : q[0] == b ? second.get(0) : q[0] == unrelated ? second.get(1) : second.get(2);
                assertEquals(want.length, got.length);
                for (int i = 0; i < want.length; i++) assertEquals(want[i], got[i], 2e-5f, "position " + i);
            }
        }
    }

    @Test
    void truncatedCopyRefusesWhenSlidingRowsWereDropped() {
        Gemma3Model m = Gemma3Model.load(dev.peft4j.Shared.require("fixtures/tiny-gemma3")); // sliding window 6
        KVCache c = m.newCache();
        int[] ids = new int[20];
        for (int i = 0; i < 20; i++) ids[i] = 3 + i;
        for (int t = 0; t < 20; t++) m.forward(List.of(new Gemma3Model.Input(c, null, new int[]{ids[t]})), null);
        assertNull(c.truncatedCopy(5), "position 5 needs rows the sliding layers dropped");
        assertNotNull(c.truncatedCopy(19));
    }

    static int[] concat(int[] x, int[] y) {
        int[] r = java.util.Arrays.copyOf(x, x.length + y.length);
        System.arraycopy(y, 0, r, x.length, y.length);
        return r;
    }
}
