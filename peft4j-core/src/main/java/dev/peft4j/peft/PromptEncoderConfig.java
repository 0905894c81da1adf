package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.util.List;
import java.util.Map;

/**
 * PEFT {@code PromptEncoderConfig} (peft_type P_TUNING): virtual tokens produced by an MLP or LSTM prompt encoder.
 * The saved {@code prompt_embeddings} are the encoder outputs, so inference uses them like prompt tuning.
 */
public final class PromptEncoderConfig extends AdapterConfig {

    static Map<String, JsonNode> defaults() {
        Map<String, JsonNode> m = promptLearningDefaults(PeftType.P_TUNING);
        m.put("encoder_dropout", F.numberNode(0.0));
        m.put("encoder_hidden_size", F.nullNode());
        m.put("encoder_num_layers", F.numberNode(2));
        m.put("encoder_reparameterization_type", F.textNode("MLP"));
        return m;
    }

    PromptEncoderConfig(ObjectNode json, String source) {
        super(json, source);
        validatePromptLearning();
        oneOf("encoder_reparameterization_type", List.of("MLP", "LSTM"));
        optPositiveInt("encoder_hidden_size");
        positiveInt("encoder_num_layers");
        double p = number("encoder_dropout");
        if (p < 0 || p > 1) throw bad("encoder_dropout", "a probability in [0, 1]");
    }

    /**
     * A new config for a CAUSAL_LM model from PEFT keys, e.g. {@code Map.of("num_virtual_tokens", 20)}; complete it with
     * {@link #withModelConfig}.
     */
    public static PromptEncoderConfig create(Map<String, ?> values) {
        ObjectNode base = fromDefaults(defaults());
        base.put("task_type", "CAUSAL_LM");
        base.put("num_transformer_submodules", 1);
        base.put("num_virtual_tokens", 1);
        return new PromptEncoderConfig(new PromptEncoderConfig(base, null).withValues(values, defaults()), null);
    }

    /** This config with the fields PEFT fills from the base model's config.json (see {@code promptLearningFilled}). */
    public PromptEncoderConfig withModelConfig(JsonNode modelConfig) { return new PromptEncoderConfig(promptLearningFilled(modelConfig, false), source); }

    @Override public PeftType peftType() { return PeftType.P_TUNING; }

    public int numVirtualTokens() { return json.get("num_virtual_tokens").intValue(); }
    public Integer tokenDim() { return integer("token_dim"); }
    public Integer numLayers() { return integer("num_layers"); }
    /** 1 for decoder-only models (null in a config means 1 for CAUSAL_LM). */
    public int numTransformerSubmodules() { Integer n = integer("num_transformer_submodules"); return n == null ? 1 : n; }
    /** Rows of {@code prompt_embeddings}: num_virtual_tokens × num_transformer_submodules. */
    public int totalVirtualTokens() { return numVirtualTokens() * numTransformerSubmodules(); }
    public String reparameterizationType() { return str("encoder_reparameterization_type"); }
    /** null means token_dim. */
    public Integer encoderHiddenSize() { return integer("encoder_hidden_size"); }
    public int encoderNumLayers() { return json.get("encoder_num_layers").intValue(); }
    public double encoderDropout() { return json.get("encoder_dropout").doubleValue(); }
}
