package dev.peft4j.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.util.AtomicFiles;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Saves a (fully fine-tuned) model as a Hugging Face checkpoint directory: config.json (copied from the base, dtype updated),
 * generation_config.json and tokenizer files (copied), model.safetensors in F32 or BF16 with transformers' tensor names
 * (no lm_head.weight when tied), so both peft4j and transformers load it.
 */
public final class CheckpointWriter {
    private CheckpointWriter() {}

    public static void save(Gemma3Model m, Path out, boolean bf16) throws IOException {
        Gemma3Weights w = m.weights;
        Gemma3Config c = m.config;
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        put(e, "model.embed_tokens.weight", w.embed.toFloatArray(), bf16, c.vocabSize(), c.hidden());
        for (int i = 0; i < w.layers.length; i++) {
            Gemma3Weights.Layer l = w.layers[i];
            String p = "model.layers." + i + ".";
            for (Linear lin : l.linears()) {
                Linear.Lora lora = lin.lora;
                float[] wt = lin.weight.toFloatArray();
                if (lora != null && !lin.merged) { // fold an unmerged LoRA branch into the saved weight
                    Linear tmp = new Linear(lin.name, dev.peft4j.tensor.Matrix.heap(lin.out(), lin.in(), wt));
                    tmp.lora = lora;
                    tmp.merge();
                    wt = tmp.weight.array();
                }
                put(e, lin.name + ".weight", wt, bf16, lin.out(), lin.in());
            }
            put(e, p + "input_layernorm.weight", l.inputNorm, bf16, c.hidden());
            put(e, p + "post_attention_layernorm.weight", l.postAttnNorm, bf16, c.hidden());
            put(e, p + "pre_feedforward_layernorm.weight", l.preFfNorm, bf16, c.hidden());
            put(e, p + "post_feedforward_layernorm.weight", l.postFfNorm, bf16, c.hidden());
            put(e, p + "self_attn.q_norm.weight", l.qNorm, bf16, c.headDim());
            put(e, p + "self_attn.k_norm.weight", l.kNorm, bf16, c.headDim());
        }
        put(e, "model.norm.weight", w.finalNorm, bf16, c.hidden());
        if (w.lmHead != w.embed) put(e, "lm_head.weight", w.lmHead.toFloatArray(), bf16, c.vocabSize(), c.hidden());
        Files.createDirectories(out);
        SafeTensors.write(out.resolve("model.safetensors"), e, null);
        ObjectMapper om = new ObjectMapper();
        ObjectNode cfg = (ObjectNode) om.readTree(m.dir.resolve("config.json").toFile());
        String dt = bf16 ? "bfloat16" : "float32";
        if (cfg.has("text_config")) ((ObjectNode) cfg.get("text_config")).put(cfg.get("text_config").has("dtype") ? "dtype" : "torch_dtype", dt);
        cfg.put(cfg.has("dtype") ? "dtype" : "torch_dtype", dt);
        if (c.multimodal()) {
            // the saved weights are the text model's: write a gemma3_text config
            ObjectNode text = (ObjectNode) cfg.get("text_config").deepCopy();
            text.put("model_type", "gemma3_text");
            text.putArray("architectures").add("Gemma3ForCausalLM");
            cfg = text;
        }
        AtomicFiles.writeString(out.resolve("config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(cfg) + "\n");
        for (String f : new String[]{"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"}) {
            Path src = m.dir.resolve(f);
            if (Files.isRegularFile(src) && !src.toAbsolutePath().equals(out.resolve(f).toAbsolutePath())) {
                AtomicFiles.write(out.resolve(f), Files.readAllBytes(src));
            }
        }
    }

    private static void put(Map<String, SafeTensors.Entry> e, String name, float[] v, boolean bf16, long... shape) {
        e.put(name, bf16 ? SafeTensors.Entry.bf16(v, shape) : SafeTensors.Entry.f32(v, shape));
    }
}
