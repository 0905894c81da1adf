package dev.peft4j.peft;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class AdapterKeysAndInitTest {

    @Test
    void loraKeyNames() {
        String m = "model.layers.0.self_attn.q_proj";
        // REFERENCE 2.3 saved names and fixtures README in-memory names
        assertEquals("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", AdapterKeys.loraA(m));
        assertEquals("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", AdapterKeys.loraB(m));
        assertEquals("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", AdapterKeys.inMemory(AdapterKeys.loraA(m)));
        assertEquals(AdapterKeys.loraB(m), AdapterKeys.onDisk("base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"));
        assertEquals(m, AdapterKeys.loraModule(AdapterKeys.loraA(m)));
        assertEquals(m, AdapterKeys.loraModule("base_model.model.model.layers.0.self_attn.q_proj.lora_B.default.weight"));
        assertNull(AdapterKeys.loraModule("prompt_embeddings"));
        assertTrue(AdapterKeys.isLoraA(AdapterKeys.loraA(m)));
        assertFalse(AdapterKeys.isLoraA(AdapterKeys.loraB(m)));
        // DoRA: in memory ...lora_magnitude_vector.default.weight, on disk without ".default.weight"
        assertEquals("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", AdapterKeys.loraMagnitude(m));
        assertEquals(AdapterKeys.loraMagnitude(m), AdapterKeys.onDisk(AdapterKeys.inMemory(AdapterKeys.loraMagnitude(m))));
        assertEquals("base_model.model.model.layers.0.self_attn.v_proj.ia3_l", AdapterKeys.ia3("model.layers.0.self_attn.v_proj"));
        assertEquals("prompt_embeddings", AdapterKeys.PROMPT_EMBEDDINGS);
    }

    @Test
    void kaimingUniformBoundIsOneOverSqrtFanIn() {
        // REFERENCE 2.3: in=640 → ±0.03953, in=1024 → ±0.03125, in=2048 → ±0.0221
        assertEquals(0.03953, LoraInit.kaimingUniformBound(640, Math.sqrt(5)), 1e-5);
        assertEquals(0.03125, LoraInit.kaimingUniformBound(1024, Math.sqrt(5)), 1e-12);
        assertEquals(0.0221, LoraInit.kaimingUniformBound(2048, Math.sqrt(5)), 1e-4);
        float[] a = LoraInit.kaimingUniformA(8, 640, new Random(1));
        assertEquals(8 * 640, a.length);
        double bound = 1 / Math.sqrt(640), max = 0, sum = 0, sq = 0;
        for (float v : a) {
            assertTrue(Math.abs(v) <= bound, "value " + v + " outside ±" + bound);
            max = Math.max(max, Math.abs(v));
            sum += v;
            sq += v * v;
        }
        assertTrue(max > 0.99 * bound);
        assertEquals(0, sum / a.length, 0.05 * bound);
        assertEquals(bound * bound / 3, sq / a.length, 0.05 * bound * bound / 3);   // variance of U(-b, b) = b²/3
        assertArrayEquals(a, LoraInit.kaimingUniformA(8, 640, new Random(1)), "seeded RNG is reproducible");
    }

    @Test
    void gaussianAndZeros() {
        int r = 4;
        float[] a = LoraInit.gaussianA(r, 1000, new Random(2));
        double sq = 0, sum = 0;
        for (float v : a) { sq += v * v; sum += v; }
        assertEquals(0, sum / a.length, 0.02);
        assertEquals(1.0 / r, Math.sqrt(sq / a.length), 0.01);   // std 1/r
        float[] b = LoraInit.zeroB(1024, r);
        assertEquals(1024 * r, b.length);
        for (float v : b) assertEquals(0f, v);
        assertArrayEquals(b, LoraInit.initB(Boolean.TRUE, 1024, r, new Random(3)));
        assertArrayEquals(b, LoraInit.initB("gaussian", 1024, r, new Random(3)));
        assertArrayEquals(LoraInit.gaussianA(r, 10, new Random(5)), LoraInit.initA("gaussian", r, 10, new Random(5)));
        assertArrayEquals(LoraInit.kaimingUniformA(r, 10, new Random(5)), LoraInit.initA(true, r, 10, new Random(5)));
        assertThrows(dev.peft4j.util.UserException.class, () -> LoraInit.initA("pissa", r, 10, new Random(5)));
        float[] p = PromptInit.random(20, 640, new java.util.SplittableRandom(6));
        double psq = 0;
        for (float v : p) psq += v * v;
        assertEquals(1.0, Math.sqrt(psq / p.length), 0.02);   // N(0, 1)
    }
}
