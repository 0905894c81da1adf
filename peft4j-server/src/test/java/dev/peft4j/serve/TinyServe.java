package dev.peft4j.serve;

import dev.peft4j.Shared;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.data.QuickstartAssets;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.model.RandomInit;
import dev.peft4j.peft.AdapterWriter;
import dev.peft4j.peft.IA3Config;
import dev.peft4j.peft.LoraConfig;
import dev.peft4j.peft.PromptTuningConfig;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

/**
 * A tiny random Gemma 3 (the core tests' config, 1024-token quickstart tokenizer) and one adapter of each PEFT type, with
 * random (non-trivial) weights, written under a folder: {@code model/}, {@code pt/} (prompt tuning), {@code lora/},
 * {@code lora2/}, {@code ia3/}, {@code prefix/}.
 */
public final class TinyServe {
    public final Path root, model;

    public TinyServe(Path root) throws Exception {
        this.root = root;
        this.model = root.resolve("model");
        Path assets = QuickstartAssets.copyTo(root.resolve("assets"));
        RandomInit.write(Shared.resource("tiny-gemma3-config.json"), model, 11, false, 0.1);
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) Files.copy(assets.resolve("tokenizer").resolve(f), model.resolve(f));
        Gemma3Model m = Gemma3Model.load(model);
        var cfgJson = new ObjectMapper().readTree(model.resolve("config.json").toFile());
        Random r = new Random(3);
        int H = m.config.hidden();
        // prompt tuning, 4 virtual tokens
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("num_virtual_tokens", 4);
        v.put("prompt_tuning_init", "RANDOM");
        v.put("base_model_name_or_path", "tiny");
        AdapterWriter.promptTuning(root.resolve("pt"), PromptTuningConfig.create(v).withModelConfig(cfgJson), rnd(r, 4 * H, 1f), H);
        // LoRA on q, v, o, down
        lora(m, r, root.resolve("lora"), 1f);
        lora(m, r, root.resolve("lora2"), 0.5f);
        // IA3 (q, v, down with down feed-forward)
        for (Linear l : m.weights.linears()) {
            boolean ff = l.name.endsWith("down_proj");
            if (!(ff || l.name.endsWith("q_proj") || l.name.endsWith("v_proj"))) continue;
            float[] x = rnd(r, ff ? l.in() : l.out(), 0.4f);
            for (int i = 0; i < x.length; i++) x[i] += 1f;
            l.ia3 = new Linear.Ia3(x, ff);
        }
        Map<String, Object> iv = new LinkedHashMap<>();
        iv.put("target_modules", List.of("q_proj", "v_proj", "down_proj"));
        iv.put("feedforward_modules", List.of("down_proj"));
        iv.put("base_model_name_or_path", "tiny");
        AdapterWriter.ia3(root.resolve("ia3"), IA3Config.create(iv), m);
        for (Linear l : m.weights.linears()) l.ia3 = null;
        // prefix tuning, 3 positions
        int L = m.config.layers(), w = m.config.kvHeads() * m.config.headDim(), n = 3;
        Path px = root.resolve("prefix");
        Files.createDirectories(px);
        Files.writeString(px.resolve("adapter_config.json"), """
                {"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": %d, "token_dim": %d, "num_layers": %d,
                 "num_attention_heads": %d, "prefix_projection": false, "base_model_name_or_path": "tiny", "inference_mode": true}
                """.formatted(n, w, L, m.config.kvHeads()));
        SafeTensors.write(px.resolve("adapter_model.safetensors"),
                Map.of("prompt_embeddings", SafeTensors.Entry.f32(rnd(r, n * L * 2 * w, 1f), n, (long) L * 2 * w)), null);
    }

    private static void lora(Gemma3Model m, Random r, Path dir, float s) {
        for (Linear l : m.weights.linears()) {
            if (!(l.name.endsWith("q_proj") || l.name.endsWith("v_proj") || l.name.endsWith("o_proj") || l.name.endsWith("down_proj"))) continue;
            l.lora = new Linear.Lora(4, 2f, rnd(r, 4 * l.in(), 0.3f * s), rnd(r, l.out() * 4, 0.3f * s), l.in(), l.out());
        }
        Map<String, Object> lv = new LinkedHashMap<>();
        lv.put("r", 4);
        lv.put("lora_alpha", 8);
        lv.put("target_modules", List.of("q_proj", "v_proj", "o_proj", "down_proj"));
        lv.put("base_model_name_or_path", "tiny");
        AdapterWriter.lora(dir, LoraConfig.create(lv), m);
        for (Linear l : m.weights.linears()) l.lora = null;
    }

    static float[] rnd(Random r, int n, float s) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian() * s;
        return a;
    }
}
