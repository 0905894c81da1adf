package dev.peft4j.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.Shared;
import dev.peft4j.io.SafeTensors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** Checkpoint layouts and config features: sharded files, multimodal names, F16, v4/v5 configs, RoPE scaling, softcapping. */
class ModelFormatsTest {
    @TempDir
    Path tmp;

    static final int[] SEQ = {2, 17, 9, 400, 33, 1000, 5, 6, 7, 8, 9, 10, 11};

    static float[] logits(Path dir) {
        return Models.load(dir, null).logits(List.of(SEQ), new int[]{0}).get(0);
    }

    static float maxDiff(float[] a, float[] b) {
        float m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
    }

    Map<String, SafeTensors.Entry> tinyEntries(Path src, java.util.function.Function<String, String> rename, boolean f16) {
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        try (SafeTensors st = SafeTensors.open(src.resolve("model.safetensors"))) {
            for (var t : st.tensors().values()) {
                float[] v = t.toFloats();
                e.put(rename.apply(t.name()), f16 ? SafeTensors.Entry.f16(v, t.shape()) : SafeTensors.Entry.f32(v, t.shape()));
            }
        }
        return e;
    }

    @Test
    void shardedCheckpointEqualsSingleFile() throws Exception {
        Path src = Shared.require("fixtures/tiny-gemma3");
        Path d = tmp.resolve("sharded");
        Files.createDirectories(d);
        Files.copy(src.resolve("config.json"), d.resolve("config.json"));
        Map<String, SafeTensors.Entry> all = tinyEntries(src, n -> n, false);
        Map<String, SafeTensors.Entry> a = new LinkedHashMap<>(), b = new LinkedHashMap<>();
        ObjectNode idx = new ObjectMapper().createObjectNode();
        ObjectNode wm = idx.putObject("weight_map");
        int i = 0;
        for (var e : all.entrySet()) {
            boolean first = i++ < all.size() / 2;
            (first ? a : b).put(e.getKey(), e.getValue());
            wm.put(e.getKey(), first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors");
        }
        SafeTensors.write(d.resolve("model-00001-of-00002.safetensors"), a, null);
        SafeTensors.write(d.resolve("model-00002-of-00002.safetensors"), b, null);
        Files.writeString(d.resolve("model.safetensors.index.json"), idx.toString());
        assertEquals(0f, maxDiff(logits(src), logits(d)));
    }

    @Test
    void multimodalCheckpointTextTowerLoads() throws Exception {
        Path src = Shared.require("fixtures/tiny-gemma3");
        ObjectMapper om = new ObjectMapper();
        for (String prefix : new String[]{"language_model.model.", "model.language_model."}) {
            Path d = tmp.resolve("mm" + prefix.length() + prefix.charAt(0));
            Files.createDirectories(d);
            ObjectNode text = (ObjectNode) om.readTree(src.resolve("config.json").toFile());
            ObjectNode root = om.createObjectNode();
            root.put("model_type", "gemma3");
            text.put("model_type", "gemma3_text");
            root.set("text_config", text);
            root.putObject("vision_config").put("hidden_size", 8);
            Files.writeString(d.resolve("config.json"), root.toString());
            Map<String, SafeTensors.Entry> e = tinyEntries(src, n -> prefix + n.substring("model.".length()), false);
            e.put("vision_tower.vision_model.embeddings.patch_embedding.weight", SafeTensors.Entry.f32(new float[4], 2, 2));
            SafeTensors.write(d.resolve("model.safetensors"), e, null);
            assertEquals(0f, maxDiff(logits(src), logits(d)), prefix);
        }
    }

    @Test
    void f16WeightsCloseToF32() throws Exception {
        Path src = Shared.require("fixtures/tiny-gemma3");
        Path d = tmp.resolve("f16");
        Files.createDirectories(d);
        Files.copy(src.resolve("config.json"), d.resolve("config.json"));
        SafeTensors.write(d.resolve("model.safetensors"), tinyEntries(src, n -> n, true), null);
        Gemma3LM lm = Models.load(d, null);
        assertEquals(dev.peft4j.tensor.DType.F16, lm.model.weights.embed.dtype);
        float diff = maxDiff(logits(src), logits(d));
        assertTrue(diff > 0 && diff < 2e-2, "f16 vs f32 logits differ by " + diff);
    }

    @Test
    void realConfigV4FormatParses() {
        Gemma3Config c = Gemma3Config.read(Shared.require("configs/gemma-3-270m/config.json"));
        assertEquals(640, c.hidden());
        assertEquals(262144, c.vocabSize());
        assertEquals(1, c.kvHeads());
        assertEquals(256, c.headDim());
        assertEquals(1e6, c.ropeThetaFull());
        assertEquals(1e4, c.ropeThetaSliding());
        assertEquals(512, c.slidingWindow());
        for (int i = 0; i < 18; i++) assertEquals((i + 1) % 6 != 0, c.isSliding(i), "layer " + i);
        assertTrue(c.tieEmbeddings());
        assertNull(c.finalLogitSoftcap());
    }

    @Test
    void legacyPatternAndRopeScalingAndEosList() {
        var om = new ObjectMapper();
        ObjectNode n = om.createObjectNode();
        n.put("model_type", "gemma3_text");
        n.put("hidden_size", 64); n.put("num_hidden_layers", 8); n.put("num_attention_heads", 6);
        n.put("num_key_value_heads", 2); n.put("head_dim", 16); n.put("vocab_size", 100); n.put("intermediate_size", 32);
        n.put("sliding_window_pattern", 4);
        n.put("rope_theta", 1e6); n.put("rope_local_base_freq", 1e4);
        n.putObject("rope_scaling").put("rope_type", "linear").put("factor", 8.0);
        n.putArray("eos_token_id").add(1).add(106);
        n.put("final_logit_softcapping", 30.0);
        Gemma3Config c = Gemma3Config.parse(n, "test");
        assertArrayEquals(new boolean[]{true, true, true, false, true, true, true, false}, c.sliding());
        assertEquals(8.0, c.ropeFactorFull());
        assertEquals(1.0, c.ropeFactorSliding());
        assertArrayEquals(new int[]{1, 106}, c.eosIds());
        assertEquals(30.0, c.finalLogitSoftcap());
    }

    @Test
    void linearRopeScalingDividesFrequencies() {
        float[][] plain = Gemma3Model.ropeTable(64, 8, 1e4, 1.0);
        float[][] scaled = Gemma3Model.ropeTable(64, 8, 1e4, 4.0);
        // angle(p, scaled) = p * inv / 4  ==  angle(p / 4, plain)
        for (int p = 0; p < 64; p += 4) {
            for (int i = 0; i < 8; i++) {
                assertEquals(plain[0][(p / 4) * 8 + i], scaled[0][p * 8 + i], 1e-5f);
                assertEquals(plain[1][(p / 4) * 8 + i], scaled[1][p * 8 + i], 1e-5f);
            }
        }
        // inv_freq = theta^(-2i/d): position 1, pair i=1 of d=16 has angle 1e4^(-1/8)
        assertEquals((float) Math.cos(Math.pow(1e4, -2.0 / 16)), plain[0][8 + 1], 1e-6f);
    }

    @Test
    void finalSoftcapAppliesTanh() throws Exception {
        Path src = Shared.require("fixtures/tiny-gemma3");
        Path d = tmp.resolve("cap");
        Files.createDirectories(d);
        ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(src.resolve("config.json").toFile());
        cfg.put("final_logit_softcapping", 0.5);
        Files.writeString(d.resolve("config.json"), cfg.toString());
        Files.copy(src.resolve("model.safetensors"), d.resolve("model.safetensors"));
        float[] plain = logits(src), capped = logits(d);
        for (int i = 0; i < plain.length; i += 97) assertEquals(0.5 * Math.tanh(plain[i] / 0.5), capped[i], 1e-5);
    }
}
