package dev.peft4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.tensor.DType;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * The weights of a Gemma 3 text model, memory-mapped from {@code model.safetensors} or sharded files
 * ({@code model.safetensors.index.json}). Multimodal checkpoints' text weights ({@code language_model.model.*} or
 * {@code model.language_model.*}) are renamed to the text model's names. Norm weights are stored as w of (1 + w).
 */
public final class Gemma3Weights implements AutoCloseable {
    public final Gemma3Config config;
    public Matrix embed;          // [V, H]
    public Matrix lmHead;         // same object as embed when tied
    public float[] finalNorm;
    public final Layer[] layers;
    private final List<SafeTensors> files;

    public static final class Layer {
        public final Linear q, k, v, o, gate, up, down;
        public float[] inputNorm, postAttnNorm, preFfNorm, postFfNorm, qNorm, kNorm;

        Layer(Linear q, Linear k, Linear v, Linear o, Linear gate, Linear up, Linear down) {
            this.q = q; this.k = k; this.v = v; this.o = o; this.gate = gate; this.up = up; this.down = down;
        }

        public Linear[] linears() { return new Linear[]{q, k, v, o, gate, up, down}; }
    }

    private Gemma3Weights(Gemma3Config config, List<SafeTensors> files, Layer[] layers) {
        this.config = config;
        this.files = files;
        this.layers = layers;
    }

    /** The names of all linear modules, in PEFT's naming ({@code model.layers.i.self_attn.q_proj}, ...). */
    public List<Linear> linears() {
        List<Linear> l = new ArrayList<>();
        for (Layer layer : layers) l.addAll(Arrays.asList(layer.linears()));
        return l;
    }

    public long weightBytes() {
        long b = embed.bytes() + (lmHead != embed ? lmHead.bytes() : 0);
        for (Layer l : layers) for (Linear x : l.linears()) b += x.weight.bytes();
        return b;
    }

    public static Gemma3Weights load(Path dir, Gemma3Config cfg) {
        Map<String, SafeTensors.Tensor> all = new LinkedHashMap<>();
        List<SafeTensors> files = new ArrayList<>();
        Path single = dir.resolve("model.safetensors");
        Path index = dir.resolve("model.safetensors.index.json");
        if (Files.isRegularFile(index)) {
            JsonNode idx;
            try {
                idx = new ObjectMapper().readTree(index.toFile());
            } catch (IOException e) {
                throw new UserException(index + ": not valid JSON");
            }
            JsonNode wm = idx.path("weight_map");
            if (!wm.isObject()) throw new UserException(index + ": missing weight_map");
            TreeSet<String> shards = new TreeSet<>();
            wm.fields().forEachRemaining(e -> shards.add(e.getValue().asText()));
            for (String s : shards) files.add(SafeTensors.open(dir.resolve(s)));
        } else if (Files.isRegularFile(single)) {
            files.add(SafeTensors.open(single));
        } else {
            try (var ls = Files.list(dir)) {
                ls.filter(p -> p.getFileName().toString().matches("model-\\d+-of-\\d+\\.safetensors")).sorted()
                        .forEach(p -> files.add(SafeTensors.open(p)));
            } catch (IOException e) {
                throw new UserException(dir + ": cannot list directory");
            }
            if (files.isEmpty()) throw new UserException(dir + ": no model.safetensors, model.safetensors.index.json or model-0000K-of-0000N.safetensors found");
        }
        for (SafeTensors f : files) {
            for (var t : f.tensors().values()) {
                String n = canonical(t.name());
                if (n != null) all.put(n, t);
            }
        }
        int H = cfg.hidden(), D = cfg.headDim(), I = cfg.intermediate();
        Layer[] layers = new Layer[cfg.layers()];
        Gemma3Weights w = new Gemma3Weights(cfg, files, layers);
        w.embed = w.matrix(all, "model.embed_tokens.weight", cfg.vocabSize(), H);
        if (all.containsKey("lm_head.weight") && !cfg.tieEmbeddings()) {
            w.lmHead = w.matrix(all, "lm_head.weight", cfg.vocabSize(), H);
        } else {
            w.lmHead = w.embed;
        }
        w.finalNorm = vector(all, "model.norm.weight", H);
        for (int i = 0; i < cfg.layers(); i++) {
            String p = "model.layers." + i + ".";
            Layer l = new Layer(
                    w.lin(all, p + "self_attn.q_proj", cfg.heads() * D, H),
                    w.lin(all, p + "self_attn.k_proj", cfg.kvHeads() * D, H),
                    w.lin(all, p + "self_attn.v_proj", cfg.kvHeads() * D, H),
                    w.lin(all, p + "self_attn.o_proj", H, cfg.heads() * D),
                    w.lin(all, p + "mlp.gate_proj", I, H),
                    w.lin(all, p + "mlp.up_proj", I, H),
                    w.lin(all, p + "mlp.down_proj", H, I));
            l.inputNorm = vector(all, p + "input_layernorm.weight", H);
            l.postAttnNorm = vector(all, p + "post_attention_layernorm.weight", H);
            l.preFfNorm = vector(all, p + "pre_feedforward_layernorm.weight", H);
            l.postFfNorm = vector(all, p + "post_feedforward_layernorm.weight", H);
            l.qNorm = vector(all, p + "self_attn.q_norm.weight", D);
            l.kNorm = vector(all, p + "self_attn.k_norm.weight", D);
            layers[i] = l;
        }
        return w;
    }

    /** Maps checkpoint names to the text model's names; null for tensors of other towers (vision, projector). */
    static String canonical(String n) {
        if (n.startsWith("model.language_model.")) return "model." + n.substring("model.language_model.".length());
        if (n.startsWith("language_model.model.")) return "model." + n.substring("language_model.model.".length());
        if (n.startsWith("language_model.lm_head.")) return "lm_head." + n.substring("language_model.lm_head.".length());
        if (n.startsWith("model.vision_tower") || n.startsWith("vision_tower") || n.startsWith("model.multi_modal_projector")
                || n.startsWith("multi_modal_projector")) return null;
        return n;
    }

    private static SafeTensors.Tensor tensor(Map<String, SafeTensors.Tensor> all, String name) {
        SafeTensors.Tensor t = all.get(name);
        if (t == null) throw new UserException("checkpoint: tensor " + name + " is missing");
        return t;
    }

    private Matrix matrix(Map<String, SafeTensors.Tensor> all, String name, int rows, int cols) {
        SafeTensors.Tensor t = tensor(all, name);
        if (t.dtype() == DType.U8) {   // a q8 checkpoint (peft4j quantize): rows of llama.cpp block_q8_0 bytes
            long rowBytes = cols % DType.Q8_BLOCK == 0 ? DType.Q8_0.storageBytes(cols) : -1;
            if (t.shape().length != 2 || t.shape()[0] != rows || t.shape()[1] != rowBytes) {
                throw new UserException(t.file() + ": tensor " + name + " is U8 of shape " + t.shapeString() + "; a Q8_0 weight of ["
                        + rows + ", " + cols + "] is stored as U8 [" + rows + ", " + rowBytes + "] (" + Q8_NOTE + ")");
            }
            Matrix m = Matrix.mapped(rows, cols, DType.Q8_0, t.data());
            q8Bytes.put(m, t.data());
            return m;
        }
        if (t.shape().length != 2 || t.shape()[0] != rows || t.shape()[1] != cols) {
            throw new UserException(t.file() + ": tensor " + name + " has shape " + t.shapeString() + " but the config needs [" + rows + ", " + cols + "]");
        }
        return t.matrix();
    }

    /** How a q8 checkpoint stores a weight, for error messages. */
    static final String Q8_NOTE = "per row, cols/32 blocks of a little-endian fp16 scale and 32 int8 values";

    private Linear lin(Map<String, SafeTensors.Tensor> all, String module, int out, int in) {
        return new Linear(module, matrix(all, module + ".weight", out, in));
    }

    private static float[] vector(Map<String, SafeTensors.Tensor> all, String name, int n) {
        SafeTensors.Tensor t = tensor(all, name);
        if (t.shape().length != 1 || t.shape()[0] != n) {
            throw new UserException(t.file() + ": tensor " + name + " has shape " + t.shapeString() + " but the config needs [" + n + "]");
        }
        return t.toFloats();
    }

    /** Off-heap memory of weights quantized at load time (null until {@link #quantizeQ8}). */
    private java.lang.foreign.Arena quantArena;

    /**
     * Quantizes every linear's weight and the embedding (the output head too: one copy when tied, else its own) to Q8_0 in
     * off-heap memory owned by these weights; norms and adapters stay float32. Weights already in Q8_0 are kept. Merged
     * adapters (heap float32 weights) are quantized as they are.
     */
    public synchronized void quantizeQ8() {
        if (quantArena == null) quantArena = java.lang.foreign.Arena.ofShared();
        List<Matrix> src = new ArrayList<>();
        java.util.Set<Matrix> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (Matrix m : quantizable()) if (m.dtype != DType.Q8_0 && seen.add(m)) src.add(m);
        if (src.isEmpty()) return;
        for (Matrix m : src) {
            if (m.cols % DType.Q8_BLOCK != 0) {
                throw new UserException("--quantize q8: a weight of shape [" + m.rows + ", " + m.cols + "] does not split into blocks of " + DType.Q8_BLOCK + " columns");
            }
        }
        // the largest first, spread over the threads (the quantizer itself runs on one)
        src.sort((a, b) -> Long.compare((long) b.rows * b.cols, (long) a.rows * a.cols));
        java.lang.foreign.MemorySegment[] out = new java.lang.foreign.MemorySegment[src.size()];
        java.util.concurrent.atomic.AtomicInteger next = new java.util.concurrent.atomic.AtomicInteger();
        final java.lang.foreign.Arena arena = quantArena;
        dev.peft4j.tensor.Parallel.forRange(dev.peft4j.tensor.Parallel.threads(), 1, (a, b) -> {
            for (int i; (i = next.getAndIncrement()) < out.length; ) out[i] = Matrix.quantizeQ8(src.get(i), arena);
        });
        java.util.Map<Matrix, Matrix> q = new java.util.IdentityHashMap<>();
        for (int i = 0; i < out.length; i++) {
            Matrix m = Matrix.mapped(src.get(i).rows, src.get(i).cols, DType.Q8_0, out[i]);
            q.put(src.get(i), m);
            q8Bytes.put(m, out[i]);
        }
        embed = q.getOrDefault(embed, embed);
        lmHead = q.getOrDefault(lmHead, lmHead);
        for (Linear l : linears()) l.weight = q.getOrDefault(l.weight, l.weight);
    }

    /**
     * Builds the panel-packed copies the matrix products stream ({@link Matrix#prepare}) for every linear and the output head,
     * so that the first request does not pay for them.
     */
    /** The matrices one decoding step streams: every linear and the output head. */
    public List<Matrix> decodeMatrices() {
        List<Matrix> m = new ArrayList<>();
        for (Linear l : linears()) m.add(l.weight);
        m.add(lmHead);
        return m;
    }

    public void prepare() {
        for (Linear l : linears()) l.weight.prepare();
        lmHead.prepare();
    }

    /** The matrices that 8-bit quantization covers: the embedding, the output head (when separate) and every linear. */
    private List<Matrix> quantizable() {
        List<Matrix> m = new ArrayList<>();
        m.add(embed);
        m.add(lmHead);
        for (Linear l : linears()) m.add(l.weight);
        return m;
    }

    /** The stored bytes (llama.cpp block_q8_0 rows) of a Q8_0 weight of these weights, for writing a q8 checkpoint. */
    public java.lang.foreign.MemorySegment q8Bytes(Matrix m) {
        java.lang.foreign.MemorySegment s = q8Bytes.get(m);
        if (s == null) throw new IllegalArgumentException("not a Q8_0 weight of this model");
        return s;
    }

    /** Q8_0 weights and their bytes (quantized at load, or mapped from a q8 checkpoint). */
    private final java.util.Map<Matrix, java.lang.foreign.MemorySegment> q8Bytes = new java.util.IdentityHashMap<>();

    @Override
    public void close() {
        for (SafeTensors f : files) f.close();
        if (quantArena != null) quantArena.close();
    }
}
