package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.Map;

/**
 * PEFT {@code PrefixTuningConfig} (peft_type PREFIX_TUNING): learned per-layer key/value prefixes. Saved
 * {@code prompt_embeddings} is {@code [num_virtual_tokens, num_layers * 2 * token_dim]} (for GQA models token_dim is
 * head_dim × num_key_value_heads and num_attention_heads is num_key_value_heads).
 */
public final class PrefixTuningConfig extends AdapterConfig {

    static Map<String, JsonNode> defaults() {
        Map<String, JsonNode> m = promptLearningDefaults(PeftType.PREFIX_TUNING);
        m.put("encoder_hidden_size", F.nullNode());
        m.put("init_weights", F.nullNode());
        m.put("prefix_projection", F.booleanNode(false));
        return m;
    }

    PrefixTuningConfig(ObjectNode json, String source) {
        super(json, source);
        validatePromptLearning();
        optPositiveInt("encoder_hidden_size");
        optString("init_weights");
        requireBool("prefix_projection");
    }

    /** This config with the fields PEFT fills from the base model's config.json (see {@code promptLearningFilled}). */
    public PrefixTuningConfig withModelConfig(JsonNode modelConfig) { return new PrefixTuningConfig(promptLearningFilled(modelConfig, true), source); }

    @Override public PeftType peftType() { return PeftType.PREFIX_TUNING; }

    public int numVirtualTokens() { return json.get("num_virtual_tokens").intValue(); }
    public Integer tokenDim() { return integer("token_dim"); }
    public Integer numLayers() { return integer("num_layers"); }
    public Integer numAttentionHeads() { return integer("num_attention_heads"); }
    public boolean prefixProjection() { return json.get("prefix_projection").booleanValue(); }
    public Integer encoderHiddenSize() { return integer("encoder_hidden_size"); }
    /** null (random) or "zero". */
    public String initWeights() { return str("init_weights"); }
}
