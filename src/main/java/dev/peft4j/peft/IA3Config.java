package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.UserException;

import java.util.HashSet;
import java.util.Map;
import java.util.Set;

/**
 * PEFT {@code IA3Config} (peft_type IA3): learned scaling vectors {@code ia3_l}; output scaling for ordinary targets,
 * input scaling for {@code feedforward_modules}. Target matching is the same as LoRA's (see {@link LoraTargets}).
 */
public final class IA3Config extends AdapterConfig {

    static Map<String, JsonNode> defaults() {
        Map<String, JsonNode> m = baseDefaults(PeftType.IA3);
        m.put("exclude_modules", F.nullNode());
        m.put("fan_in_fan_out", F.booleanNode(false));
        m.put("feedforward_modules", F.nullNode());
        m.put("init_ia3_weights", F.booleanNode(true));
        m.put("modules_to_save", F.nullNode());
        m.put("target_modules", F.nullNode());
        return m;
    }

    IA3Config(ObjectNode json, String source) {
        super(json, source);
        validateBase();
        optStringOrList("target_modules");
        optStringOrList("exclude_modules");
        optStringOrList("feedforward_modules");
        requireBool("fan_in_fan_out");
        requireBool("init_ia3_weights");
        optStringList("modules_to_save");
        JsonNode t = json.get("target_modules"), ff = json.get("feedforward_modules");
        if (t.isArray() && ff.isArray()) {
            Set<String> targets = new HashSet<>();
            t.forEach(e -> targets.add(e.textValue()));
            for (JsonNode e : ff) {
                if (!targets.contains(e.textValue())) {
                    throw new UserException(where() + ": field \"feedforward_modules\" must be a subset of \"target_modules\"; "
                            + e + " is not a target");
                }
            }
        }
    }

    @Override public PeftType peftType() { return PeftType.IA3; }

    public JsonNode targetModules() { return get("target_modules"); }
    public JsonNode feedforwardModules() { return get("feedforward_modules"); }
    public boolean initIa3Weights() { return json.get("init_ia3_weights").booleanValue(); }
}
