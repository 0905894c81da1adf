package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.UserException;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * PEFT {@code LoraConfig} (peft_type LORA) with all of its saved fields. h = W₀x + s·B(A(dropout(x))), s = alpha/r
 * (or alpha/√r with {@code use_rslora}); A is {@code [r, in]}, B is {@code [out, r]}. Which linear layers get an
 * adapter, and with which r/alpha, is decided by {@link #resolve(List)} exactly as PEFT does.
 */
public final class LoraConfig extends AdapterConfig {

    /** PEFT's default targets for model_type gemma3_text / gemma3 ({@code TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING}). */
    public static final List<String> GEMMA3_DEFAULT_TARGETS = List.of("q_proj", "v_proj");
    public static final String ALL_LINEAR = "all-linear";

    static Map<String, JsonNode> defaults() {
        Map<String, JsonNode> m = baseDefaults(PeftType.LORA);
        m.put("alora_invocation_tokens", F.nullNode());
        m.put("alpha_pattern", F.objectNode());
        m.put("arrow_config", F.nullNode());
        m.put("bias", F.textNode("none"));
        m.put("corda_config", F.nullNode());
        m.put("ensure_weight_tying", F.booleanNode(false));
        m.put("eva_config", F.nullNode());
        m.put("exclude_modules", F.nullNode());
        m.put("fan_in_fan_out", F.booleanNode(false));
        m.put("init_lora_weights", F.booleanNode(true));
        m.put("kasa_config", F.nullNode());
        m.put("layer_replication", F.nullNode());
        m.put("layers_pattern", F.nullNode());
        m.put("layers_to_transform", F.nullNode());
        m.put("loftq_config", F.objectNode());
        m.put("lora_alpha", F.numberNode(8));
        m.put("lora_bias", F.booleanNode(false));
        m.put("lora_dropout", F.numberNode(0.0));
        m.put("lora_ga_config", F.nullNode());
        m.put("megatron_config", F.nullNode());
        m.put("megatron_core", F.textNode("megatron.core"));
        m.put("modules_to_save", F.nullNode());
        m.put("monteclora_config", F.nullNode());
        m.put("qalora_group_size", F.numberNode(16));
        m.put("r", F.numberNode(8));
        m.put("rank_pattern", F.objectNode());
        m.put("target_modules", F.nullNode());
        m.put("target_parameters", F.nullNode());
        m.put("trainable_token_indices", F.nullNode());
        m.put("use_bdlora", F.nullNode());
        m.put("use_dora", F.booleanNode(false));
        m.put("use_qalora", F.booleanNode(false));
        m.put("use_rslora", F.booleanNode(false));
        m.put("velora_config", F.nullNode());
        return m;
    }

    LoraConfig(ObjectNode json, String source) {
        super(json, source);
        validateBase();
        positiveInt("r");
        number("lora_alpha");
        double p = number("lora_dropout");
        if (p < 0 || p > 1) throw bad("lora_dropout", "a probability in [0, 1]");
        oneOf("bias", List.of("none", "all", "lora_only"));
        optStringOrList("target_modules");
        optStringOrList("exclude_modules");
        optStringList("modules_to_save");
        for (String k : List.of("fan_in_fan_out", "use_rslora", "use_dora", "lora_bias", "use_qalora", "ensure_weight_tying")) requireBool(k);
        JsonNode init = json.get("init_lora_weights");
        if (!init.isBoolean() && !init.isTextual()) throw bad("init_lora_weights", "true, false or a method name such as \"gaussian\"");
        JsonNode lt = json.get("layers_to_transform");
        if (!lt.isNull() && !lt.isIntegralNumber()) {
            if (!lt.isArray()) throw bad("layers_to_transform", "a layer index, a list of layer indices or null");
            for (JsonNode e : lt) if (!e.isIntegralNumber()) throw bad("layers_to_transform", "a layer index, a list of layer indices or null");
        }
        optStringOrList("layers_pattern");
        JsonNode rp = json.get("rank_pattern");
        if (!rp.isObject()) throw bad("rank_pattern", "an object of regex -> rank");
        rp.fields().forEachRemaining(e -> {
            if (!e.getValue().isIntegralNumber() || e.getValue().intValue() <= 0) {
                throw new UserException(where() + ": field \"rank_pattern\": rank for \"" + e.getKey() + "\" must be a positive integer, got " + e.getValue());
            }
            compile("rank_pattern", e.getKey());
        });
        JsonNode ap = json.get("alpha_pattern");
        if (!ap.isObject()) throw bad("alpha_pattern", "an object of regex -> alpha");
        ap.fields().forEachRemaining(e -> {
            if (!e.getValue().isNumber()) {
                throw new UserException(where() + ": field \"alpha_pattern\": alpha for \"" + e.getKey() + "\" must be a number, got " + e.getValue());
            }
            compile("alpha_pattern", e.getKey());
        });
        // LoraConfig.__post_init__ checks
        JsonNode tm = json.get("target_modules");
        if (tm.isTextual()) {
            compile("target_modules", tm.textValue());
            if (!lt.isNull()) throw new UserException(where() + ": field \"layers_to_transform\" cannot be used when \"target_modules\" is a string (regex)");
            if (!json.get("layers_pattern").isNull()) throw new UserException(where() + ": field \"layers_pattern\" cannot be used when \"target_modules\" is a string (regex)");
        }
        if (json.get("exclude_modules").isTextual()) compile("exclude_modules", json.get("exclude_modules").textValue());
        JsonNode lp = json.get("layers_pattern");
        if (!lp.isNull() && !(lp.isArray() && lp.isEmpty()) && (lt.isNull() || (lt.isArray() && lt.isEmpty()))) {
            throw new UserException(where() + ": field \"layers_pattern\" requires \"layers_to_transform\" to be set too");
        }
    }

    private void compile(String field, String regex) {
        try {
            Pattern.compile(regex);
        } catch (PatternSyntaxException e) {
            throw new UserException(where() + ": field \"" + field + "\": invalid regular expression \"" + regex + "\": " + e.getDescription());
        }
    }

    /**
     * A new config for a CAUSAL_LM model from PEFT keys, e.g.
     * {@code Map.of("r", 8, "lora_alpha", 16, "target_modules", List.of("q_proj", "v_proj"))}; other keys keep PEFT's defaults.
     */
    public static LoraConfig create(Map<String, ?> values) {
        ObjectNode base = fromDefaults(defaults());
        base.put("task_type", "CAUSAL_LM");
        return new LoraConfig(new LoraConfig(base, null).withValues(values, defaults()), null);
    }

    /** A copy with some PEFT keys changed. */
    public LoraConfig with(Map<String, ?> values) { return new LoraConfig(withValues(values, defaults()), source); }

    @Override public PeftType peftType() { return PeftType.LORA; }

    public int r() { return json.get("r").intValue(); }
    public double loraAlpha() { return json.get("lora_alpha").doubleValue(); }
    public double loraDropout() { return json.get("lora_dropout").doubleValue(); }
    public boolean useRslora() { return json.get("use_rslora").booleanValue(); }
    public boolean useDora() { return json.get("use_dora").booleanValue(); }
    public String bias() { return str("bias"); }
    /** null, a regex string (incl. "all-linear") or a list node. */
    public JsonNode targetModules() { return get("target_modules"); }
    public JsonNode excludeModules() { return get("exclude_modules"); }
    /** {@code Boolean.TRUE} (kaiming-uniform A, zero B), {@code Boolean.FALSE}, or a method name such as "gaussian". */
    public Object initLoraWeights() {
        JsonNode n = json.get("init_lora_weights");
        return n.isBoolean() ? (Object) n.booleanValue() : n.textValue();
    }
    /** rank_pattern in file order (first matching key wins). */
    public Map<String, Integer> rankPattern() {
        Map<String, Integer> m = new LinkedHashMap<>();
        json.get("rank_pattern").fields().forEachRemaining(e -> m.put(e.getKey(), e.getValue().intValue()));
        return m;
    }
    /** alpha_pattern in file order (first matching key wins). */
    public Map<String, Double> alphaPattern() {
        Map<String, Double> m = new LinkedHashMap<>();
        json.get("alpha_pattern").fields().forEachRemaining(e -> m.put(e.getKey(), e.getValue().doubleValue()));
        return m;
    }

    /** The scaling factor for rank r and alpha: alpha/√r with use_rslora, else alpha/r ({@code LoraLayer.update_layer}). */
    public double scaling(int r, double alpha) { return useRslora() ? alpha / Math.sqrt(r) : alpha / r; }

    /**
     * The LoRA-adapted layers among a model's linear layers (names relative to the CausalLM, e.g.
     * {@code model.layers.3.self_attn.q_proj}; include {@code lm_head} if the model has one: it is never targeted by
     * "all-linear"), each with its r, alpha and scaling. Throws if nothing matches (as PEFT does).
     */
    public List<LoraTarget> resolve(List<String> linearModuleNames) { return LoraTargets.resolve(this, linearModuleNames); }

    /**
     * This config with {@code target_modules} as PEFT saves it after injecting the adapter into a model with these
     * linear layers: null → the Gemma 3 default ["q_proj","v_proj"], "all-linear" → the matched names, and any list of
     * 20 or more names condensed to the minimal suffix set (e.g. the 7 projection names).
     */
    public LoraConfig withResolvedTargets(List<String> linearModuleNames) {
        List<String> t = LoraTargets.savedTargetModules(this, linearModuleNames);
        if (t == null) return this;
        ObjectNode out = json.deepCopy();
        ArrayNode arr = out.putArray("target_modules");
        t.forEach(arr::add);
        return new LoraConfig(out, source);
    }

    /** Features set in this config that peft4j does not implement (empty if all is plain LoRA/rsLoRA). */
    public List<String> unsupportedFeatures() {
        List<String> u = new ArrayList<>();
        if (useDora()) u.add("use_dora");
        if (!"none".equals(bias())) u.add("bias=" + bias());
        if (json.get("lora_bias").booleanValue()) u.add("lora_bias");
        if (json.get("use_qalora").booleanValue()) u.add("use_qalora");
        for (String k : List.of("layer_replication", "target_parameters", "alora_invocation_tokens", "trainable_token_indices",
                "modules_to_save", "megatron_config", "use_bdlora", "arrow_config", "kasa_config", "monteclora_config", "velora_config")) {
            JsonNode v = json.get(k);
            if (!v.isNull() && !(v.isBoolean() && !v.booleanValue())) u.add(k);
        }
        return u;
    }

    /** Throws a UserException naming the file and the fields when {@link #unsupportedFeatures()} is not empty. */
    public void requireSupported() {
        List<String> u = unsupportedFeatures();
        if (!u.isEmpty()) throw new UserException(where() + ": LoRA options not supported by peft4j: " + String.join(", ", u));
    }
}
