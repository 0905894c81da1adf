package dev.peft4j.train;

import dev.peft4j.Shared;
import dev.peft4j.data.DataConfig;
import dev.peft4j.data.QuickstartAssets;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Models;
import dev.peft4j.model.RandomInit;
import dev.peft4j.util.MetricsWriter;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The training loop end to end on a tiny random model with the shipped quickstart tokenizer and data (no ../shared needed). */
class TrainerTest {
    @TempDir
    static Path tmp;
    static Path model, data;

    @BeforeAll
    static void setUp() throws Exception {
        Path assets = QuickstartAssets.copyTo(tmp.resolve("assets"));
        model = tmp.resolve("model");
        RandomInit.write(Shared.resource("tiny-gemma3-config.json"), model, 11, false, 0.1);
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) Files.copy(assets.resolve("tokenizer").resolve(f), model.resolve(f));
        data = assets.resolve(QuickstartAssets.DATA);
    }

    static DataConfig dataArgs() {
        DataConfig d = new DataConfig();
        d.data = data;
        d.format = "auto";
        d.template = "dolly";
        d.maxSeqLen = 192;
        d.valSize = "4";
        d.seed = 5;
        d.batchSize = 4;
        d.bucket = 0;
        return d;
    }

    static TrainConfig opts(Path out, String method, boolean resume, int steps) {
        TrainConfig c = cfg(out, method, 4, "text:Below is an instruction", List.of("q_proj", "v_proj", "down_proj"), steps, 2,
                method.contains("prompt-tuning") ? 0.05 : 1e-2, "cosine");
        c.resume = resume;
        c.feedforwardModules = method.equals("ia3") ? List.of("down_proj") : null;
        c.warmupSteps = 2;
        c.weightDecay = 0.01;
        c.evalEvery = 3;
        c.saveEvery = 2;
        c.keepCheckpoints = 2;
        return c;
    }

    static TrainConfig cfg(Path out, String method, int virtualTokens, String init, List<String> targets, int steps, int accum, double lr, String schedule) {
        TrainConfig c = new TrainConfig(model, out, method);
        c.numVirtualTokens = virtualTokens;
        c.init = init;
        c.loraR = 4;
        c.loraAlpha = 8;
        c.targetModules = targets;
        c.maxSteps = steps;
        c.gradAccum = accum;
        c.lr = lr;
        c.schedule = schedule;
        c.keepCheckpoints = 1;
        return c;
    }

    static PrintStream quiet() { return new PrintStream(new ByteArrayOutputStream()); }

    static float[] tensor(Path f, String name) {
        try (SafeTensors st = SafeTensors.open(f)) { return st.get(name).toFloats(); }
    }

    @Test
    void killedAndResumedRunEqualsUninterruptedRun() throws Exception {
        for (String method : new String[]{"prompt-tuning", "p-tuning", "lora", "ia3"}) {
            Path a = tmp.resolve("full-" + method), b = tmp.resolve("killed-" + method);
            new Trainer(opts(a, method, false, 7), dataArgs(), quiet()).run();
            assertThrows(IllegalStateException.class, () -> new Trainer(opts(b, method, false, 7), dataArgs(), quiet())
                    .onStep(s -> { if (s == 5) throw new IllegalStateException("killed at step 5"); }).run());
            assertTrue(Files.isDirectory(b.resolve("checkpoints/step-000004")), "checkpoint at step 4 exists");
            new Trainer(opts(b, method, true, 7), dataArgs(), quiet()).run();
            try (SafeTensors sa = SafeTensors.open(a.resolve("adapter_model.safetensors"));
                 SafeTensors sb = SafeTensors.open(b.resolve("adapter_model.safetensors"))) {
                assertEquals(sa.tensors().keySet(), sb.tensors().keySet());
                for (String k : sa.tensors().keySet()) assertArrayEquals(sa.get(k).toFloats(), sb.get(k).toFloats(), 0f, method + " " + k);
            }
            var ma = MetricsWriter.read(a.resolve("metrics.jsonl"));
            var mb = MetricsWriter.read(b.resolve("metrics.jsonl"));
            assertEquals(7, ma.size());
            assertEquals(ma.size(), mb.size(), "metrics lines after resume");
            for (int i = 0; i < ma.size(); i++) assertEquals(ma.get(i).get("loss").asDouble(), mb.get(i).get("loss").asDouble(), 0.0, "loss at step " + (i + 1));
            assertTrue(Files.isRegularFile(a.resolve("loss_curve.svg")));
            assertTrue(Files.readString(a.resolve("loss_curve.svg")).contains("<svg"));
        }
    }

    @Test
    void savedLoraAdapterReloadsWithSameOutputs() throws Exception {
        Path out = tmp.resolve("lora-reload");
        new Trainer(opts(out, "lora", false, 3), dataArgs(), quiet()).run();
        Gemma3LM base = Models.load(model, null);
        Gemma3LM tuned = Models.load(model, out);
        int[] seq = {2, 100, 200, 300, 400};
        float[] lb = base.logits(List.of(seq), new int[]{0}).get(0);
        float[] lt = tuned.logits(List.of(seq), new int[]{0}).get(0);
        double diff = 0;
        for (int i = 0; i < lb.length; i++) diff = Math.max(diff, Math.abs(lb[i] - lt[i]));
        assertTrue(diff > 1e-4, "trained LoRA changes the logits");
        String cfg = Files.readString(out.resolve("adapter_config.json"));
        assertTrue(cfg.contains("\"peft_type\": \"LORA\""));
        assertTrue(cfg.contains("\"r\": 4"));
        // every tensor follows PEFT's on-disk naming
        try (SafeTensors st = SafeTensors.open(out.resolve("adapter_model.safetensors"))) {
            assertEquals(6 * 3 * 2, st.tensors().size());
            for (String k : st.tensors().keySet()) assertTrue(k.matches("base_model\\.model\\.model\\.layers\\.\\d+\\.(self_attn|mlp)\\.\\w+_proj\\.lora_[AB]\\.weight"), k);
        }
    }

    @Test
    void ia3AdapterIsSavedAsPeftDoesAndReloads() throws Exception {
        Path out = tmp.resolve("ia3");
        new Trainer(opts(out, "ia3", false, 3), dataArgs(), quiet()).run();
        String cfg = Files.readString(out.resolve("adapter_config.json"));
        assertTrue(cfg.contains("\"peft_type\": \"IA3\""), cfg);
        assertTrue(cfg.contains("\"feedforward_modules\": [\n    \"down_proj\"\n  ]"), cfg);
        try (SafeTensors st = SafeTensors.open(out.resolve("adapter_model.safetensors"))) {
            assertEquals(6 * 3, st.tensors().size());
            for (String k : st.tensors().keySet()) {
                assertTrue(k.matches("base_model\\.model\\.model\\.layers\\.\\d+\\.(self_attn\\.[qv]|mlp\\.down)_proj\\.ia3_l"), k);
                long[] shape = st.get(k).shape();
                assertEquals(k.contains("down_proj") ? 1 : (k.contains("q_proj") ? 128 : 64), shape[0], k);
                float[] v = st.get(k).toFloats();
                boolean moved = false;
                for (float x : v) moved |= x != 1f;
                assertTrue(moved, k + " was trained away from its init (ones)");
            }
        }
        Gemma3LM base = Models.load(model, null), tuned = Models.load(model, out);
        int[] seq = {2, 100, 200, 300, 400};
        float[] lb = base.logits(List.of(seq), new int[]{0}).get(0), lt = tuned.logits(List.of(seq), new int[]{0}).get(0);
        double diff = 0;
        for (int i = 0; i < lb.length; i++) diff = Math.max(diff, Math.abs(lb[i] - lt[i]));
        assertTrue(diff > 1e-4, "trained IA3 changes the logits");
        UserException e = assertThrows(UserException.class, () -> new Trainer(ia3Bad(), dataArgs(), quiet()).run());
        assertTrue(e.getMessage().contains("--feedforward-modules"), e.getMessage());
    }

    static TrainConfig ia3Bad() {
        TrainConfig c = cfg(tmp.resolve("ia3-bad"), "lora", 4, "random", null, 1, 1, 1e-2, "constant");
        c.feedforwardModules = List.of("down_proj");
        return c;
    }

    @Test
    void pTuningSavesTheEncoderOutputsAsPeftDoes() throws Exception {
        Path out = tmp.resolve("p-tuning");
        new Trainer(opts(out, "p-tuning", false, 3), dataArgs(), quiet()).run();
        String cfg = Files.readString(out.resolve("adapter_config.json"));
        assertTrue(cfg.contains("\"peft_type\": \"P_TUNING\""), cfg);
        assertTrue(cfg.contains("\"encoder_hidden_size\": 64") && cfg.contains("\"token_dim\": 64") && cfg.contains("\"num_virtual_tokens\": 4"), cfg);
        float[] saved = tensor(out.resolve("adapter_model.safetensors"), "prompt_embeddings");
        // the saved table is the encoder's output after the last update (the encoder itself is kept in the checkpoint)
        Path enc = out.resolve("checkpoints/step-000003/" + Trainer.ENCODER_FILE);
        String p = "prompt_encoder.default.";
        PromptEncoder e = new PromptEncoder(4, 64, 64, tensor(enc, p + "embedding.weight"), tensor(enc, p + "mlp_head.0.weight"), tensor(enc, p + "mlp_head.0.bias"),
                tensor(enc, p + "mlp_head.2.weight"), tensor(enc, p + "mlp_head.2.bias"), tensor(enc, p + "mlp_head.4.weight"), tensor(enc, p + "mlp_head.4.bias"));
        assertArrayEquals(e.forward(), saved, 0f);
        Gemma3LM lm = Models.load(model, out);
        assertEquals(4, lm.virtualTokens());
        assertArrayEquals(saved, lm.virtualVectors(), 0f);
    }

    @Test
    void promptTuningLossGoesDownAndAdapterLoads() throws Exception {
        Path out = tmp.resolve("pt");
        Trainer.Result r = new Trainer(opts(out, "prompt-tuning", false, 12), dataArgs(), quiet()).run();
        var m = MetricsWriter.read(out.resolve("metrics.jsonl"));
        double first = m.get(0).get("loss").asDouble();
        double lastThree = (m.get(9).get("loss").asDouble() + m.get(10).get("loss").asDouble() + m.get(11).get("loss").asDouble()) / 3;
        assertTrue(lastThree < first, "loss " + first + " -> " + lastThree);
        assertEquals(4, Models.load(model, out).virtualTokens());
        assertTrue(Files.readString(out.resolve("adapter_config.json")).contains("\"prompt_tuning_init\": \"TEXT\""));
        assertNotNull(r.finalValLoss());
    }

    @Test
    void fullFineTuningWritesALoadableCheckpoint() throws Exception {
        Path out = tmp.resolve("full");
        new Trainer(opts(out, "full", false, 2), dataArgs(), quiet()).run();
        Gemma3LM tuned = Models.load(out, null);
        Gemma3LM base = Models.load(model, null);
        int[] seq = {2, 10, 20, 30};
        float[] a = base.logits(List.of(seq), new int[]{0}).get(0), b = tuned.logits(List.of(seq), new int[]{0}).get(0);
        double diff = 0;
        for (int i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
        assertTrue(diff > 1e-4, "full fine-tuning changed the model");
        assertTrue(Files.isRegularFile(out.resolve("tokenizer.json")));
        try (SafeTensors st = SafeTensors.open(out.resolve("model.safetensors"))) {
            assertFalse(st.has("lm_head.weight"), "tied head not saved twice");
            assertEquals("pt", st.metadata().get("format"));
        }
    }

    @Test
    void adapterSettingsThatDoNotFitTheModelAreRefused() {
        TrainConfig none = cfg(tmp.resolve("nofit"), "lora", 4, "random", List.of("wq_proj"), 1, 1, 1e-3, "constant");
        UserException e = assertThrows(UserException.class, () -> new Trainer(none, dataArgs(), quiet()).run());
        assertTrue(e.getMessage().contains("matched none"), e.getMessage());
        TrainConfig badInit = cfg(tmp.resolve("badinit"), "prompt-tuning", 4, "words", List.of("q_proj"), 1, 1, 1e-3, "constant");
        UserException e2 = assertThrows(UserException.class, () -> new Trainer(badInit, dataArgs(), quiet()).run());
        assertTrue(e2.getMessage().contains("--init"), e2.getMessage());
    }

    @Test
    void outputHoldingAnotherRunIsRefused() throws Exception {
        Path out = tmp.resolve("taken");
        new Trainer(opts(out, "prompt-tuning", false, 1), dataArgs(), quiet()).run();
        UserException e = assertThrows(UserException.class, () -> new Trainer(opts(out, "lora", false, 1), dataArgs(), quiet()).run());
        assertTrue(e.getMessage().contains("different run"), e.getMessage());
        UserException same = assertThrows(UserException.class, () -> new Trainer(opts(out, "prompt-tuning", false, 1), dataArgs(), quiet()).run());
        assertTrue(same.getMessage().contains("--resume"), same.getMessage());
        UserException diff = assertThrows(UserException.class, () -> new Trainer(opts(out, "lora", true, 1), dataArgs(), quiet()).run());
        assertTrue(diff.getMessage().contains("different settings"), diff.getMessage());
        // the finished run's files are untouched
        assertTrue(Files.isRegularFile(out.resolve("adapter_model.safetensors")));
    }

    @Test
    void gradientAccumulationStopsAtTheEpochEnd() throws Exception {
        // 72 training examples in batches of 4 = 18 batches; 4 per update = 5 updates, the last one with the 2 remaining
        Path out = tmp.resolve("accum-epoch");
        TrainConfig o = cfg(out, "prompt-tuning", 4, "random", List.of("q_proj"), 0, 4, 0.05, "constant");
        Trainer.Result r = new Trainer(o, dataArgs(), quiet()).run();
        assertEquals(5, r.steps());
        var state = new com.fasterxml.jackson.databind.ObjectMapper().readTree(out.resolve("checkpoints/step-000005/trainer_state.json").toFile());
        assertEquals(1, state.get("data_position").get("epoch").asInt(), "one epoch consumed");
        assertEquals(0, state.get("data_position").get("batch").asInt(), "and not a batch of the next one");
    }

    @Test
    void checkpointsAreOrderedByStepNumber() throws Exception {
        Path root = tmp.resolve("ckpt-order");
        for (String d : new String[]{"step-999999", "step-1000000", "step-000002", "other"}) Files.createDirectories(root.resolve(d));
        assertEquals(List.of("step-000002", "step-999999", "step-1000000"),
                Trainer.checkpoints(root).stream().map(p -> p.getFileName().toString()).toList());
        Files.writeString(root.resolve("step-999999/trainer_state.json"), "{}");
        assertEquals(root.resolve("step-999999"), Trainer.latestCheckpoint(root), "the newest complete checkpoint");
    }
}
