package dev.peft4j.peft;

import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.KVCache;
import dev.peft4j.model.Linear;
import dev.peft4j.model.SeqAdapter;
import dev.peft4j.util.UserException;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Applies an adapter directory as PEFT writes it ({@code adapter_config.json} + {@code adapter_model.safetensors}) to a loaded
 * model: PROMPT_TUNING and P_TUNING return the virtual-token vectors (P_TUNING saves its encoder's outputs, so at inference
 * it is prompt tuning); PREFIX_TUNING returns a cache pre-filled with the learned keys/values of every layer at positions
 * 0..n−1; LORA attaches A/B and IA3 its {@code ia3_l} vectors to the modules the config targets (unmerged, or merged into
 * float32 copies of the base weights). The base model's mapped weights are never modified.
 */
public final class Adapters {
    private Adapters() {}

    /**
     * What an adapter added to the model: virtual tokens [n, H] (prompt methods), a prefilled cache to start every sequence
     * from (copy it; prefix tuning), or the number of adapted modules.
     */
    public record Applied(AdapterConfig config, float[] virtualTokens, KVCache prefix, int adaptedModules) {}

    /**
     * An adapter read for per-sequence use ({@code peft4j serve}): the model is not touched. Prompt methods give virtual
     * tokens, prefix tuning a prefilled cache to copy, LoRA and IA3 a {@link SeqAdapter} (null for the other types).
     */
    public record Loaded(AdapterConfig config, float[] virtualTokens, KVCache prefix, SeqAdapter perSequence) {}

    /** Reads {@code dir} for per-sequence use; the model's modules stay as they are (see {@link Loaded}). */
    public static Loaded load(Gemma3Model model, Path dir) {
        AdapterConfig cfg = AdapterConfig.read(dir);
        try (SafeTensors st = openWeights(dir)) {
            if (cfg instanceof PromptTuningConfig pt) {
                return new Loaded(cfg, promptEmbeddings(model, pt, st, pt.totalVirtualTokens(), pt.tokenDim(), pt.numLayers()), null, null);
            }
            if (cfg instanceof PromptEncoderConfig pe) {
                return new Loaded(cfg, promptEmbeddings(model, pe, st, pe.totalVirtualTokens(), pe.tokenDim(), pe.numLayers()), null, null);
            }
            if (cfg instanceof PrefixTuningConfig pc) return new Loaded(cfg, null, prefix(model, pc, st), null);
            Map<String, Linear.Lora> lo = new HashMap<>();
            Map<String, Linear.Ia3> ia = new HashMap<>();
            if (cfg instanceof LoraConfig lc) lora(model, lc, st, false, lo);
            else if (cfg instanceof IA3Config ic) ia3(model, ic, st, false, ia);
            else throw new UserException(cfg.source() + ": peft_type " + cfg.peftType() + " is not supported at inference");
            return new Loaded(cfg, null, null, SeqAdapter.of(dir.toString(), model.weights, lo, ia));
        }
    }

    private static SafeTensors openWeights(Path dir) {
        Path weights = dir.resolve(AdapterConfig.WEIGHTS_NAME);
        if (!Files.isRegularFile(weights)) {
            if (Files.isRegularFile(dir.resolve("adapter_model.bin"))) {
                throw new UserException(dir.resolve("adapter_model.bin") + ": pickle adapters are not supported; save with safe_serialization=True (adapter_model.safetensors)");
            }
            throw new UserException(weights + ": adapter weights not found");
        }
        return SafeTensors.open(weights);
    }

    public static Applied apply(Gemma3Model model, Path dir, boolean merge) {
        AdapterConfig cfg = AdapterConfig.read(dir);
        Path weights = dir.resolve(AdapterConfig.WEIGHTS_NAME);
        if (!Files.isRegularFile(weights)) {
            if (Files.isRegularFile(dir.resolve("adapter_model.bin"))) {
                throw new UserException(dir.resolve("adapter_model.bin") + ": pickle adapters are not supported; save with safe_serialization=True (adapter_model.safetensors)");
            }
            throw new UserException(weights + ": adapter weights not found");
        }
        try (SafeTensors st = SafeTensors.open(weights)) {
            if (cfg instanceof PromptTuningConfig pt) {
                return new Applied(cfg, promptEmbeddings(model, pt, st, pt.totalVirtualTokens(), pt.tokenDim(), pt.numLayers()), null, 0);
            }
            if (cfg instanceof PromptEncoderConfig pe) {
                return new Applied(cfg, promptEmbeddings(model, pe, st, pe.totalVirtualTokens(), pe.tokenDim(), pe.numLayers()), null, 0);
            }
            if (cfg instanceof PrefixTuningConfig pc) return new Applied(cfg, null, prefix(model, pc, st), 0);
            if (cfg instanceof LoraConfig lc) return new Applied(cfg, null, null, lora(model, lc, st, merge, null));
            if (cfg instanceof IA3Config ic) return new Applied(cfg, null, null, ia3(model, ic, st, merge, null));
            throw new UserException(cfg.source() + ": peft_type " + cfg.peftType() + " is not supported at inference");
        }
    }

    private static float[] promptEmbeddings(Gemma3Model model, AdapterConfig cfg, SafeTensors st, int n, Integer tokenDim, Integer numLayers) {
        int H = model.config.hidden();
        if (tokenDim != null && tokenDim != H) {
            throw new UserException(cfg.source() + ": token_dim " + tokenDim + " does not fit the model (hidden_size " + H
                    + "); the adapter was trained for another base model");
        }
        if (numLayers != null && numLayers != model.config.layers()) {
            throw new UserException(cfg.source() + ": num_layers " + numLayers + " does not fit the model (" + model.config.layers()
                    + " layers); the adapter was trained for another base model");
        }
        if (!st.has(AdapterKeys.PROMPT_EMBEDDINGS)) throw new UserException(st.file() + ": tensor prompt_embeddings is missing");
        SafeTensors.Tensor t = st.get(AdapterKeys.PROMPT_EMBEDDINGS);
        if (t.shape().length != 2 || t.shape()[1] != H || t.shape()[0] != n) {
            throw new UserException(st.file() + ": prompt_embeddings has shape " + t.shapeString() + ", expected [" + n + ", " + H + "]");
        }
        return t.toFloats();
    }

    /**
     * PEFT's prefix layout (REFERENCE 2.4): prompt_embeddings [n, layers·2·token_dim] with token_dim = kv_heads·head_dim;
     * for layer l the keys are columns [2l·token_dim, (2l+1)·token_dim) and the values the next token_dim columns, each
     * [kv_heads, head_dim] as the cache stores a row.
     */
    private static KVCache prefix(Gemma3Model model, PrefixTuningConfig cfg, SafeTensors st) {
        int L = model.config.layers(), w = model.config.kvHeads() * model.config.headDim(), n = cfg.numVirtualTokens();
        if (cfg.tokenDim() != null && cfg.tokenDim() != w) {
            throw new UserException(cfg.source() + ": token_dim " + cfg.tokenDim() + " does not fit the model (num_key_value_heads x head_dim = " + w
                    + "); the adapter was trained for another base model");
        }
        if (cfg.numLayers() != null && cfg.numLayers() != L) {
            throw new UserException(cfg.source() + ": num_layers " + cfg.numLayers() + " does not fit the model (" + L
                    + " layers); the adapter was trained for another base model");
        }
        if (!st.has(AdapterKeys.PROMPT_EMBEDDINGS)) throw new UserException(st.file() + ": tensor prompt_embeddings is missing");
        SafeTensors.Tensor t = st.get(AdapterKeys.PROMPT_EMBEDDINGS);
        if (t.shape().length != 2 || t.shape()[0] != n || t.shape()[1] != (long) L * 2 * w) {
            throw new UserException(st.file() + ": prompt_embeddings has shape " + t.shapeString() + ", expected [" + n + ", " + (L * 2 * w)
                    + "] (num_virtual_tokens, num_layers x 2 x num_key_value_heads x head_dim)");
        }
        float[] e = t.toFloats();
        float[][] k = new float[L][n * w], v = new float[L][n * w];
        for (int i = 0; i < n; i++) {
            for (int l = 0; l < L; l++) {
                System.arraycopy(e, i * L * 2 * w + 2 * l * w, k[l], i * w, w);
                System.arraycopy(e, i * L * 2 * w + (2 * l + 1) * w, v[l], i * w, w);
            }
        }
        KVCache c = model.newCache();
        c.prefill(k, v, n);
        return c;
    }

    /** Attaches the vectors to the model's modules, or with a non-null {@code into} only puts them there by module name. */
    private static int ia3(Gemma3Model model, IA3Config cfg, SafeTensors st, boolean merge, Map<String, Linear.Ia3> into) {
        cfg.requireSupported();
        Map<String, Linear> byName = new LinkedHashMap<>();
        for (Linear l : model.weights.linears()) byName.put(l.name, l);
        List<IA3Config.Target> targets = cfg.resolve(List.copyOf(byName.keySet()));
        Set<String> used = new HashSet<>();
        for (IA3Config.Target tg : targets) {
            Linear lin = byName.get(tg.moduleName());
            String key = AdapterKeys.ia3(tg.moduleName());
            if (!st.has(key)) throw new UserException(st.file() + ": adapter_config.json targets " + tg.moduleName() + " but " + key + " is missing");
            SafeTensors.Tensor t = st.get(key);
            long[] want = tg.feedforward() ? new long[]{1, lin.in()} : new long[]{lin.out(), 1};
            if (!java.util.Arrays.equals(t.shape(), want)) {
                throw new UserException(st.file() + ": tensor " + key + " has shape " + t.shapeString() + ", module " + tg.moduleName() + " needs "
                        + java.util.Arrays.toString(want) + (tg.feedforward() ? " (feed-forward: scales the input)" : " (scales the output)"));
            }
            Linear.Ia3 vec = new Linear.Ia3(t.toFloats(), tg.feedforward());
            if (into != null) into.put(lin.name, vec);
            else {
                lin.ia3 = vec;
                if (merge) lin.merge();
            }
            used.add(key);
        }
        for (String k : st.tensors().keySet()) {
            if (!used.contains(k)) throw new UserException(st.file() + ": tensor " + k + " is not used: adapter_config.json does not target it (or the model has no such module)");
        }
        return targets.size();
    }

    /** Attaches A/B to the model's modules, or with a non-null {@code into} only puts them there by module name. */
    private static int lora(Gemma3Model model, LoraConfig cfg, SafeTensors st, boolean merge, Map<String, Linear.Lora> into) {
        cfg.requireSupported();
        Map<String, Linear> byName = new HashMap<>();
        for (Linear l : model.weights.linears()) byName.put(l.name, l);
        List<LoraTarget> targets = cfg.resolve(List.copyOf(byName.keySet()));
        Set<String> used = new HashSet<>();
        for (LoraTarget tg : targets) {
            Linear lin = byName.get(tg.moduleName());
            String ka = AdapterKeys.loraA(tg.moduleName()), kb = AdapterKeys.loraB(tg.moduleName());
            if (!st.has(ka) || !st.has(kb)) {
                throw new UserException(st.file() + ": adapter_config.json targets " + tg.moduleName() + " but " + (st.has(ka) ? kb : ka) + " is missing");
            }
            SafeTensors.Tensor a = st.get(ka), b = st.get(kb);
            if (a.shape().length != 2 || a.shape()[0] != tg.r() || a.shape()[1] != lin.in()) {
                throw new UserException(st.file() + ": tensor " + ka + " has shape " + a.shapeString() + ", module " + tg.moduleName()
                        + " needs [" + tg.r() + ", " + lin.in() + "] (adapter for another base model?)");
            }
            if (b.shape().length != 2 || b.shape()[0] != lin.out() || b.shape()[1] != tg.r()) {
                throw new UserException(st.file() + ": tensor " + kb + " has shape " + b.shapeString() + ", module " + tg.moduleName()
                        + " needs [" + lin.out() + ", " + tg.r() + "]");
            }
            Linear.Lora ab = new Linear.Lora(tg.r(), (float) tg.scaling(), a.toFloats(), b.toFloats(), lin.in(), lin.out());
            if (into != null) into.put(lin.name, ab);
            else {
                lin.lora = ab;
                if (merge) lin.merge();
            }
            used.add(ka);
            used.add(kb);
        }
        for (String k : st.tensors().keySet()) {
            if (!used.contains(k)) {
                String module = AdapterKeys.loraModule(k);
                throw new UserException(st.file() + ": tensor " + k + " is not used: "
                        + (module != null && !byName.containsKey(module) ? "the model has no module " + module + " (adapter for another base model?)"
                        : "adapter_config.json does not target it"));
            }
        }
        if (targets.isEmpty()) throw new UserException(cfg.source() + ": target_modules matches no module of the model");
        return targets.size();
    }
}
