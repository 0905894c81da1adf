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

    /** The {@code quant_method} of the {@code quantization_config} a q8 checkpoint's config.json carries. */
    public static final String Q8_METHOD = "peft4j_q8_0";

    /**
     * Saves a model whose weights are quantized ({@link Gemma3Weights#quantizeQ8}) as a q8 checkpoint: model.safetensors holds
     * every linear's weight and the embedding (and a separate lm_head) as U8 [rows, cols/32·34], the rows of llama.cpp's
     * block_q8_0 (per 32 weights a little-endian fp16 scale, then 32 int8), and the norms as F32; config.json gets a
     * {@code quantization_config} ({@value #Q8_METHOD}); generation and tokenizer files are copied. peft4j maps it as it is
     * (no heap copy, no re-quantization); transformers does not read it.
     */
    public static void saveQ8(Gemma3Model m, Path out) throws IOException {
        Gemma3Weights w = m.weights;
        Gemma3Config c = m.config;
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        putQ8(e, w, "model.embed_tokens.weight", w.embed);
        for (int i = 0; i < w.layers.length; i++) {
            Gemma3Weights.Layer l = w.layers[i];
            String p = "model.layers." + i + ".";
            for (Linear lin : l.linears()) {
                if ((lin.lora != null || lin.ia3 != null) && !lin.merged) throw new IllegalStateException(lin.name + ": an unmerged adapter cannot be saved in a q8 checkpoint");
                putQ8(e, w, lin.name + ".weight", lin.weight);
            }
            put(e, p + "input_layernorm.weight", l.inputNorm, false, c.hidden());
            put(e, p + "post_attention_layernorm.weight", l.postAttnNorm, false, c.hidden());
            put(e, p + "pre_feedforward_layernorm.weight", l.preFfNorm, false, c.hidden());
            put(e, p + "post_feedforward_layernorm.weight", l.postFfNorm, false, c.hidden());
            put(e, p + "self_attn.q_norm.weight", l.qNorm, false, c.headDim());
            put(e, p + "self_attn.k_norm.weight", l.kNorm, false, c.headDim());
        }
        put(e, "model.norm.weight", w.finalNorm, false, c.hidden());
        if (w.lmHead != w.embed) putQ8(e, w, "lm_head.weight", w.lmHead);
        Files.createDirectories(out);
        SafeTensors.write(out.resolve("model.safetensors"), e, Map.of("peft4j_quantization", "q8_0"));
        ObjectMapper om = new ObjectMapper();
        ObjectNode cfg = (ObjectNode) om.readTree(m.dir.resolve("config.json").toFile());
        if (c.multimodal()) {
            ObjectNode text = (ObjectNode) cfg.get("text_config").deepCopy();
            text.put("model_type", "gemma3_text");
            text.putArray("architectures").add("Gemma3ForCausalLM");
            cfg = text;
        }
        ObjectNode q = cfg.putObject("quantization_config");
        q.put("quant_method", Q8_METHOD);
        q.put("format", "q8_0");
        q.put("block_size", dev.peft4j.tensor.DType.Q8_BLOCK);
        q.put("layout", "U8 [rows, cols/32*34]: per block of 32 weights of a row, fp16 scale d (little-endian) then 32 int8 q; w = d*q (llama.cpp block_q8_0)");
        q.putArray("quantized").add("model.embed_tokens").add("lm_head").add("model.layers.*.self_attn.{q,k,v,o}_proj").add("model.layers.*.mlp.{gate,up,down}_proj");
        AtomicFiles.writeString(out.resolve("config.json"), om.writerWithDefaultPrettyPrinter().writeValueAsString(cfg) + "\n");
        for (String f : new String[]{"generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"}) {
            Path src = m.dir.resolve(f);
            if (Files.isRegularFile(src) && !src.toAbsolutePath().equals(out.resolve(f).toAbsolutePath())) {
                AtomicFiles.write(out.resolve(f), Files.readAllBytes(src));
            }
        }
    }

    private static void putQ8(Map<String, SafeTensors.Entry> e, Gemma3Weights w, String name, dev.peft4j.tensor.Matrix m) {
        e.put(name, SafeTensors.Entry.u8(w.q8Bytes(m), m.rows, dev.peft4j.tensor.DType.Q8_0.storageBytes(m.cols)));
    }

    private static void put(Map<String, SafeTensors.Entry> e, String name, float[] v, boolean bf16, long... shape) {
        e.put(name, bf16 ? SafeTensors.Entry.bf16(v, shape) : SafeTensors.Entry.f32(v, shape));
    }
}
