package dev.peft4j.peft;

import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Models;
import dev.peft4j.model.RandomInit;
import dev.peft4j.train.AdamW;
import dev.peft4j.train.LrSchedule;
import dev.peft4j.train.Params;
import dev.peft4j.train.PromptEncoder;
import dev.peft4j.train.TrainStep;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** P-tuning (REFERENCE 2.5): at inference its saved encoder outputs act as prompt tuning; the MLP encoder's gradients. */
class PTuningTest {
    @TempDir
    static Path tmp;
    static Path model;
    static final List<int[]> SEQS = List.of(new int[]{2, 17, 300, 45, 9, 611}, new int[]{2, 5, 6});

    @BeforeAll
    static void makeModel() throws Exception {
        var om = new com.fasterxml.jackson.databind.ObjectMapper();
        var cfg = (com.fasterxml.jackson.databind.node.ObjectNode) om.readTree(PTuningTest.class.getResource("/tiny-gemma3-config.json"));
        cfg.put("initializer_range", 0.15);
        Path cfgFile = tmp.resolve("config.json");
        Files.writeString(cfgFile, cfg.toString());
        model = tmp.resolve("model");
        RandomInit.write(cfgFile, model, 8, false, 0.1);
    }

    static void writeTensor(Path dir, float[] v, int n) throws Exception {
        SafeTensors.write(dir.resolve("adapter_model.safetensors"), Map.of("prompt_embeddings", SafeTensors.Entry.f32(v, n, 64)), Map.of("format", "pt"));
    }

    @Test
    void pTuningAdapterIsPromptTuningAtInference() throws Exception {
        int n = 3;
        float[] v = new float[n * 64];
        SplittableRandom r = new SplittableRandom(1);
        for (int i = 0; i < v.length; i++) v[i] = (float) (r.nextDouble() * 4 - 2);
        // a P_TUNING adapter_config.json with the key set PEFT writes (encoder fields are irrelevant at inference)
        Path pt = tmp.resolve("p-tuning");
        Files.createDirectories(pt);
        Files.writeString(pt.resolve("adapter_config.json"), """
                {
                  "auto_mapping": null,
                  "base_model_name_or_path": "tiny",
                  "encoder_dropout": 0.0,
                  "encoder_hidden_size": 128,
                  "encoder_num_layers": 2,
                  "encoder_reparameterization_type": "MLP",
                  "inference_mode": true,
                  "modules_to_save": null,
                  "num_attention_heads": 4,
                  "num_layers": 6,
                  "num_transformer_submodules": 1,
                  "num_virtual_tokens": 3,
                  "peft_type": "P_TUNING",
                  "peft_version": "0.17.1",
                  "revision": null,
                  "task_type": "CAUSAL_LM",
                  "token_dim": 64
                }
                """);
        writeTensor(pt, v, n);
        Path prompt = tmp.resolve("prompt-tuning");
        PromptTuningConfig.create(Map.of("num_virtual_tokens", n, "token_dim", 64)).write(prompt);
        writeTensor(prompt, v, n);

        Gemma3LM a = Models.load(model, pt), b = Models.load(model, prompt), base = Models.load(model, null);
        assertEquals(n, a.virtualTokens());
        List<float[]> la = a.logits(SEQS, new int[]{0, 0}), lb = b.logits(SEQS, new int[]{0, 0}), l0 = base.logits(SEQS, new int[]{0, 0});
        for (int s = 0; s < SEQS.size(); s++) {
            assertArrayEquals(lb.get(s), la.get(s), 0f, "P_TUNING logits equal PROMPT_TUNING logits");
            double d = 0;
            for (int i = 0; i < la.get(s).length; i++) d = Math.max(d, Math.abs(la.get(s)[i] - l0.get(s)[i]));
            assertTrue(d > 1e-3, "the virtual tokens change the logits");
        }
        // wrong table size: a clear error
        Path bad = tmp.resolve("p-tuning-bad");
        Files.createDirectories(bad);
        Files.copy(pt.resolve("adapter_config.json"), bad.resolve("adapter_config.json"));
        writeTensor(bad, new float[2 * 64], 2);
        var e = assertThrows(dev.peft4j.util.UserException.class, () -> Models.load(model, bad));
        assertTrue(e.getMessage().contains("prompt_embeddings has shape [2, 64], expected [3, 64]"), e.getMessage());
    }

    @Test
    void encoderForwardIsLinearReluLinearReluLinear() {
        PromptEncoder enc = PromptEncoder.init(2, 5, 3, new SplittableRandom(3));
        float[] out = enc.forward().clone();
        for (int t = 0; t < 2; t++) {
            double[] h1 = new double[3], h2 = new double[3];
            for (int o = 0; o < 3; o++) {
                double s = enc.b1[o];
                for (int i = 0; i < 5; i++) s += (double) enc.embedding[t * 5 + i] * enc.w1[o * 5 + i];
                h1[o] = Math.max(0, s);
            }
            for (int o = 0; o < 3; o++) {
                double s = enc.b2[o];
                for (int i = 0; i < 3; i++) s += h1[i] * enc.w2[o * 3 + i];
                h2[o] = Math.max(0, s);
            }
            for (int o = 0; o < 5; o++) {
                double s = enc.b3[o];
                for (int i = 0; i < 3; i++) s += h2[i] * enc.w3[o * 3 + i];
                assertEquals(s, out[t * 5 + o], 1e-6);
            }
        }
        // torch.nn.Linear init bounds 1/sqrt(fan_in)
        for (float w : enc.w1) assertTrue(Math.abs(w) <= 1 / Math.sqrt(5));
        for (float w : enc.w3) assertTrue(Math.abs(w) <= 1 / Math.sqrt(3));
        assertEquals(7, enc.params().size());
        assertNotNull(enc.params().get("prompt_encoder.default.mlp_head.4.bias"));
    }

    @Test
    void encoderGradientsMatchFiniteDifferences() {
        Gemma3Model m = Gemma3Model.load(model);
        PromptEncoder enc = PromptEncoder.init(3, 64, 32, new SplittableRandom(5));
        Params p = enc.params();
        TrainStep ts = TrainStep.pTuning(m, p, enc, AdamW.defaults(0), LrSchedule.of("constant", 1e-3, 0, 1), 0, 1);
        List<TrainStep.Example> batch = List.of(new TrainStep.Example(SEQS.get(0), SEQS.get(0)), new TrainStep.Example(SEQS.get(1), SEQS.get(1)));
        ts.accumulate(batch, -1, null);
        SplittableRandom r = new SplittableRandom(6);
        double h = 1e-3;   // small: a larger step moves ReLU inputs across 0, where the loss has kinks
        for (Params.Param q : p) {
            float[] dir = new float[q.data().length];
            for (int i = 0; i < dir.length; i++) dir[i] = (float) (r.nextDouble() * 2 - 1);
            double analytic = 0;
            for (int i = 0; i < dir.length; i++) analytic += (double) dir[i] * q.grad()[i];
            float[] keep = q.data().clone();
            for (int i = 0; i < dir.length; i++) q.data()[i] = keep[i] + (float) h * dir[i];
            double up = ts.loss(batch);
            for (int i = 0; i < dir.length; i++) q.data()[i] = keep[i] - (float) h * dir[i];
            double dn = ts.loss(batch);
            System.arraycopy(keep, 0, q.data(), 0, keep.length);
            double numeric = (up - dn) / (2 * h);
            double rel = Math.abs(numeric - analytic) / Math.max(Math.abs(numeric), 1e-3);
            assertTrue(rel < 5e-3, q.name() + ": directional derivative " + analytic + " vs finite difference " + numeric);
        }
    }
}
