package dev.peft4j.peft;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A PEFT {@code adapter_config.json}. Each subclass holds the complete key set of its PEFT dataclass (as peft 0.21.0
 * writes it), with PEFT's defaults for missing keys; unknown keys (from newer PEFT versions) are dropped with a
 * warning, as PEFT itself does. Values are validated on read; errors name the file and the field.
 * The JSON object is kept as is, so read → write reproduces PEFT's file byte for byte.
 */
public abstract sealed class AdapterConfig permits PromptTuningConfig, PromptEncoderConfig, PrefixTuningConfig, LoraConfig, IA3Config {

    public static final String CONFIG_NAME = "adapter_config.json";
    public static final String WEIGHTS_NAME = "adapter_model.safetensors";
    /** The PEFT version whose key sets peft4j writes; used for {@code peft_version} of new configs. */
    public static final String PEFT_VERSION = "0.21.0";

    static final ObjectMapper MAPPER = new ObjectMapper();
    static final JsonNodeFactory F = JsonNodeFactory.instance;

    final ObjectNode json;
    final String source;

    AdapterConfig(ObjectNode json, String source) {
        this.json = json;
        this.source = source;
    }

    /** Fields of PEFT's {@code PeftConfigMixin} + {@code PeftConfig}. */
    static Map<String, JsonNode> baseDefaults(PeftType type) {
        Map<String, JsonNode> m = new LinkedHashMap<>();
        m.put("auto_mapping", F.nullNode());
        m.put("base_model_name_or_path", F.nullNode());
        m.put("inference_mode", F.booleanNode(false));
        m.put("peft_type", F.textNode(type.name()));
        m.put("peft_version", F.nullNode());
        m.put("revision", F.nullNode());
        m.put("task_type", F.nullNode());
        return m;
    }

    /** Fields of PEFT's {@code PromptLearningConfig}. */
    static Map<String, JsonNode> promptLearningDefaults(PeftType type) {
        Map<String, JsonNode> m = baseDefaults(type);
        for (String k : List.of("modules_to_save", "num_attention_heads", "num_layers", "num_transformer_submodules",
                "num_virtual_tokens", "token_dim")) {
            m.put(k, F.nullNode());
        }
        return m;
    }

    // ---------------------------------------------------------------- reading

    /** Reads {@code dir/adapter_config.json} and returns the config of its {@code peft_type}. */
    public static AdapterConfig read(Path dir) {
        Path file = Files.isDirectory(dir) ? dir.resolve(CONFIG_NAME) : dir;
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new UserException("no " + CONFIG_NAME + " in " + (Files.isDirectory(dir) ? dir : dir.getParent())
                    + " (expected a PEFT adapter directory)");
        } catch (IOException e) {
            throw new UserException("cannot read " + file + ": " + e.getMessage());
        }
        return parse(text, file.toString());
    }

    /** Parses adapter_config.json text; {@code source} names the file in error messages. */
    public static AdapterConfig parse(String text, String source) {
        JsonNode node;
        try {
            node = MAPPER.readTree(text);
        } catch (JsonProcessingException e) {
            var loc = e.getLocation();
            throw new UserException(source + ": invalid JSON" + (loc == null ? "" : " at line " + loc.getLineNr()
                    + ", column " + loc.getColumnNr()) + ": " + e.getOriginalMessage());
        }
        if (node == null || !node.isObject()) throw new UserException(source + ": expected a JSON object");
        return fromJson((ObjectNode) node, source);
    }

    /** Builds the config of the object's {@code peft_type} (validated; missing keys get PEFT's defaults). */
    public static AdapterConfig fromJson(ObjectNode node, String source) {
        JsonNode t = node.get("peft_type");
        if (t == null || t.isNull()) throw new UserException(source + ": missing field \"peft_type\" (e.g. \"LORA\" or \"PROMPT_TUNING\")");
        if (!t.isTextual()) throw new UserException(source + ": field \"peft_type\": expected a string, got " + t);
        PeftType type;
        try {
            type = PeftType.valueOf(t.textValue());
        } catch (IllegalArgumentException e) {
            throw new UserException(source + ": field \"peft_type\": unsupported value \"" + t.textValue()
                    + "\" (peft4j supports " + Arrays.toString(PeftType.values()) + ")");
        }
        return switch (type) {
            case PROMPT_TUNING -> new PromptTuningConfig(merge(node, PromptTuningConfig.defaults(), source), source);
            case P_TUNING -> new PromptEncoderConfig(merge(node, PromptEncoderConfig.defaults(), source), source);
            case PREFIX_TUNING -> new PrefixTuningConfig(merge(node, PrefixTuningConfig.defaults(), source), source);
            case LORA -> new LoraConfig(merge(node, LoraConfig.defaults(), source), source);
            case IA3 -> new IA3Config(merge(node, IA3Config.defaults(), source), source);
        };
    }

    /** Defaults overridden by the known keys of {@code node}; unknown keys are reported and dropped. */
    static ObjectNode merge(ObjectNode node, Map<String, JsonNode> defaults, String source) {
        ObjectNode out = F.objectNode();
        defaults.forEach((k, v) -> out.set(k, v.deepCopy()));
        List<String> unknown = new ArrayList<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = node.fields(); it.hasNext(); ) {
            var e = it.next();
            if (defaults.containsKey(e.getKey())) out.set(e.getKey(), e.getValue().deepCopy());
            else unknown.add(e.getKey());
        }
        if (!unknown.isEmpty() && source != null) {
            System.err.println("warning: " + source + ": ignoring unknown keys " + unknown + " (written by a newer PEFT version?)");
        }
        return out;
    }

    // ---------------------------------------------------------------- writing

    /** The JSON object (a copy) with every key of the PEFT dataclass. */
    public ObjectNode toJson() { return json.deepCopy(); }

    /** The adapter_config.json text exactly as Python PEFT would write it. */
    public String toJsonString() { return PeftJson.dumps(json); }

    /**
     * Writes {@code dir/adapter_config.json} (atomically) as {@code PeftModel.save_pretrained} does: {@code inference_mode}
     * true and {@code peft_version} filled in when missing.
     */
    public void write(Path dir) {
        ObjectNode out = json.deepCopy();
        out.put("inference_mode", true);
        if (out.get("peft_version").isNull()) out.put("peft_version", PEFT_VERSION);
        try {
            Files.createDirectories(dir);
            Path tmp = dir.resolve(CONFIG_NAME + ".tmp");
            Files.writeString(tmp, PeftJson.dumps(out), StandardCharsets.UTF_8);
            Files.move(tmp, dir.resolve(CONFIG_NAME), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new UserException("cannot write " + dir.resolve(CONFIG_NAME) + ": " + e.getMessage());
        }
    }

    // ---------------------------------------------------------------- common fields

    public abstract PeftType peftType();

    /** Where the config came from (a file path), or null. Not part of equality. */
    public String source() { return source; }

    public String taskType() { return str("task_type"); }
    public String baseModelNameOrPath() { return str("base_model_name_or_path"); }
    public String revision() { return str("revision"); }
    public boolean inferenceMode() { return json.get("inference_mode").booleanValue(); }
    public String peftVersion() { return str("peft_version"); }

    /** The raw value of a key (null for JSON null). */
    public JsonNode get(String key) {
        JsonNode v = json.get(key);
        return v == null || v.isNull() ? null : v;
    }

    String str(String key) {
        JsonNode v = json.get(key);
        return v == null || v.isNull() ? null : v.textValue();
    }

    Integer integer(String key) {
        JsonNode v = json.get(key);
        return v == null || v.isNull() ? null : v.intValue();
    }

    @Override public boolean equals(Object o) { return o != null && o.getClass() == getClass() && ((AdapterConfig) o).json.equals(json); }
    @Override public int hashCode() { return json.hashCode(); }
    @Override public String toString() { return getClass().getSimpleName() + json; }

    // ---------------------------------------------------------------- validation helpers

    String where() { return source == null ? "adapter config" : source; }

    UserException bad(String key, String expected) {
        return new UserException(where() + ": field \"" + key + "\": expected " + expected + ", got " + json.get(key));
    }

    void validateBase() {
        for (String k : List.of("task_type", "base_model_name_or_path", "revision", "peft_version")) optString(k);
        requireBool("inference_mode");
        JsonNode am = json.get("auto_mapping");
        if (!am.isNull() && !am.isObject()) throw bad("auto_mapping", "null or an object");
    }

    void validatePromptLearning() {
        validateBase();
        JsonNode n = json.get("num_virtual_tokens");
        if (n.isNull()) throw new UserException(where() + ": missing field \"num_virtual_tokens\" (the number of virtual tokens)");
        positiveInt("num_virtual_tokens");
        for (String k : List.of("token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers")) optPositiveInt(k);
        optStringList("modules_to_save");
    }

    void optString(String k) {
        JsonNode v = json.get(k);
        if (!v.isNull() && !v.isTextual()) throw bad(k, "a string or null");
    }

    void requireBool(String k) {
        if (!json.get(k).isBoolean()) throw bad(k, "true or false");
    }

    int positiveInt(String k) {
        JsonNode v = json.get(k);
        if (!v.canConvertToInt() || !v.isIntegralNumber() || v.intValue() <= 0) throw bad(k, "a positive integer");
        return v.intValue();
    }

    void optPositiveInt(String k) {
        if (!json.get(k).isNull()) positiveInt(k);
    }

    double number(String k) {
        JsonNode v = json.get(k);
        if (!v.isNumber()) throw bad(k, "a number");
        return v.doubleValue();
    }

    void optStringList(String k) {
        JsonNode v = json.get(k);
        if (v.isNull()) return;
        if (!v.isArray()) throw bad(k, "a list of strings or null");
        for (JsonNode e : v) if (!e.isTextual()) throw bad(k, "a list of strings or null");
    }

    /** null, a string (regex) or a list of strings. */
    void optStringOrList(String k) {
        JsonNode v = json.get(k);
        if (v.isNull() || v.isTextual()) return;
        if (!v.isArray()) throw bad(k, "a list of module names, a regex string or null");
        for (JsonNode e : v) if (!e.isTextual()) throw bad(k, "a list of module names, a regex string or null");
    }

    void oneOf(String k, List<String> allowed) {
        JsonNode v = json.get(k);
        if (!v.isTextual() || !allowed.contains(v.textValue())) throw bad(k, "one of " + allowed);
    }

    /** A copy of the JSON with the given PEFT keys set (unknown keys are an error). */
    ObjectNode withValues(Map<String, ?> values, Map<String, JsonNode> defaults) {
        ObjectNode out = json.deepCopy();
        for (var e : values.entrySet()) {
            if (!defaults.containsKey(e.getKey())) {
                throw new UserException("unknown " + peftType() + " config field \"" + e.getKey() + "\" (known: " + defaults.keySet() + ")");
            }
            out.set(e.getKey(), MAPPER.valueToTree(e.getValue()));
        }
        return out;
    }

    /**
     * PEFT {@code _prepare_prompt_learning_config} + {@code _setup_prompt_encoder} for a CAUSAL_LM: fills the null
     * fields num_layers ← num_hidden_layers, token_dim ← hidden_size, num_attention_heads ← num_attention_heads,
     * num_transformer_submodules ← 1; for prefix tuning with GQA (num_key_value_heads and head_dim present)
     * token_dim ← head_dim × num_key_value_heads and num_attention_heads ← num_key_value_heads (always, as PEFT does);
     * encoder_hidden_size (if the method has it) ← token_dim. {@code modelConfig} is the model's config.json
     * (a nested {@code text_config} is used when present).
     */
    ObjectNode promptLearningFilled(JsonNode modelConfig, boolean prefix) {
        JsonNode mc = modelConfig.has("text_config") ? modelConfig.get("text_config") : modelConfig;
        ObjectNode out = json.deepCopy();
        fill(out, "num_layers", mc, "num_hidden_layers", "num_layers", "n_layer");
        fill(out, "token_dim", mc, "hidden_size", "n_embd", "d_model");
        fill(out, "num_attention_heads", mc, "num_attention_heads", "n_head", "num_heads", "encoder_attention_heads");
        if (prefix && mc.hasNonNull("num_key_value_heads") && mc.hasNonNull("head_dim")) {
            out.put("token_dim", mc.get("head_dim").intValue() * mc.get("num_key_value_heads").intValue());
            out.put("num_attention_heads", mc.get("num_key_value_heads").intValue());
        }
        if (out.has("encoder_hidden_size") && out.get("encoder_hidden_size").isNull()) out.set("encoder_hidden_size", out.get("token_dim"));
        if (out.get("num_transformer_submodules").isNull()) out.put("num_transformer_submodules", 1);
        return out;
    }

    private void fill(ObjectNode out, String key, JsonNode mc, String... from) {
        if (!out.get(key).isNull()) return;
        for (String f : from) {
            if (mc.hasNonNull(f)) {
                out.set(key, mc.get(f));
                return;
            }
        }
        throw new UserException(where() + ": field \"" + key + "\" is not set and the model config has none of " + Arrays.toString(from));
    }

    static ObjectNode fromDefaults(Map<String, JsonNode> defaults) {
        ObjectNode out = F.objectNode();
        defaults.forEach((k, v) -> out.set(k, v.deepCopy()));
        return out;
    }
}
