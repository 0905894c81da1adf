package dev.peft4j.model;

import dev.peft4j.Shared;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.peft.PromptInit;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

class PromptInitTest {
    @Test
    void textInitRepeatsIdsAndUsesScaledEmbeddings() {
        Gemma3Model m = Gemma3Model.load(Shared.require("fixtures/tiny-gemma3"));
        int[] ids = {2, 40, 41};
        float[] v = PromptInit.text(m, ids, 7);
        assertEquals(7 * 64, v.length);
        try (SafeTensors st = SafeTensors.open(Shared.require("fixtures/tiny-gemma3/model.safetensors"))) {
            float[] emb = st.get("model.embed_tokens.weight").toFloats();
            int[] expectIds = {2, 40, 41, 2, 40, 41, 2};
            for (int i = 0; i < 7; i++)
                for (int j = 0; j < 64; j++)
                    assertEquals(emb[expectIds[i] * 64 + j] * 8f, v[i * 64 + j], 1e-6f); // sqrt(64) = 8
        }
        // the hidden state of a virtual token equal to a token's scaled embedding is that token's embedding output
        Tape t1 = new Tape(), t2 = new Tape();
        m.forward(List.of(new Gemma3Model.Input(m.newCache(), PromptInit.text(m, new int[]{40}, 1), new int[]{5})), t1);
        m.forward(List.of(new Gemma3Model.Input(m.newCache(), null, new int[]{40, 5})), t2);
        assertArrayEquals(t2.finalOut, t1.finalOut, 1e-6f);
    }

    @Test
    void randomInitIsStandardNormal() {
        float[] v = PromptInit.random(100, 64, new SplittableRandom(3));
        double mean = 0, var = 0;
        for (float x : v) mean += x;
        mean /= v.length;
        for (float x : v) var += (x - mean) * (x - mean);
        var /= v.length;
        assertEquals(0, mean, 0.05);
        assertEquals(1, var, 0.08);
    }
}
