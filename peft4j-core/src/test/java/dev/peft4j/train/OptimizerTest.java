package dev.peft4j.train;

import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** Learning-rate schedules, gradient clipping and one AdamW update, checked against hand-computed values. */
class OptimizerTest {

    @Test
    void schedulesFollowTransformers() {
        LrSchedule lin = LrSchedule.of("linear", 1f, 2, 10);
        assertEquals(0.0, lin.factor(0), 1e-12);   // the first update of a warmup schedule uses lr 0, as in the Trainer
        assertEquals(0.5, lin.factor(1), 1e-12);
        assertEquals(1.0, lin.factor(2), 1e-12);
        assertEquals(0.5, lin.factor(6), 1e-12);   // (10 - 6) / (10 - 2)
        assertEquals(0.0, lin.factor(10), 1e-12);
        assertEquals(0.0, lin.factor(12), 1e-12);
        LrSchedule cos = LrSchedule.of("cosine", 2f, 2, 10);
        assertEquals(0.5 * (1 + Math.cos(Math.PI / 4)), cos.factor(4), 1e-12);   // progress 0.25
        assertEquals(0.5, cos.factor(6), 1e-12);
        assertEquals(0.0, cos.factor(10), 1e-12);
        assertEquals(1.0, cos.lr(6), 1e-12);
        LrSchedule c = LrSchedule.of("constant", 3f, 3, 10);
        assertEquals(1.0 / 3, c.factor(1), 1e-12);
        assertEquals(1.0, c.lr(1), 1e-6);
        assertEquals(3.0, c.lr(5), 1e-6);
        assertEquals(3.0, LrSchedule.of("constant", 3f, 0, 10).lr(0), 1e-6);
        var e = assertThrows(UserException.class, () -> LrSchedule.of("step", 1f, 0, 1));
        assertTrue(e.getMessage().contains("step"));
    }

    @Test
    void clipGradNormLikeTorch() {
        Params p = new Params().add("a", new float[2], true, 2).add("b", new float[1], true, 1);
        p.get("a").grad()[0] = 3; p.get("a").grad()[1] = 4; p.get("b").grad()[0] = 12;
        assertEquals(13.0, GradClip.clip(p, 20.0), 1e-9);
        assertEquals(12f, p.get("b").grad()[0]);
        assertEquals(13.0, GradClip.clip(p, 6.5), 1e-9);
        assertEquals(1.5f, p.get("a").grad()[0], 1e-5);
        assertEquals(2f, p.get("a").grad()[1], 1e-5);
        assertEquals(6f, p.get("b").grad()[0], 1e-5);
    }

    @Test
    void adamWOneStepByHand() {
        float[] w = {1f}, n = {1f};
        Params p = new Params().add("w", w, true, 1).add("norm", n, false, 1);
        p.get("w").grad()[0] = 0.5f;
        p.get("norm").grad()[0] = 0.5f;
        AdamW opt = new AdamW(0.9, 0.999, 1e-8, 0.1);
        opt.update(p, 0.1);
        // p·(1 - 0.1·0.1) = 0.99; m̂ = 0.5, v̂ = 0.25 → step 0.1·0.5/0.5 = 0.1
        assertEquals(0.89f, w[0], 1e-6);
        assertEquals(0.9f, n[0], 1e-6);   // no decay
        assertEquals(0.05f, opt.expAvg("w")[0], 1e-7);
        assertEquals(0.00025f, opt.expAvgSq("w")[0], 1e-10);
        assertEquals(1, opt.step());
    }

    @Test
    void optimizerStateFileErrorsNameTheFileAndTensor(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp) throws Exception {
        Params p = new Params().add("w", new float[3], true, 3);
        AdamW opt = new AdamW(0.9, 0.999, 1e-8, 0);
        java.nio.file.Path f = tmp.resolve("opt.safetensors");
        opt.save(f, p);
        Params other = new Params().add("x", new float[3], true, 3);
        var e = assertThrows(UserException.class, () -> new AdamW(0.9, 0.999, 1e-8, 0).load(f, other));
        assertTrue(e.getMessage().contains("opt.safetensors") && e.getMessage().contains("exp_avg.x"), e.getMessage());
        Params bigger = new Params().add("w", new float[4], true, 4);
        e = assertThrows(UserException.class, () -> new AdamW(0.9, 0.999, 1e-8, 0).load(f, bigger));
        assertTrue(e.getMessage().contains("exp_avg.w"), e.getMessage());
    }
}
