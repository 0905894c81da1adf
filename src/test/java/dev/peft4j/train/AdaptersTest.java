package dev.peft4j.train;

import dev.peft4j.Shared;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class AdaptersTest {

    @Test
    void loraInitFollowsPeft() {
        Gemma3Model m = Gemma3Model.load(Shared.require("fixtures").resolve("tiny-gemma3"));
        assertEquals(12, Adapters.attachLora(m, 4, 8, false, 0f, List.of("q_proj", "v_proj"), 1));   // 6 layers x 2
        Linear q = m.weights.layers[0].q, o = m.weights.layers[0].o;
        assertNull(o.lora);
        assertEquals(2f, q.lora.scale);
        float bound = (float) (1 / Math.sqrt(64));
        float max = 0;
        for (float a : q.lora.a.array()) max = Math.max(max, Math.abs(a));
        assertTrue(max <= bound && max > 0.8 * bound, "A within ±1/sqrt(in): " + max);
        for (float b : q.lora.b.array()) assertEquals(0f, b);
        Params p = Params.lora(m);
        assertEquals(24, p.size());
        assertNotNull(p.get("base_model.model.model.layers.5.self_attn.v_proj.lora_B.weight"));
        Adapters.attachLora(m, 4, 8, true, 0f, List.of("o_proj"), 1);
        assertEquals(4f, m.weights.layers[0].o.lora.scale);   // rsLoRA: 8 / sqrt(4)
        var e = assertThrows(UserException.class, () -> Adapters.attachLora(m, 4, 8, false, 0f, List.of("qproj"), 1));
        assertTrue(e.getMessage().contains("qproj"));
    }

    @Test
    void textPromptRepeatsScaledEmbeddings() {
        Gemma3Model m = Gemma3Model.load(Shared.require("fixtures").resolve("tiny-gemma3"));
        float[] p = Adapters.textPrompt(m, new int[]{2, 17}, 5);
        float s = (float) Math.sqrt(64);
        int[] ids = {2, 17, 2, 17, 2};
        for (int t = 0; t < 5; t++) for (int i = 0; i < 64; i += 13) assertEquals(m.weights.embed.get(ids[t], i) * s, p[t * 64 + i], 1e-6);
        float[] r = Adapters.randomPrompt(5, 64, 3);
        double var = 0;
        for (float x : r) var += x * x;
        assertEquals(1.0, var / r.length, 0.2);
    }
}
