package dev.peft4j.train;

import dev.peft4j.Shared;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3Model;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** A few optimizer steps on one batch lower its loss, for LoRA (with dropout and clipping) and full fine-tuning. */
class TrainingSmokeTest {

    @Test
    void loraWithDropoutAndScheduleLowersTheLoss() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-lora-reference.safetensors"));
             SafeTensors ad = SafeTensors.open(fx.resolve("tiny-lora/adapter_model.safetensors"))) {
            GradientParityTest.attachLora(m, ad);
            m.weights.linears().forEach(l -> l.lora.dropout = 0.1f);
            Params p = Params.lora(m);
            float[] frozen = m.weights.layers[0].q.weight.toFloatArray();
            TrainStep ts = new TrainStep(m, p, null, AdamW.defaults(0.01), LrSchedule.of("cosine", 5e-3, 2, 8), 1.0, 7L);
            List<TrainStep.Example> b = GradientParityTest.batch(ref);
            double before = ts.loss(b);
            assertEquals(ref.get("loss").toFloats()[0], before, 1e-5, "evaluation loss has no dropout");
            TrainStep.Result first = ts.step(b);
            assertEquals(0.0, first.lr(), "warmup starts at 0");
            for (int i = 0; i < 7; i++) {
                TrainStep.Result r = ts.step(b);
                assertTrue(r.gradNorm() > 0 && Double.isFinite(r.loss()));
            }
            double after = ts.loss(b);
            assertTrue(after < before - 0.1, "loss " + before + " -> " + after);
            assertArrayEquals(frozen, m.weights.layers[0].q.weight.toFloatArray(), "the base weight stays frozen");
        }
    }

    @Test
    void fullFineTuningLowersTheLoss() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-gemma3-reference.safetensors"))) {
            Params p = Params.full(m);
            assertSame(m.weights.embed, m.weights.lmHead, "tied head stays tied");
            TrainStep ts = new TrainStep(m, p, null, AdamW.defaults(0.0), LrSchedule.of("constant", 1e-3, 0, 3), 1.0);
            List<TrainStep.Example> b = GradientParityTest.batch(ref);
            double before = ts.loss(b);
            for (int i = 0; i < 3; i++) ts.step(b);
            double after = ts.loss(b);
            assertTrue(after < before - 0.1, "loss " + before + " -> " + after);
        }
    }
}
