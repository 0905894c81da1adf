package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.*;

class AdapterConfigTest {
    @TempDir Path tmp;

    /** The fixture files written by peft 0.21.0 (copied to src/test/resources). */
    static String resource(String name) throws IOException {
        try (InputStream in = AdapterConfigTest.class.getResourceAsStream("/peft/" + name + "/adapter_config.json")) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    static Set<String> keys(String json) throws IOException {
        Set<String> s = new TreeSet<>();
        new ObjectMapper().readTree(json).fieldNames().forEachRemaining(s::add);
        return s;
    }

    @Test
    void loraFixtureRoundTripsByteForByte() throws IOException {
        String text = resource("lora");
        Path dir = Files.createDirectories(tmp.resolve("lora"));
        Files.writeString(dir.resolve("adapter_config.json"), text);
        AdapterConfig c = AdapterConfig.read(dir);
        LoraConfig lora = assertInstanceOf(LoraConfig.class, c);
        assertEquals(4, lora.r());
        assertEquals(8.0, lora.loraAlpha());
        assertEquals(0.0, lora.loraDropout());
        assertEquals("CAUSAL_LM", lora.taskType());
        assertEquals(Boolean.TRUE, lora.initLoraWeights());
        assertEquals(List.of(), lora.unsupportedFeatures());
        assertEquals(text, c.toJsonString());

        Path out = tmp.resolve("out");
        c.write(out);
        assertEquals(text, Files.readString(out.resolve("adapter_config.json")));
        assertEquals(c, AdapterConfig.read(out));
    }

    @Test
    void promptTuningFixtureRoundTripsByteForByte() throws IOException {
        String text = resource("prompt-tuning");
        PromptTuningConfig c = assertInstanceOf(PromptTuningConfig.class, AdapterConfig.parse(text, "adapter_config.json"));
        assertEquals(5, c.numVirtualTokens());
        assertEquals(64, c.tokenDim());
        assertEquals(6, c.numLayers());
        assertEquals(4, c.numAttentionHeads());
        assertEquals(5, c.totalVirtualTokens());
        assertEquals("RANDOM", c.init());
        assertEquals(text, c.toJsonString());
        c.write(tmp);
        assertEquals(text, Files.readString(tmp.resolve("adapter_config.json")));
    }

    @Test
    void newConfigsHaveExactlyPeftsKeysAndDefaults() throws IOException {
        LoraConfig lora = LoraConfig.create(Map.of("r", 4, "target_modules", List.of("q_proj")));
        assertEquals(keys(resource("lora")), keys(lora.toJsonString()));
        JsonNode j = lora.toJson();
        // PEFT defaults (REFERENCE 2.3)
        assertEquals(8, j.get("lora_alpha").intValue());
        assertTrue(j.get("lora_alpha").isInt());
        assertEquals("none", j.get("bias").textValue());
        assertEquals("megatron.core", j.get("megatron_core").textValue());
        assertEquals(16, j.get("qalora_group_size").intValue());
        assertTrue(j.get("loftq_config").isObject() && j.get("loftq_config").isEmpty());
        assertTrue(j.get("init_lora_weights").booleanValue());
        assertFalse(j.get("inference_mode").booleanValue());

        PromptTuningConfig pt = PromptTuningConfig.create(Map.of("num_virtual_tokens", 20, "token_dim", 640,
                "num_layers", 18, "num_attention_heads", 4, "base_model_name_or_path", "google/gemma-3-270m"));
        assertEquals(keys(resource("prompt-tuning")), keys(pt.toJsonString()));
        pt.write(tmp);
        JsonNode w = new ObjectMapper().readTree(tmp.resolve("adapter_config.json").toFile());
        assertTrue(w.get("inference_mode").booleanValue(), "save_pretrained writes inference_mode=true");
        assertEquals("0.21.0", w.get("peft_version").textValue());
        assertEquals(1, w.get("num_transformer_submodules").intValue());
        assertEquals("CAUSAL_LM", w.get("task_type").textValue());
        // the REFERENCE 2.2 example: TEXT init
        PromptTuningConfig text = pt.with(Map.of("prompt_tuning_init", "TEXT", "prompt_tuning_init_text",
                "Below is an instruction that describes a task.", "tokenizer_name_or_path", "google/gemma-3-270m"));
        assertEquals("TEXT", text.init());
    }

    @Test
    void otherMethodsReadAndRoundTrip() {
        String prefix = "{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 10, \"token_dim\": 256, \"num_layers\": 18, \"num_attention_heads\": 1}";
        PrefixTuningConfig p = assertInstanceOf(PrefixTuningConfig.class, AdapterConfig.parse(prefix, "x.json"));
        assertEquals(256, p.tokenDim());
        assertFalse(p.prefixProjection());
        assertEquals(p, AdapterConfig.parse(p.toJsonString(), "y.json"));
        PromptEncoderConfig pe = assertInstanceOf(PromptEncoderConfig.class,
                AdapterConfig.parse("{\"peft_type\": \"P_TUNING\", \"num_virtual_tokens\": 10, \"encoder_hidden_size\": 128}", "x.json"));
        assertEquals("MLP", pe.reparameterizationType());
        assertEquals(2, pe.encoderNumLayers());
        assertEquals(pe, AdapterConfig.parse(pe.toJsonString(), "y.json"));
        IA3Config ia3 = assertInstanceOf(IA3Config.class, AdapterConfig.parse(
                "{\"peft_type\": \"IA3\", \"target_modules\": [\"q_proj\", \"v_proj\", \"down_proj\"], \"feedforward_modules\": [\"down_proj\"]}", "x.json"));
        assertTrue(ia3.initIa3Weights());
        assertEquals(ia3, AdapterConfig.parse(ia3.toJsonString(), "y.json"));
    }

    @Test
    void minimalAndNewerConfigsAreAccepted() throws IOException {
        // minimal configs in the wild (REFERENCE 2.2) + an unknown key from a newer PEFT
        AdapterConfig c = AdapterConfig.parse("{\"num_virtual_tokens\": 20, \"peft_type\": \"PROMPT_TUNING\", \"task_type\": \"CAUSAL_LM\","
                + " \"base_model_name_or_path\": \"google/gemma-3-270m\", \"some_future_option\": 3}", "a.json");
        assertEquals(keys(resource("prompt-tuning")), keys(c.toJsonString()), "unknown keys are dropped, missing keys defaulted");
        assertEquals(1, ((PromptTuningConfig) c).numTransformerSubmodules());
        LoraConfig l = (LoraConfig) AdapterConfig.parse("{\"peft_type\": \"LORA\", \"r\": 16, \"lora_alpha\": 32.5, \"lora_dropout\": 0.05}", "b.json");
        assertEquals(32.5, l.loraAlpha());
        assertTrue(l.toJsonString().contains("\"lora_dropout\": 0.05,"));
    }

    static String errorOf(String json) {
        return assertThrows(UserException.class, () -> AdapterConfig.parse(json, "dir/adapter_config.json")).getMessage();
    }

    @Test
    void badConfigsNameFileAndField() {
        assertEquals("dir/adapter_config.json: missing field \"peft_type\" (e.g. \"LORA\" or \"PROMPT_TUNING\")", errorOf("{\"r\": 8}"));
        assertTrue(errorOf("{\"peft_type\": \"ADALORA\"}").startsWith("dir/adapter_config.json: field \"peft_type\": unsupported value \"ADALORA\""));
        assertTrue(errorOf("{\"peft_type\": 3}").contains("field \"peft_type\": expected a string"));
        assertEquals("dir/adapter_config.json: field \"r\": expected a positive integer, got \"abc\"", errorOf("{\"peft_type\": \"LORA\", \"r\": \"abc\"}"));
        assertEquals("dir/adapter_config.json: field \"r\": expected a positive integer, got 0", errorOf("{\"peft_type\": \"LORA\", \"r\": 0}"));
        assertTrue(errorOf("{\"peft_type\": \"LORA\", \"bias\": \"some\"}").startsWith("dir/adapter_config.json: field \"bias\": expected one of [none, all, lora_only]"));
        assertTrue(errorOf("{\"peft_type\": \"LORA\", \"target_modules\": 5}").contains("field \"target_modules\": expected a list of module names, a regex string or null"));
        assertTrue(errorOf("{\"peft_type\": \"LORA\", \"target_modules\": \"(q_proj\"}").contains("field \"target_modules\": invalid regular expression"));
        assertTrue(errorOf("{\"peft_type\": \"LORA\", \"lora_dropout\": 1.5}").contains("field \"lora_dropout\": expected a probability"));
        assertTrue(errorOf("{\"peft_type\": \"LORA\", \"rank_pattern\": {\"q_proj\": -1}}").contains("field \"rank_pattern\": rank for \"q_proj\""));
        assertTrue(errorOf("{\"peft_type\": \"LORA\", \"layers_pattern\": \"layers\"}").contains("field \"layers_pattern\" requires \"layers_to_transform\""));
        assertTrue(errorOf("{\"peft_type\": \"LORA\", \"target_modules\": \".*q_proj\", \"layers_to_transform\": [1]}")
                .contains("field \"layers_to_transform\" cannot be used when \"target_modules\" is a string"));
        assertTrue(errorOf("{\"peft_type\": \"LORA\", \"layers_to_transform\": [\"a\"], \"target_modules\": [\"q_proj\"]}").contains("field \"layers_to_transform\""));
        assertEquals("dir/adapter_config.json: missing field \"num_virtual_tokens\" (the number of virtual tokens)", errorOf("{\"peft_type\": \"PROMPT_TUNING\"}"));
        assertTrue(errorOf("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 4, \"prompt_tuning_init\": \"TEXT\"}")
                .contains("field \"tokenizer_name_or_path\" is required when prompt_tuning_init is TEXT"));
        assertTrue(errorOf("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 4, \"prompt_tuning_init\": \"WORDS\"}")
                .contains("field \"prompt_tuning_init\": expected one of [TEXT, SAMPLE_VOCAB, RANDOM]"));
        assertTrue(errorOf("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 4, \"tokenizer_kwargs\": {}}")
                .contains("\"tokenizer_kwargs\" is only allowed when prompt_tuning_init is TEXT"));
        assertTrue(errorOf("{\"peft_type\": \"IA3\", \"target_modules\": [\"q_proj\"], \"feedforward_modules\": [\"down_proj\"]}")
                .contains("field \"feedforward_modules\" must be a subset of \"target_modules\""));
        assertTrue(errorOf("{\"peft_type\": \"LORA\",\n \"r\": }").startsWith("dir/adapter_config.json: invalid JSON at line 2"));
        assertEquals("dir/adapter_config.json: expected a JSON object", errorOf("[1]"));
        assertTrue(assertThrows(UserException.class, () -> AdapterConfig.read(tmp)).getMessage().startsWith("no adapter_config.json in " + tmp));
        assertTrue(assertThrows(UserException.class, () -> LoraConfig.create(Map.of("rank", 4))).getMessage().startsWith("unknown LORA config field \"rank\""));
        LoraConfig dora = LoraConfig.create(Map.of("use_dora", true, "bias", "all"));
        assertEquals(List.of("use_dora", "bias=all"), dora.unsupportedFeatures());
        assertThrows(UserException.class, dora::requireSupported);
    }

    @Test
    void pythonJsonFormatting() {
        assertEquals("0.0", PeftJson.pyFloat(0.0));
        assertEquals("0.05", PeftJson.pyFloat(0.05));
        assertEquals("0.0001", PeftJson.pyFloat(1e-4));
        assertEquals("1e-05", PeftJson.pyFloat(1e-5));
        assertEquals("2.5e-07", PeftJson.pyFloat(2.5e-7));
        assertEquals("1e+16", PeftJson.pyFloat(1e16));
        assertEquals("1000000000000000.0", PeftJson.pyFloat(1e15));
        assertEquals("32.5", PeftJson.pyFloat(32.5));
        assertEquals("-3.0", PeftJson.pyFloat(-3));
        assertEquals("0.1", PeftJson.pyFloat(0.1));
        var n = new ObjectMapper().createObjectNode();
        n.put("b", "caf\u00e9 \"q\"\n");
        n.putArray("a");
        n.putObject("c").put("z", 1).put("y", true);
        assertEquals("{\n  \"a\": [],\n  \"b\": \"caf\\u00e9 \\\"q\\\"\\n\",\n  \"c\": {\n    \"y\": true,\n    \"z\": 1\n  }\n}", PeftJson.dumps(n));
    }

    @Test
    void promptLearningFieldsComeFromTheModelConfig() throws IOException {
        JsonNode gemma;
        try (InputStream in = AdapterConfigTest.class.getResourceAsStream("/peft/gemma-3-270m-config.json")) {
            gemma = new ObjectMapper().readTree(in);
        }
        // REFERENCE 2.1 [derived] for gemma-3-270m
        PromptTuningConfig pt = ((PromptTuningConfig) AdapterConfig.parse("{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 20}", "a.json"))
                .withModelConfig(gemma);
        assertEquals(List.of(640, 4, 18, 1), List.of(pt.tokenDim(), pt.numAttentionHeads(), pt.numLayers(), pt.numTransformerSubmodules()));
        PromptEncoderConfig pe = ((PromptEncoderConfig) AdapterConfig.parse("{\"peft_type\": \"P_TUNING\", \"num_virtual_tokens\": 20}", "a.json"))
                .withModelConfig(gemma);
        assertEquals(640, pe.tokenDim());
        assertEquals(640, pe.encoderHiddenSize());
        PrefixTuningConfig px = ((PrefixTuningConfig) AdapterConfig.parse("{\"peft_type\": \"PREFIX_TUNING\", \"num_virtual_tokens\": 20}", "a.json"))
                .withModelConfig(gemma);
        assertEquals(List.of(256, 1, 18), List.of(px.tokenDim(), px.numAttentionHeads(), px.numLayers()));
        // values already in the adapter config are kept
        PromptTuningConfig kept = ((PromptTuningConfig) AdapterConfig.parse(
                "{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 20, \"token_dim\": 64}", "a.json")).withModelConfig(gemma);
        assertEquals(64, kept.tokenDim());
        UserException e = assertThrows(UserException.class, () -> ((PromptTuningConfig) AdapterConfig.parse(
                "{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 20}", "a.json")).withModelConfig(new ObjectMapper().createObjectNode()));
        assertTrue(e.getMessage().startsWith("a.json: field \"num_layers\" is not set"), e.getMessage());
    }
}
