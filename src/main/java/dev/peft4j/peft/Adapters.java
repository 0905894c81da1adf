package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Applies an adapter directory as PEFT writes it ({@code adapter_config.json} + {@code adapter_model.safetensors}) to a loaded
 * model: PROMPT_TUNING returns the virtual-token vectors; LORA attaches A/B to the adapted linears (unmerged, or merged into
 * float32 copies of the base weights when asked). The base model's mapped weights are never modified.
 */
public final class Adapters {
    private Adapters() {}

    /** What an adapter added to the model. */
    public record Applied(String peftType, float[] virtualTokens, int loraModules) {}

    public static JsonNode readConfig(Path dir) {
        Path cfg = dir.resolve("adapter_config.json");
        if (!Files.isRegularFile(cfg)) throw new UserException(cfg + ": adapter_config.json not found (is " + dir + " a PEFT adapter directory?)");
        try {
            JsonNode n = new ObjectMapper().readTree(cfg.toFile());
            if (n == null || !n.isObject()) throw new UserException(cfg + ": expected a JSON object");
            if (!n.hasNonNull("peft_type")) throw new UserException(cfg + ": required field 'peft_type' is missing");
            return n;
        } catch (IOException e) {
            throw new UserException(cfg + ": not valid JSON (" + e.getMessage().split("\n")[0] + ")");
        }
    }

    public static Applied apply(Gemma3Model model, Path dir, boolean merge) {
        JsonNode cfg = readConfig(dir);
        String type = cfg.get("peft_type").asText();
        Path weights = dir.resolve("adapter_model.safetensors");
        if (!Files.isRegularFile(weights)) {
            if (Files.isRegularFile(dir.resolve("adapter_model.bin"))) {
                throw new UserException(dir.resolve("adapter_model.bin") + ": pickle adapters are not supported; save with safe_serialization=True (adapter_model.safetensors)");
            }
            throw new UserException(weights + ": adapter weights not found");
        }
        try (SafeTensors st = SafeTensors.open(weights)) {
            return switch (type) {
                case "PROMPT_TUNING" -> new Applied(type, promptTuning(model, cfg, st), 0);
                case "LORA" -> new Applied(type, null, lora(model, cfg, st, merge));
                default -> throw new UserException(dir.resolve("adapter_config.json") + ": peft_type " + type + " is not supported (expected PROMPT_TUNING or LORA)");
            };
        }
    }

    private static float[] promptTuning(Gemma3Model model, JsonNode cfg, SafeTensors st) {
        int H = model.config.hidden();
        if (cfg.hasNonNull("token_dim") && cfg.get("token_dim").asInt() != H) {
            throw new UserException(st.file().resolveSibling("adapter_config.json") + ": token_dim " + cfg.get("token_dim").asInt()
                    + " does not fit the model (hidden_size " + H + "); the adapter was trained for another base model");
        }
        SafeTensors.Tensor t = st.get("prompt_embeddings");
        int n = cfg.path("num_virtual_tokens").asInt((int) t.shape()[0]);
        if (t.shape().length != 2 || t.shape()[1] != H || t.shape()[0] < n) {
            throw new UserException(st.file() + ": prompt_embeddings has shape " + t.shapeString() + ", expected [" + n + ", " + H + "]");
        }
        float[] all = t.toFloats();
        return java.util.Arrays.copyOf(all, n * H);
    }

    private static int lora(Gemma3Model model, JsonNode cfg, SafeTensors st, boolean merge) {
        int r = cfg.path("r").asInt(8);
        double alpha = cfg.path("lora_alpha").asDouble(8);
        boolean rs = cfg.path("use_rslora").asBoolean(false);
        if (cfg.path("use_dora").asBoolean(false)) throw new UserException(st.file().resolveSibling("adapter_config.json") + ": use_dora is not supported");
        Map<String, Linear> byName = new HashMap<>();
        for (Linear l : model.weights.linears()) byName.put(l.name, l);
        int applied = 0;
        for (String key : st.tensors().keySet()) {
            if (!key.endsWith(".lora_A.weight")) continue;
            String module = key.substring(0, key.length() - ".lora_A.weight".length());
            String name = module.startsWith("base_model.model.") ? module.substring("base_model.model.".length()) : module;
            Linear lin = byName.get(name);
            if (lin == null) throw new UserException(st.file() + ": tensor " + key + " adapts module " + name + ", which the model does not have (adapter for another base model?)");
            SafeTensors.Tensor a = st.get(key), b = st.get(module + ".lora_B.weight");
            int rank = (int) a.shape()[0];
            int expectRank = patternInt(cfg.path("rank_pattern"), name, r);
            double al = patternDouble(cfg.path("alpha_pattern"), name, alpha);
            if (rank != expectRank) throw new UserException(st.file() + ": tensor " + key + " has rank " + rank + " but adapter_config.json says r=" + expectRank);
            if (a.shape().length != 2 || a.shape()[1] != lin.in()) {
                throw new UserException(st.file() + ": tensor " + key + " has shape " + a.shapeString() + ", module " + name + " needs [" + rank + ", " + lin.in() + "] (adapter for another base model?)");
            }
            if (b.shape().length != 2 || b.shape()[0] != lin.out() || b.shape()[1] != rank) {
                throw new UserException(st.file() + ": tensor " + module + ".lora_B.weight has shape " + b.shapeString() + ", module " + name + " needs [" + lin.out() + ", " + rank + "]");
            }
            float scale = (float) (rs ? al / Math.sqrt(rank) : al / rank);
            lin.lora = new Linear.Lora(rank, scale, a.toFloats(), b.toFloats(), lin.in(), lin.out());
            if (merge) {
                lin.merge();
                lin.lora = null;
            }
            applied++;
        }
        if (applied == 0) throw new UserException(st.file() + ": no lora_A/lora_B tensors found");
        return applied;
    }

    /** PEFT's get_pattern_key: the first key k with {@code re.match(rf"(.*\.)?({k})$", name)}. */
    public static String patternKey(JsonNode pattern, String name) {
        if (pattern == null || !pattern.isObject()) return null;
        for (Iterator<String> it = pattern.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (Pattern.compile("(.*\\.)?(" + k + ")$").matcher(name).matches()) return k;
        }
        return null;
    }

    private static int patternInt(JsonNode p, String name, int d) {
        String k = patternKey(p, name);
        return k == null ? d : p.get(k).asInt();
    }

    private static double patternDouble(JsonNode p, String name, double d) {
        String k = patternKey(p, name);
        return k == null ? d : p.get(k).asDouble();
    }
}
