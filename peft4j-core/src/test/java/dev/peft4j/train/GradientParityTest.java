package dev.peft4j.train;

import dev.peft4j.Shared;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.model.Tape;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Loss and gradients of full fine-tuning, prompt tuning and LoRA against PyTorch/PEFT (../shared/fixtures). */
class GradientParityTest {
    static final int B = 3, T = 20, V = 1024, H = 64;

    static double relErr(float[] g, float[] ref) {
        double num = 0, den = 0;
        for (int i = 0; i < g.length; i++) {
            num += (double) (g[i] - ref[i]) * (g[i] - ref[i]);
            den += (double) ref[i] * ref[i];
        }
        return Math.sqrt(num / den);
    }

    static double maxAbs(float[] a, int ao, float[] b, int bo, int n) {
        double m = 0;
        for (int i = 0; i < n; i++) m = Math.max(m, Math.abs(a[ao + i] - b[bo + i]));
        return m;
    }

    static List<TrainStep.Example> batch(SafeTensors ref) {
        int[] ids = ref.get("input_ids").toInts(), labels = ref.get("labels").toInts();
        List<TrainStep.Example> b = new ArrayList<>();
        for (int s = 0; s < B; s++) {
            b.add(new TrainStep.Example(java.util.Arrays.copyOfRange(ids, s * T, (s + 1) * T), java.util.Arrays.copyOfRange(labels, s * T, (s + 1) * T)));
        }
        return b;
    }

    static TrainStep step(Gemma3Model m, Params p, float[] prompt) {
        return new TrainStep(m, p, prompt, new AdamW(0.9, 0.999, 1e-8, 0.01), LrSchedule.of("constant", 1e-2, 0, 5), 0);
    }

    @Test
    void fullFineTuningGradientsMatchTorch() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        Params p = Params.full(m);
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-gemma3-reference.safetensors"));
             SafeTensors grads = SafeTensors.open(fx.resolve("tiny-gemma3-grads.safetensors"))) {
            double loss = step(m, p, null).accumulate(batch(ref), -1, null);
            float refLoss = ref.get("loss").toFloats()[0];
            assertEquals(refLoss, loss, 1e-5, "loss");
            assertEquals(grads.tensors().size(), p.size(), "number of parameters");
            double worst = 0;
            String worstName = "";
            for (Params.Param q : p) {
                assertTrue(grads.has(q.name()), "reference has no gradient for " + q.name());
                double e = relErr(q.grad(), grads.get(q.name()).toFloats());
                if (e > worst) { worst = e; worstName = q.name(); }
                assertTrue(e < 1e-4, q.name() + ": relative error " + e);
            }
            System.out.printf("full fine-tuning: loss %.7f (ref %.7f), worst grad rel err %.2e (%s)%n", loss, refLoss, worst, worstName);
        }
    }

    @Test
    void promptTuningLossAndGradientMatchPeft() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-prompt-tuning-reference.safetensors"));
             SafeTensors ad = SafeTensors.open(fx.resolve("tiny-prompt-tuning/adapter_model.safetensors"))) {
            float[] prompt = ad.get("prompt_embeddings").toFloats();
            assertEquals(0, maxAbs(prompt, 0, ref.get("prompt_embeddings_init").toFloats(), 0, prompt.length));
            // logits over virtual + real positions
            List<Gemma3Model.Input> in = new ArrayList<>();
            List<TrainStep.Example> b = batch(ref);
            for (TrainStep.Example e : b) in.add(new Gemma3Model.Input(m.newCache(), prompt, e.ids()));
            float[] hidden = m.forward(in, null);
            int[] all = new int[B * (T + 5)];
            for (int i = 0; i < all.length; i++) all[i] = i;
            float[] logits = m.logits(hidden, all);
            double dl = maxAbs(logits, 0, ref.get("logits").toFloats(), 0, logits.length);
            assertTrue(dl < 1e-4, "prompt-tuning logits differ by " + dl);
            Params p = Params.promptTuning(prompt, H);
            double loss = step(m, p, prompt).accumulate(b, -1, null);
            assertEquals(ref.get("loss").toFloats()[0], loss, 1e-5, "loss");
            double e = relErr(p.get("prompt_embeddings").grad(), ref.get("prompt_embeddings_grad").toFloats());
            System.out.printf("prompt tuning: logits max diff %.2e, loss %.7f, grad rel err %.2e%n", dl, loss, e);
            assertTrue(e < 1e-4, "prompt_embeddings grad relative error " + e);
        }
    }

    /** Attaches the tiny LoRA adapter (r=4, alpha=8) to every q,k,v,o,gate,up,down. */
    static void attachLora(Gemma3Model m, SafeTensors ad) {
        for (Linear l : m.weights.linears()) {
            String base = "base_model.model." + l.name + ".";
            float[] a = ad.get(base + "lora_A.weight").toFloats(), bb = ad.get(base + "lora_B.weight").toFloats();
            l.lora = new Linear.Lora(4, 2f, a, bb, l.in(), l.out());
        }
    }

    @Test
    void loraLogitsLossGradientsAndMergeMatchPeft() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-lora-reference.safetensors"));
             SafeTensors grads = SafeTensors.open(fx.resolve("tiny-lora-grads.safetensors"));
             SafeTensors ad = SafeTensors.open(fx.resolve("tiny-lora/adapter_model.safetensors"))) {
            attachLora(m, ad);
            List<TrainStep.Example> b = batch(ref);
            int[] all = new int[B * T];
            for (int i = 0; i < all.length; i++) all[i] = i;
            float[] refLogits = ref.get("logits").toFloats();
            double dl = maxAbs(m.logits(forward(m, b), all), 0, refLogits, 0, B * T * V);
            assertTrue(dl < 1e-4, "LoRA logits differ by " + dl);
            Params p = Params.lora(m);
            assertEquals(grads.tensors().size(), p.size());
            double loss = step(m, p, null).accumulate(b, -1, null);
            assertEquals(ref.get("loss").toFloats()[0], loss, 1e-5, "loss");
            double worst = 0;
            for (Params.Param q : p) {
                String refName = q.name().replace(".weight", ".default.weight");
                assertTrue(grads.has(refName), "no reference gradient " + refName);
                double e = relErr(q.grad(), grads.get(refName).toFloats());
                worst = Math.max(worst, e);
                assertTrue(e < 1e-4, q.name() + ": relative error " + e);
            }
            for (Linear l : m.weights.linears()) {
                l.merge();
                l.lora = detach(l.lora, l);
            }
            double dm = maxAbs(m.logits(forward(m, b), all), 0, ref.get("merged_logits").toFloats(), 0, B * T * V);
            assertTrue(dm < 1e-4, "merged logits differ by " + dm);
            for (Linear l : m.weights.linears()) {
                l.lora = reattach(l);
                l.unmerge();
            }
            double du = maxAbs(m.logits(forward(m, b), all), 0, refLogits, 0, B * T * V);
            assertTrue(du < 1e-4, "unmerged logits differ by " + du);
            System.out.printf("LoRA: logits %.2e, loss %.7f, worst grad rel err %.2e, merged %.2e, unmerged %.2e%n", dl, loss, worst, dm, du);
        }
    }

    @Test
    void loraOnUpperLayersOnlySkipsTheRestAndStillMatches() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-lora-reference.safetensors"));
             SafeTensors grads = SafeTensors.open(fx.resolve("tiny-lora-grads.safetensors"));
             SafeTensors ad = SafeTensors.open(fx.resolve("tiny-lora/adapter_model.safetensors"))) {
            attachLora(m, ad);
            // train only layer 4's MLP factors and layer 5's v_proj: layers 0-3 and layer 4's attention need no backward
            Params p = new Params();
            for (Linear l : m.weights.linears()) {
                if (!(l.name.startsWith("model.layers.4.mlp") || l.name.equals("model.layers.5.self_attn.v_proj"))) continue;
                String base = "base_model.model." + l.name + ".";
                p.add(base + "lora_A.weight", l.lora.a.array(), true, l.lora.r, l.in());
                p.add(base + "lora_B.weight", l.lora.b.array(), true, l.out(), l.lora.r);
            }
            assertEquals(8, p.size());
            double loss = step(m, p, null).accumulate(batch(ref), -1, null);
            assertEquals(ref.get("loss").toFloats()[0], loss, 1e-5, "loss");
            for (Params.Param q : p) {
                double e = relErr(q.grad(), grads.get(q.name().replace(".weight", ".default.weight")).toFloats());
                assertTrue(e < 1e-4, q.name() + ": relative error " + e);
            }
        }
    }

    @Test
    void packedSequencesOfDifferentLengthsGiveTheSumOfTheirGradients() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-lora-reference.safetensors"));
             SafeTensors ad = SafeTensors.open(fx.resolve("tiny-lora/adapter_model.safetensors"))) {
            attachLora(m, ad);
            List<TrainStep.Example> b = batch(ref);
            // cut the sequences to 20, 9 and 14 tokens (9 and 14 still cross the sliding window of 6)
            List<TrainStep.Example> cut = List.of(b.get(0), trim(b.get(1), 9), trim(b.get(2), 14));
            Params p = Params.lora(m);
            TrainStep ts = step(m, p, null);
            int total = 0;
            for (TrainStep.Example e : cut) total += CrossEntropy.count(CrossEntropy.shiftLabels(e.labels()));
            double together = ts.accumulate(cut, total, null);
            List<float[]> packed = new ArrayList<>();
            for (Params.Param q : p) packed.add(q.grad().clone());
            p.zeroGrad();
            double apart = 0;
            for (TrainStep.Example e : cut) apart += ts.accumulate(List.of(e), total, null);
            assertEquals(together, apart, 1e-5);
            int i = 0;
            for (Params.Param q : p) {
                double e = relErr(packed.get(i++), q.grad());
                assertTrue(e < 1e-5, q.name() + ": packed vs separate relative difference " + e);
            }
        }
    }

    /** With LoRA dropout the gradient is that of the dropped-out forward: a directional derivative of the loss agrees. */
    @Test
    void loraDropoutGradientMatchesDirectionalDerivative() {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"));
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-lora-reference.safetensors"));
             SafeTensors ad = SafeTensors.open(fx.resolve("tiny-lora/adapter_model.safetensors"))) {
            attachLora(m, ad);
            for (Linear l : m.weights.linears()) l.lora.dropout = 0.25f;
            Params p = Params.lora(m);
            List<TrainStep.Example> b = batch(ref);
            int[] targets = new int[B * T];
            for (int s = 0; s < B; s++) System.arraycopy(CrossEntropy.shiftLabels(b.get(s).labels()), 0, targets, s * T, T);
            int count = CrossEntropy.count(targets);
            long seed = 1234567L;
            java.util.function.Supplier<Double> loss = () -> {
                Tape t = new Tape();
                t.dropoutSeed = seed;
                float[] h = m.forward(inputs(m, b), t);
                return CrossEntropy.lossAndGrad(h, H, targets, m.lmHead(), null, 1f, null, null) / count;
            };
            Tape t = new Tape();
            t.dropoutSeed = seed;
            float[] h = m.forward(inputs(m, b), t);
            float[] dh = new float[h.length];
            double l0 = CrossEntropy.lossAndGrad(h, H, targets, m.lmHead(), null, 1f / count, dh, null) / count;
            Backward.run(m, t, dh, p, false);
            double noDrop = step(m, new Params(), null).loss(b);
            assertTrue(Math.abs(l0 - noDrop) > 1e-4, "dropout changes the loss");
            // direction: the gradient itself, normalized; derivative along it = |g|
            double norm = GradClip.globalNorm(p);
            double eps = 1e-2 / norm;
            for (Params.Param q : p) for (int i = 0; i < q.data().length; i++) q.data()[i] += (float) (eps * q.grad()[i]);
            double up = loss.get();
            for (Params.Param q : p) for (int i = 0; i < q.data().length; i++) q.data()[i] -= (float) (2 * eps * q.grad()[i]);
            double dn = loss.get();
            double numeric = (up - dn) / (2 * eps * norm);   // ≈ |g|
            assertEquals(norm, numeric, 2e-3 * norm, "directional derivative");
        }
    }

    static List<Gemma3Model.Input> inputs(Gemma3Model m, List<TrainStep.Example> b) {
        List<Gemma3Model.Input> in = new ArrayList<>();
        for (TrainStep.Example e : b) in.add(new Gemma3Model.Input(m.newCache(), null, e.ids()));
        return in;
    }

    static TrainStep.Example trim(TrainStep.Example e, int n) {
        return new TrainStep.Example(java.util.Arrays.copyOf(e.ids(), n), java.util.Arrays.copyOf(e.labels(), n));
    }

    // Linear.merge() keeps the LoRA branch attached; while merged, park it so the forward does not add it twice.
    private static final java.util.Map<Linear, Linear.Lora> PARKED = new java.util.IdentityHashMap<>();

    private static Linear.Lora detach(Linear.Lora lora, Linear l) {
        PARKED.put(l, lora);
        return null;
    }

    private static Linear.Lora reattach(Linear l) {
        return PARKED.remove(l);
    }

    static float[] forward(Gemma3Model m, List<TrainStep.Example> b) {
        List<Gemma3Model.Input> in = new ArrayList<>();
        for (TrainStep.Example e : b) in.add(new Gemma3Model.Input(m.newCache(), null, e.ids()));
        return m.forward(in, null);
    }
}
