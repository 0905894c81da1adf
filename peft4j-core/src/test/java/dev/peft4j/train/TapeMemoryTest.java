package dev.peft4j.train;

import dev.peft4j.Shared;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Tape;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The tape keeps only what the backward pass cannot recompute cheaply; batch 4 x 512 of the 270M model fits a 4 GB heap. */
class TapeMemoryTest {

    /** floats per row: per layer xIn, oOut, xMid, dOut (H), qPre, attn (heads·D), kPre, v (kv·D), gate, up (I), 6 norm statistics. */
    static long floatsPerRow(int H, int I, int heads, int kv, int D, int layers) {
        long perLayer = 4L * H + 2L * heads * D + 2L * kv * D + 2L * I + (4 + heads + kv);
        return layers * perLayer + 2L * H + 1;   // + final norm input, its output and statistic
    }

    @Test
    void tapeHoldsOnlyTheListedActivations() {
        Gemma3Model m = Gemma3Model.load(Shared.require("fixtures").resolve("tiny-gemma3"));
        List<Gemma3Model.Input> in = new ArrayList<>();
        int rows = 0;
        for (int len : new int[]{20, 7, 13}) {
            int[] ids = new int[len];
            for (int i = 0; i < len; i++) ids[i] = 2 + 37 * i % 1000;
            in.add(new Gemma3Model.Input(m.newCache(), null, ids));
            rows += len;
        }
        Tape t = new Tape();
        m.forward(in, t);
        var c = m.config;
        assertEquals(4L * rows * floatsPerRow(c.hidden(), c.intermediate(), c.heads(), c.kvHeads(), c.headDim(), c.layers()), t.bytes());
        Tape lean = new Tape();
        lean.keepAttn = false;   // prompt tuning, or LoRA without o_proj
        List<Gemma3Model.Input> again = new ArrayList<>();
        for (Gemma3Model.Input i : in) again.add(new Gemma3Model.Input(m.newCache(), null, i.ids()));
        m.forward(again, lean);
        assertEquals(t.bytes() - 4L * rows * c.heads() * c.headDim() * c.layers(), lean.bytes());
        // gemma-3-270m (hidden 640, intermediate 2048, 4 x 256 heads, 1 x 256 kv, 18 layers), batch 4 x 512
        long real = 4L * 4 * 512 * floatsPerRow(640, 2048, 4, 1, 256, 18);
        System.out.printf("tape for gemma-3-270m, 4 x 512 tokens: %.2f GB%n", real / 1e9);
        assertTrue(real < 1.6e9, "tape of " + real + " bytes");
    }
}
