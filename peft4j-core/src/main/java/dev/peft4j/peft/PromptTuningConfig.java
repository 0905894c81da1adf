package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.UserException;

import java.util.List;
import java.util.Map;

/**
 * PEFT {@code PromptTuningConfig} (peft_type PROMPT_TUNING): soft prompt of {@code num_virtual_tokens} vectors of
 * size {@code token_dim}, initialised RANDOM (N(0,1)), from TEXT ({@code prompt_tuning_init_text} tokenized with special
 * tokens, repeated and cut) or SAMPLE_VOCAB (random vocabulary rows). Adapter tensor: {@code prompt_embeddings}.
 */
public final class PromptTuningConfig extends AdapterConfig {
    public static final List<String> INITS = List.of("TEXT", "SAMPLE_VOCAB", "RANDOM");

    static Map<String, JsonNode> defaults() {
        Map<String, JsonNode> m = promptLearningDefaults(PeftType.PROMPT_TUNING);
        m.put("prompt_tuning_init", F.textNode("RANDOM"));
        m.put("prompt_tuning_init_text", F.nullNode());
        m.put("tokenizer_kwargs", F.nullNode());
        m.put("tokenizer_name_or_path", F.nullNode());
        return m;
    }

    PromptTuningConfig(ObjectNode json, String source) {
        super(json, source);
        validatePromptLearning();
        oneOf("prompt_tuning_init", INITS);
        optString("prompt_tuning_init_text");
        optString("tokenizer_name_or_path");
        JsonNode kw = json.get("tokenizer_kwargs");
        if (!kw.isNull() && !kw.isObject()) throw bad("tokenizer_kwargs", "an object or null");
        if ("TEXT".equals(init())) {
            if (str("tokenizer_name_or_path") == null) {
                throw new UserException(where() + ": field \"tokenizer_name_or_path\" is required when prompt_tuning_init is TEXT");
            }
            if (str("prompt_tuning_init_text") == null) {
                throw new UserException(where() + ": field \"prompt_tuning_init_text\" is required when prompt_tuning_init is TEXT");
            }
        } else if (!kw.isNull()) {
            throw new UserException(where() + ": field \"tokenizer_kwargs\" is only allowed when prompt_tuning_init is TEXT");
        }
    }

    /**
     * A new config for a CAUSAL_LM model: {@code values} are PEFT keys, e.g.
     * {@code Map.of("num_virtual_tokens", 20, "token_dim", 640, "num_layers", 18, "num_attention_heads", 4)}.
     * {@code num_transformer_submodules} defaults to 1 (decoder-only).
     */
    public static PromptTuningConfig create(Map<String, ?> values) {
        ObjectNode base = fromDefaults(defaults());
        base.put("task_type", "CAUSAL_LM");
        base.put("num_transformer_submodules", 1);
        base.put("num_virtual_tokens", 1);
        PromptTuningConfig tmp = new PromptTuningConfig(base, null);
        return new PromptTuningConfig(tmp.withValues(values, defaults()), null);
    }

    /** A copy with some PEFT keys changed. */
    public PromptTuningConfig with(Map<String, ?> values) { return new PromptTuningConfig(withValues(values, defaults()), source); }

    /** This config with the fields PEFT fills from the base model's config.json (see {@code promptLearningFilled}). */
    public PromptTuningConfig withModelConfig(JsonNode modelConfig) { return new PromptTuningConfig(promptLearningFilled(modelConfig, false), source); }

    @Override public PeftType peftType() { return PeftType.PROMPT_TUNING; }

    public int numVirtualTokens() { return json.get("num_virtual_tokens").intValue(); }
    /** null until filled from the model ({@code hidden_size}). */
    public Integer tokenDim() { return integer("token_dim"); }
    /** 1 for decoder-only models (null in a config means "fill from the model", i.e. 1 for CAUSAL_LM). */
    public int numTransformerSubmodules() { Integer n = integer("num_transformer_submodules"); return n == null ? 1 : n; }
    public Integer numAttentionHeads() { return integer("num_attention_heads"); }
    public Integer numLayers() { return integer("num_layers"); }
    /** Rows of {@code prompt_embeddings}: num_virtual_tokens × num_transformer_submodules. */
    public int totalVirtualTokens() { return numVirtualTokens() * numTransformerSubmodules(); }
    /** TEXT, SAMPLE_VOCAB or RANDOM. */
    public String init() { return str("prompt_tuning_init"); }
    public String initText() { return str("prompt_tuning_init_text"); }
    public String tokenizerNameOrPath() { return str("tokenizer_name_or_path"); }
}
