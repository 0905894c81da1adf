package dev.peft4j.model;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Running the last layer for the needed rows only changes nothing in those rows, nor in any cache. */
class ForwardKeepTest {
    @Test
    void keptRowsAndCachesAreBitwiseTheSameAsAFullForward() {
        Gemma3Model m = Gemma3Model.load(dev.peft4j.Shared.require("fixtures/tiny-gemma3"));
        int H = m.config.hidden();
        // a long sequence (block attention, several query blocks, the kept rows start inside a later block), a short one
        // (row-by-row attention), one with no kept row, one with virtual tokens
        int[] len = {150, 10, 40, 30};
        int[] keep = {130, 7, 40, 3 + 25};
        float[] virtual = new float[3 * H];
        for (int i = 0; i < virtual.length; i++) virtual[i] = (float) Math.cos(i) * 0.5f;
        List<Gemma3Model.Input> full = new ArrayList<>(), kept = new ArrayList<>();
        for (int s = 0; s < len.length; s++) {
            int[] ids = new int[len[s]];
            for (int i = 0; i < ids.length; i++) ids[i] = 3 + (i * 31 + s * 7) % 200;
            float[] v = s == 3 ? virtual : null;
            full.add(new Gemma3Model.Input(m.newCache(), v, ids));
            kept.add(new Gemma3Model.Input(m.newCache(), v, ids));
        }
        float[] a = m.forward(full, null).clone();
        float[] b = m.forward(kept, null, keep);
        int r0 = 0;
        for (int s = 0; s < len.length; s++) {
            int rows = len[s] + (s == 3 ? 3 : 0);
            for (int t = keep[s]; t < rows; t++)
                for (int i = 0; i < H; i++) assertEquals(a[(r0 + t) * H + i], b[(r0 + t) * H + i], 0f, "sequence " + s + " row " + t);
            KVCache ca = full.get(s).cache(), cb = kept.get(s).cache();
            assertEquals(ca.length(), cb.length());
            for (int l = 0; l < m.config.layers(); l++) {
                assertEquals(ca.count[l], cb.count[l]);
                for (int i = 0; i < ca.count[l] * ca.width; i++) {
                    assertEquals(ca.k[l][i], cb.k[l][i], 0f, "layer " + l + " key " + i);
                    assertEquals(ca.v[l][i], cb.v[l][i], 0f, "layer " + l + " value " + i);
                }
            }
            r0 += rows;
        }
    }
}
