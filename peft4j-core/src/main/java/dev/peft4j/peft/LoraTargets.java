package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import dev.peft4j.util.UserException;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Which modules a LoRA (or IA3) config adapts, ported from PEFT ({@code tuners_utils.py}: {@code check_target_module_exists},
 * {@code _maybe_include_all_linear_layers}, {@code _find_minimal_target_modules}, {@code inject_adapter};
 * {@code utils/other.py}: {@code get_pattern_key}). Python {@code re} patterns are evaluated with {@link Pattern}
 * (same syntax for the usual module-name regexes).
 *
 * <ul>
 * <li>{@code target_modules} string: {@code re.fullmatch} of the whole dotted name; "all-linear" (any case): every
 *     linear layer except the output embedding {@code lm_head}.</li>
 * <li>list: exact name, or suffix on a '.' boundary; only in this suffix case {@code layers_to_transform} filters by the
 *     first numbered path segment ({@code re.match(r".*?\.[^.]*\.(\d+)\.")}, or {@code .*?\.{layers_pattern}\.(\d+)\.}).</li>
 * <li>a list of 20 or more names is first condensed to the minimal suffix set, as PEFT does before matching.</li>
 * <li>{@code exclude_modules} is checked first (same string/list semantics), then {@code modules_to_save}
 *     ({@code re.match(rf"(^|.*\.){m}($|\..*)", key)}).</li>
 * <li>{@code rank_pattern}/{@code alpha_pattern}: the first key (file order) with {@code re.match(rf"(.*\.)?({key})$", name)}.</li>
 * </ul>
 */
public final class LoraTargets {
    private LoraTargets() {}

    /** The output embedding of Gemma3ForCausalLM, never part of "all-linear". */
    public static final String OUTPUT_EMBEDDING = "lm_head";
    /** PEFT's {@code MIN_TARGET_MODULES_FOR_OPTIMIZATION}. */
    static final int MIN_TARGET_MODULES_FOR_OPTIMIZATION = 20;
    private static final Pattern LAYER_INDEX = Pattern.compile(".*?\\.[^.]*\\.(\\d+)\\.");

    /** target_modules as PEFT matches them: a regex String or an ordered Set of names/suffixes. */
    static Object effectiveTargets(JsonNode tm, List<String> names, boolean condense) {
        return effectiveTargets(tm, names, condense, LoraConfig.GEMMA3_DEFAULT_TARGETS);
    }

    /** As above with the method's default targets for a null {@code target_modules}. */
    static Object effectiveTargets(JsonNode tm, List<String> names, boolean condense, List<String> defaults) {
        Set<String> set;
        if (tm == null || tm.isNull()) {
            set = new LinkedHashSet<>(defaults);
        } else if (tm.isTextual()) {
            if (!tm.textValue().equalsIgnoreCase(LoraConfig.ALL_LINEAR)) return tm.textValue();
            set = new LinkedHashSet<>();
            for (String n : names) if (!n.isEmpty() && !n.equals(OUTPUT_EMBEDDING)) set.add(n);
        } else {
            set = new LinkedHashSet<>();
            tm.forEach(e -> set.add(e.textValue()));
        }
        if (condense && set.size() >= MIN_TARGET_MODULES_FOR_OPTIMIZATION) {
            List<String> others = new ArrayList<>();
            for (String n : names) {
                if (set.contains(n)) continue;
                boolean suffix = false;
                for (String t : set) if (n.endsWith("." + t)) { suffix = true; break; }
                if (!suffix) others.add(n);
            }
            Set<String> minimal = findMinimalTargetModules(set, others);
            if (minimal.size() < set.size()) return minimal;
        }
        return set;
    }

    /** PEFT {@code _find_minimal_target_modules}: the fewest suffixes that select the targets and none of the others. */
    static Set<String> findMinimalTargetModules(Set<String> targets, List<String> others) {
        Set<String> otherSuffixes = new HashSet<>();
        for (String o : others) otherSuffixes.addAll(suffixes(o));
        List<Map.Entry<String, List<String>>> items = new ArrayList<>();
        for (String t : targets) items.add(Map.entry(t, suffixes(t)));
        items.sort(Map.Entry.comparingByValue(LoraTargets::compareLists));
        Set<String> required = new LinkedHashSet<>();
        for (var item : items) {
            for (String suffix : item.getValue()) {
                if (required.contains(suffix) || otherSuffixes.contains(suffix)) continue;
                boolean covered = false;
                for (String req : required) if (item.getKey().endsWith("." + req)) { covered = true; break; }
                if (!covered) {
                    required.add(suffix);
                    break;
                }
            }
        }
        return required.isEmpty() ? new LinkedHashSet<>(targets) : required;
    }

    /** "a.b.c" → ["c", "b.c", "a.b.c"] (shortest first). */
    private static List<String> suffixes(String s) {
        String[] parts = s.split("\\.", -1);
        List<String> out = new ArrayList<>();
        for (int i = parts.length - 1; i >= 0; i--) out.add(String.join(".", java.util.Arrays.copyOfRange(parts, i, parts.length)));
        return out;
    }

    private static int compareLists(List<String> a, List<String> b) {
        for (int i = 0; i < Math.min(a.size(), b.size()); i++) {
            int c = a.get(i).compareTo(b.get(i));
            if (c != 0) return c;
        }
        return Integer.compare(a.size(), b.size());
    }

    /** The target_modules list PEFT writes after injection, or null when the config's value is saved unchanged. */
    static List<String> savedTargetModules(LoraConfig c, List<String> names) {
        JsonNode tm = c.targetModules();
        if (tm != null && tm.isTextual() && !tm.textValue().equalsIgnoreCase(LoraConfig.ALL_LINEAR)) return null;
        Object eff = effectiveTargets(tm, names, true);
        @SuppressWarnings("unchecked") Set<String> set = (Set<String>) eff;
        return new ArrayList<>(set);
    }

    /** PEFT {@code check_target_module_exists} for one module name, with already-effective targets. */
    static boolean isTarget(Object targets, JsonNode exclude, JsonNode modulesToSave, JsonNode layersToTransform,
                            JsonNode layersPattern, String key) {
        if (exclude != null && !exclude.isNull() && !(exclude.isArray() && exclude.isEmpty())) {
            if (exclude.isTextual()) {
                if (Pattern.matches(exclude.textValue(), key)) return false;
            } else {
                for (JsonNode e : exclude) {
                    String x = e.textValue();
                    if (key.equals(x) || key.endsWith("." + x)) return false;
                }
            }
        }
        if (modulesToSave != null && modulesToSave.isArray()) {
            for (JsonNode m : modulesToSave) {
                if (Pattern.compile("(^|.*\\.)" + m.textValue() + "($|\\..*)").matcher(key).lookingAt()) return false;
            }
        }
        if (targets instanceof String regex) return Pattern.matches(regex, key);
        @SuppressWarnings("unchecked") Set<String> set = (Set<String>) targets;
        if (set.contains(key)) return true;
        boolean found = false;
        for (String t : set) if (key.endsWith("." + t)) { found = true; break; }
        boolean usingLayers = layersToTransform != null && !layersToTransform.isNull()
                && !(layersToTransform.isArray() && layersToTransform.isEmpty());
        if (!usingLayers || !found) return found;
        Matcher m = null;
        if (layersPattern == null || layersPattern.isNull() || layersPattern.isEmpty() && !layersPattern.isTextual()
                || layersPattern.isTextual() && layersPattern.textValue().isEmpty()) {
            Matcher mm = LAYER_INDEX.matcher(key);
            if (mm.lookingAt()) m = mm;
        } else {
            List<String> patterns = new ArrayList<>();
            if (layersPattern.isTextual()) patterns.add(layersPattern.textValue());
            else layersPattern.forEach(p -> patterns.add(p.textValue()));
            for (String p : patterns) {
                Matcher mm = Pattern.compile(".*?\\." + p + "\\.(\\d+)\\.").matcher(key);
                if (mm.lookingAt()) { m = mm; break; }
            }
        }
        if (m == null) return false;
        int idx = Integer.parseInt(m.group(1));
        if (layersToTransform.isIntegralNumber()) return idx == layersToTransform.intValue();
        for (JsonNode l : layersToTransform) if (l.intValue() == idx) return true;
        return false;
    }

    /** PEFT {@code get_pattern_key}: the first pattern key with {@code re.match(rf"(.*\.)?({key})$", name)}, else null. */
    static String patternKey(Iterable<String> keys, String name) {
        for (String k : keys) if (Pattern.compile("(.*\\.)?(" + k + ")$").matcher(name).lookingAt()) return k;
        return null;
    }

    static List<LoraTarget> resolve(LoraConfig c, List<String> names) {
        Object targets = effectiveTargets(c.targetModules(), names, true);
        Map<String, Integer> ranks = c.rankPattern();
        Map<String, Double> alphas = c.alphaPattern();
        List<LoraTarget> out = new ArrayList<>();
        for (String name : names) {
            if (name.isEmpty()) continue;
            if (!isTarget(targets, c.get("exclude_modules"), c.get("modules_to_save"), c.get("layers_to_transform"),
                    c.get("layers_pattern"), name)) continue;
            String rk = patternKey(ranks.keySet(), name);
            String ak = patternKey(alphas.keySet(), name);
            int r = rk == null ? c.r() : ranks.get(rk);
            double alpha = ak == null ? c.loraAlpha() : alphas.get(ak);
            out.add(new LoraTarget(name, r, alpha, c.scaling(r, alpha)));
        }
        if (out.isEmpty()) {
            JsonNode tm = c.targetModules();
            throw new UserException(c.where() + ": field \"target_modules\" " + (tm == null ? "(default " + LoraConfig.GEMMA3_DEFAULT_TARGETS + ")" : tm.toString())
                    + " matched none of the model's " + names.size() + " linear layers"
                    + (names.isEmpty() ? "" : " (such as " + names.getFirst() + ")")
                    + (c.get("layers_to_transform") != null ? " with layers_to_transform " + c.get("layers_to_transform") : "")
                    + (c.get("exclude_modules") != null ? " and exclude_modules " + c.get("exclude_modules") : ""));
        }
        return out;
    }

}
