package dev.peft4j.train;

import dev.peft4j.Shared;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.KVCache;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Five AdamW steps of prompt tuning and greedy generation with the trained prompt, against torch/PEFT. */
class PromptTuningTrainingTest {

    @Test
    void fiveAdamWStepsAndGreedyGenerationMatchTorch(@TempDir Path tmp) throws Exception {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-prompt-tuning-reference.safetensors"))) {
            float[] prompt = ref.get("prompt_embeddings_init").toFloats();
            Params p = Params.promptTuning(prompt, 64);
            AdamW opt = new AdamW(0.9, 0.999, 1e-8, 0.01);
            TrainStep ts = new TrainStep(m, p, prompt, opt, LrSchedule.of("constant", 1e-2, 0, 5), 0);
            List<TrainStep.Example> batch = GradientParityTest.batch(ref);
            float[] refLosses = ref.get("adamw_losses").toFloats();
            int kept = 0;   // labels that some earlier position predicts (the first one never is)
            for (TrainStep.Example e : batch) for (int t = 1; t < e.labels().length; t++) if (e.labels()[t] != -100) kept++;
            double worstLoss = 0;
            for (int s = 0; s < 5; s++) {
                TrainStep.Result r = ts.step(batch);
                assertEquals(1e-2, r.lr());
                assertEquals(kept, r.tokens());
                worstLoss = Math.max(worstLoss, Math.abs(r.loss() - refLosses[s]));
                assertEquals(refLosses[s], r.loss(), 1e-4, "loss before step " + s);
            }
            assertEquals(5, opt.step());
            float[] after = ref.get("prompt_embeddings_after_5_steps").toFloats();
            double d = GradientParityTest.maxAbs(prompt, 0, after, 0, prompt.length);
            assertTrue(d < 1e-4, "prompt after 5 steps differs by " + d);

            // greedy decoding with the KV cache: prompt + ids first, then one token at a time
            int[] gp = ref.get("greedy_prompt").toInts();
            int[] want = ref.get("greedy_tokens_after_training").toInts();
            KVCache cache = m.newCache();
            float[] h = m.forward(List.of(new Gemma3Model.Input(cache, prompt, gp)), null);
            int last = 5 + gp.length - 1;
            int[] got = new int[want.length];
            for (int i = 0; i < want.length; i++) {
                got[i] = argmax(m.logits(h, new int[]{last}));
                h = m.forward(List.of(new Gemma3Model.Input(cache, null, new int[]{got[i]})), null);
                last = 0;
            }
            assertArrayEquals(want, got, "greedy tokens after training");
            System.out.printf("AdamW prompt tuning: worst loss diff %.2e, prompt max diff %.2e, greedy tokens equal%n", worstLoss, d);

            // the optimizer state survives a save/load round trip: a restored optimizer takes the same next step
            Path f = tmp.resolve("optimizer.safetensors");
            opt.save(f, p);
            AdamW restored = new AdamW(0.9, 0.999, 1e-8, 0.01);
            restored.load(f, p);
            assertEquals(5, restored.step());
            assertArrayEquals(opt.expAvg("prompt_embeddings"), restored.expAvg("prompt_embeddings"));
            assertArrayEquals(opt.expAvgSq("prompt_embeddings"), restored.expAvgSq("prompt_embeddings"));
            float[] grad = ref.get("prompt_embeddings_grad").toFloats();
            float[] start = prompt.clone();
            System.arraycopy(grad, 0, p.get("prompt_embeddings").grad(), 0, grad.length);
            opt.update(p, 1e-2);
            float[] afterOriginal = prompt.clone();
            System.arraycopy(start, 0, prompt, 0, prompt.length);
            restored.update(p, 1e-2);
            assertArrayEquals(afterOriginal, prompt, "step after restoring the optimizer state");
            assertFalse(java.util.Arrays.equals(start, prompt), "the step changed the prompt");
        }
    }

    static int argmax(float[] v) {
        int b = 0;
        for (int i = 1; i < v.length; i++) if (v[i] > v[b]) b = i;
        return b;
    }
}
