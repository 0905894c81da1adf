package dev.peft4j.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.AtomicFiles;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes a random-weight Gemma 3 checkpoint of any shape in the Hugging Face layout (config.json, generation_config.json,
 * model.safetensors): linear and embedding weights ~ N(0, initializer_range), norm weights w ~ N(0, normStd) (0 gives transformers'
 * init). Deterministic for a seed: each tensor draws from its own stream seeded by (seed, tensor name).
 */
public final class RandomInit {
    private RandomInit() {}

    public static void write(Path configFile, Path out, long seed, boolean bf16, double normStd) throws IOException {
        ObjectMapper om = new ObjectMapper();
        Gemma3Config c = Gemma3Config.read(configFile);
        if (c.multimodal()) throw new UserException(configFile + ": --random needs a gemma3_text config (multimodal configs describe vision towers too)");
        ObjectNode cfg = (ObjectNode) om.readTree(configFile.toFile());
        double std = cfg.path("initializer_range").asDouble(0.02);
        int H = c.hidden(), D = c.headDim(), I = c.intermediate();
        Map<String, long[]> shapes = new LinkedHashMap<>();
        shapes.put("model.embed_tokens.weight", new long[]{c.vocabSize(), H});
        for (int i = 0; i < c.layers(); i++) {
            String p = "model.layers." + i + ".";
            shapes.put(p + "input_layernorm.weight", new long[]{H});
            shapes.put(p + "self_attn.q_proj.weight", new long[]{(long) c.heads() * D, H});
            shapes.put(p + "self_attn.k_proj.weight", new long[]{(long) c.kvHeads() * D, H});
            shapes.put(p + "self_attn.v_proj.weight", new long[]{(long) c.kvHeads() * D, H});
            shapes.put(p + "self_attn.o_proj.weight", new long[]{H, (long) c.heads() * D});
            shapes.put(p + "self_attn.q_norm.weight", new long[]{D});
            shapes.put(p + "self_attn.k_norm.weight", new long[]{D});
            shapes.put(p + "post_attention_layernorm.weight", new long[]{H});
            shapes.put(p + "pre_feedforward_layernorm.weight", new long[]{H});
            shapes.put(p + "mlp.gate_proj.weight", new long[]{I, H});
            shapes.put(p + "mlp.up_proj.weight", new long[]{I, H});
            shapes.put(p + "mlp.down_proj.weight", new long[]{H, I});
            shapes.put(p + "post_feedforward_layernorm.weight", new long[]{H});
        }
        shapes.put("model.norm.weight", new long[]{H});
        if (!c.tieEmbeddings()) shapes.put("lm_head.weight", new long[]{c.vocabSize(), H});
        List<String> names = new ArrayList<>(shapes.keySet());
        float[][] data = new float[names.size()][];
        Parallel.forRange(names.size(), 1, (a, b) -> {
            for (int t = a; t < b; t++) {
                String name = names.get(t);
                long[] sh = shapes.get(name);
                long n = 1;
                for (long s : sh) n *= s;
                float[] v = new float[Math.toIntExact(n)];
                SplittableRandom rng = new SplittableRandom(seed * 0x9E3779B97F4A7C15L ^ name.hashCode());
                double sd = sh.length == 1 ? normStd : std;
                if (sd > 0) for (int i = 0; i < v.length; i++) v[i] = (float) (nextGaussian(rng) * sd);
                data[t] = v;
            }
        });
        Map<String, SafeTensors.Entry> entries = new LinkedHashMap<>();
        for (int t = 0; t < names.size(); t++) {
            long[] sh = shapes.get(names.get(t));
            entries.put(names.get(t), bf16 ? SafeTensors.Entry.bf16(data[t], sh) : SafeTensors.Entry.f32(data[t], sh));
        }
        Files.createDirectories(out);
        SafeTensors.write(out.resolve("model.safetensors"), entries, null);
        cfg.put(cfg.has("dtype") ? "dtype" : "torch_dtype", bf16 ? "bfloat16" : "float32");
        AtomicFiles.writeString(out.resolve("config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(cfg) + "\n");
        ObjectNode gen = om.createObjectNode();
        gen.put("bos_token_id", c.bosId());
        if (c.eosIds().length == 1) gen.put("eos_token_id", c.eosIds()[0]);
        else { var a = gen.putArray("eos_token_id"); for (int e : c.eosIds()) a.add(e); }
        gen.put("pad_token_id", c.padId());
        AtomicFiles.writeString(out.resolve("generation_config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(gen) + "\n");
    }

    /** Standard normal by Box–Muller (deterministic across JDKs, unlike Random.nextGaussian's algorithm choice). */
    static double nextGaussian(SplittableRandom r) {
        double u1 = r.nextDouble(), u2 = r.nextDouble();
        if (u1 < 1e-300) u1 = 1e-300;
        return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }
}
