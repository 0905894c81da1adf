package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.UserException;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

/**
 * PEFT {@code IA3Config} (peft_type IA3): learned scaling vectors {@code ia3_l}; output scaling for ordinary targets,
 * input scaling for {@code feedforward_modules}. Target matching is the same as LoRA's (see {@link LoraTargets}), without
 * condensing long lists; a module is feed-forward when {@code feedforward_modules} (a string) fully matches its name as a
 * regex or (a list) when its name ends with one of the entries ({@code IA3Model._create_and_replace}).
 */
public final class IA3Config extends AdapterConfig {
    /** PEFT's defaults for model_type gemma3_text ({@code TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING}). */
    public static final List<String> GEMMA3_DEFAULT_TARGETS = List.of("q_proj", "v_proj", "down_proj");
    /** {@code TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING} for gemma3_text. */
    public static final List<String> GEMMA3_DEFAULT_FEEDFORWARD = List.of("down_proj");

    /** One adapted module: its name and whether its vector scales the input (feed-forward) rather than the output. */
    public record Target(String moduleName, boolean feedforward) {}

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

    /**
     * A new config for a CAUSAL_LM model from PEFT keys, e.g.
     * {@code Map.of("target_modules", List.of("q_proj", "v_proj", "down_proj"), "feedforward_modules", List.of("down_proj"))}.
     */
    public static IA3Config create(Map<String, ?> values) {
        ObjectNode base = fromDefaults(defaults());
        base.put("task_type", "CAUSAL_LM");
        return new IA3Config(new IA3Config(base, null).withValues(values, defaults()), null);
    }

    @Override public PeftType peftType() { return PeftType.IA3; }

    public JsonNode targetModules() { return get("target_modules"); }
    public JsonNode feedforwardModules() { return get("feedforward_modules"); }
    public boolean initIa3Weights() { return json.get("init_ia3_weights").booleanValue(); }

    /** Throws a UserException naming the file and field for options peft4j does not implement ({@code modules_to_save}). */
    public void requireSupported() {
        if (get("modules_to_save") != null) throw new UserException(where() + ": (IA)³ option not supported by peft4j: modules_to_save");
    }

    /**
     * The adapted modules among a model's linear layers (names as {@code model.layers.0.mlp.down_proj}), in the given
     * order; null targets / feed-forward modules mean PEFT's gemma3_text defaults. Throws if nothing matches.
     */
    public List<Target> resolve(List<String> linearModuleNames) {
        Object targets = LoraTargets.effectiveTargets(targetModules(), linearModuleNames, false, GEMMA3_DEFAULT_TARGETS);
        JsonNode ff = feedforwardModules();
        List<Target> out = new ArrayList<>();
        for (String name : linearModuleNames) {
            if (name.isEmpty() || !LoraTargets.isTarget(targets, get("exclude_modules"), get("modules_to_save"), null, null, name)) continue;
            boolean isFf;
            if (ff != null && ff.isTextual()) {
                isFf = Pattern.matches(ff.textValue(), name);
            } else {
                isFf = false;
                for (String f : ff == null ? GEMMA3_DEFAULT_FEEDFORWARD : names(ff)) if (name.endsWith(f)) { isFf = true; break; }
            }
            out.add(new Target(name, isFf));
        }
        if (out.isEmpty()) {
            throw new UserException(where() + ": field \"target_modules\" " + (targetModules() == null ? "(default " + GEMMA3_DEFAULT_TARGETS + ")"
                    : targetModules().toString()) + " matched none of the model's " + linearModuleNames.size() + " linear layers");
        }
        return out;
    }

    /**
     * This config as PEFT saves it after injection: null {@code target_modules} / {@code feedforward_modules} become the
     * gemma3_text defaults and "all-linear" the list of matched names (IA3 lists are never condensed). Where PEFT would
     * then save a {@code feedforward_modules} list that is no subset of the targets (a file PEFT itself refuses to load),
     * it is written as the targeted names it selects instead (same modules, loadable).
     */
    public IA3Config withResolvedTargets(List<String> linearModuleNames) {
        ObjectNode out = json.deepCopy();
        JsonNode tm = targetModules();
        List<String> targets = tm != null && tm.isArray() ? names(tm) : null;
        if (tm == null || (tm.isTextual() && tm.textValue().equalsIgnoreCase(LoraConfig.ALL_LINEAR))) {
            @SuppressWarnings("unchecked")
            Set<String> set = (Set<String>) LoraTargets.effectiveTargets(tm, linearModuleNames, false, GEMMA3_DEFAULT_TARGETS);
            targets = new ArrayList<>(set);
            ArrayNode arr = out.putArray("target_modules");
            targets.forEach(arr::add);
        }
        JsonNode ffNode = feedforwardModules();
        if (ffNode == null || ffNode.isArray()) {
            List<String> ff = ffNode == null ? GEMMA3_DEFAULT_FEEDFORWARD : names(ffNode);
            if (targets != null && !targets.containsAll(ff)) {
                List<String> sel = new ArrayList<>();
                for (String t : targets) for (String f : ff) if (t.endsWith(f)) { sel.add(t); break; }
                ff = sel;
            }
            ArrayNode arr = out.putArray("feedforward_modules");
            ff.forEach(arr::add);
        }
        return new IA3Config(out, source);
    }

    private static List<String> names(JsonNode list) {
        List<String> n = new ArrayList<>();
        list.forEach(e -> n.add(e.textValue()));
        return n;
    }
}
