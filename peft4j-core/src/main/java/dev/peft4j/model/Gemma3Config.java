package dev.peft4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The text model's hyper-parameters, read from a Hugging Face {@code config.json} in the transformers v4 format
 * ({@code rope_theta}, {@code rope_local_base_freq}, {@code rope_scaling}, {@code sliding_window_pattern}) or the v5 format
 * ({@code rope_parameters} per layer type), for {@code gemma3_text} and for multimodal {@code gemma3} checkpoints (their
 * {@code text_config}, with Gemma3TextConfig's defaults for what it leaves out).
 */
public record Gemma3Config(
        int vocabSize, int hidden, int intermediate, int layers, int heads, int kvHeads, int headDim,
        int slidingWindow, double queryPreAttnScalar, double rmsEps, boolean[] sliding,
        double ropeThetaFull, double ropeFactorFull, double ropeThetaSliding, double ropeFactorSliding,
        Double finalLogitSoftcap, int maxPositions, boolean tieEmbeddings,
        int bosId, int[] eosIds, int padId, String torchDtype, boolean multimodal) {

    public boolean isSliding(int layer) { return sliding[layer]; }

    public static Gemma3Config read(Path file) {
        if (!Files.isRegularFile(file)) throw new UserException(file + ": config.json not found");
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new UserException(file + ": not valid JSON (" + e.getMessage().split("\n")[0] + ")");
        }
        if (root == null || !root.isObject()) throw new UserException(file + ": expected a JSON object");
        return parse(root, file.toString());
    }

    public static Gemma3Config parse(JsonNode root, String where) {
        String type = root.path("model_type").asText("");
        JsonNode c;
        boolean mm;
        if (type.equals("gemma3_text")) {
            c = root;
            mm = false;
        } else if (type.equals("gemma3")) {
            c = root.path("text_config");
            if (!c.isObject()) throw new UserException(where + ": model_type gemma3 needs a text_config object");
            mm = true;
        } else {
            throw new UserException(where + ": unsupported model_type '" + type + "' (expected gemma3_text or gemma3)");
        }
        String act = text(c, "hidden_activation", text(c, "hidden_act", "gelu_pytorch_tanh"));
        if (!act.equals("gelu_pytorch_tanh") && !act.equals("gelu_tanh")) {
            throw new UserException(where + ": hidden_activation '" + act + "' is not supported (expected gelu_pytorch_tanh)");
        }
        // Multimodal text_configs rely on Gemma3TextConfig defaults; a gemma3_text config must state its shape.
        int hidden = mm ? intv(c, "hidden_size", 2304, where) : req(c, "hidden_size", where);
        int layers = mm ? intv(c, "num_hidden_layers", 26, where) : req(c, "num_hidden_layers", where);
        int heads = mm ? intv(c, "num_attention_heads", 8, where) : req(c, "num_attention_heads", where);
        int vocab = mm ? intv(c, "vocab_size", 262208, where) : req(c, "vocab_size", where);
        int inter = mm ? intv(c, "intermediate_size", 9216, where) : req(c, "intermediate_size", where);
        int kv = intv(c, "num_key_value_heads", mm ? 4 : heads, where);
        int headDim = intv(c, "head_dim", mm ? 256 : hidden / heads, where);
        if (heads % kv != 0) throw new UserException(where + ": num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kv);
        int window = intv(c, "sliding_window", 4096, where);
        double qpas = c.path("query_pre_attn_scalar").isNumber() ? c.get("query_pre_attn_scalar").asDouble() : 256;
        double eps = c.path("rms_norm_eps").isNumber() ? c.get("rms_norm_eps").asDouble() : 1e-6;
        boolean[] sliding = new boolean[layers];
        JsonNode lt = c.path("layer_types");
        if (lt.isArray()) {
            if (lt.size() != layers) throw new UserException(where + ": layer_types has " + lt.size() + " entries, num_hidden_layers is " + layers);
            for (int i = 0; i < layers; i++) {
                String s = lt.get(i).asText();
                if (!s.equals("sliding_attention") && !s.equals("full_attention")) {
                    throw new UserException(where + ": layer_types[" + i + "] is '" + s + "' (expected sliding_attention or full_attention)");
                }
                sliding[i] = s.equals("sliding_attention");
            }
        } else {
            int pattern = c.has("sliding_window_pattern") ? c.get("sliding_window_pattern").asInt()
                    : c.has("_sliding_window_pattern") ? c.get("_sliding_window_pattern").asInt() : 6;
            for (int i = 0; i < layers; i++) sliding[i] = pattern <= 0 || (i + 1) % pattern != 0;
        }
        double thetaFull = 1_000_000.0, factorFull = 1.0, thetaSl = 10_000.0, factorSl = 1.0;
        JsonNode rp = c.path("rope_parameters");
        boolean perType = rp.isObject() && rp.size() > 0;
        if (perType) {
            var it = rp.fieldNames();
            while (it.hasNext()) {
                String k = it.next();
                if (!k.equals("full_attention") && !k.equals("sliding_attention")) { perType = false; break; }
            }
        }
        if (perType) {
            JsonNode f = rp.path("full_attention"), s = rp.path("sliding_attention");
            thetaFull = f.path("rope_theta").asDouble(thetaFull);
            factorFull = ropeFactor(f, where + ": rope_parameters.full_attention");
            thetaSl = s.path("rope_theta").asDouble(thetaSl);
            factorSl = ropeFactor(s, where + ": rope_parameters.sliding_attention");
        } else if (rp.isObject() && rp.size() > 0) {
            // one global dict (generic v5): applies to full layers; sliding layers keep their own base
            thetaFull = rp.path("rope_theta").asDouble(c.path("rope_theta").asDouble(thetaFull));
            factorFull = ropeFactor(rp, where + ": rope_parameters");
            thetaSl = c.path("rope_local_base_freq").asDouble(thetaSl);
        } else {
            thetaFull = c.path("rope_theta").asDouble(thetaFull);
            thetaSl = c.path("rope_local_base_freq").asDouble(thetaSl);
            JsonNode rs = c.path("rope_scaling");
            if (rs.isObject()) factorFull = ropeFactor(rs, where + ": rope_scaling");
        }
        Double cap = c.path("final_logit_softcapping").isNumber() ? c.get("final_logit_softcapping").asDouble() : null;
        int maxPos = intv(c, "max_position_embeddings", 131072, where);
        boolean tie = root.path("tie_word_embeddings").asBoolean(c.path("tie_word_embeddings").asBoolean(true));
        int bos = c.path("bos_token_id").asInt(root.path("bos_token_id").asInt(2));
        int pad = c.path("pad_token_id").asInt(root.path("pad_token_id").asInt(0));
        int[] eos = eosIds(c.has("eos_token_id") ? c.get("eos_token_id") : root.path("eos_token_id"));
        String dtype = text(c, "torch_dtype", text(c, "dtype", text(root, "torch_dtype", text(root, "dtype", "float32"))));
        return new Gemma3Config(vocab, hidden, inter, layers, heads, kv, headDim, window, qpas, eps, sliding,
                thetaFull, factorFull, thetaSl, factorSl, cap, maxPos, tie, bos, eos, pad, dtype, mm);
    }

    static int[] eosIds(JsonNode n) {
        if (n == null || n.isMissingNode() || n.isNull()) return new int[]{1};
        if (n.isArray()) {
            int[] r = new int[n.size()];
            for (int i = 0; i < r.length; i++) r[i] = n.get(i).asInt();
            return r;
        }
        return new int[]{n.asInt()};
    }

    private static double ropeFactor(JsonNode r, String where) {
        String t = r.path("rope_type").asText(r.path("type").asText("default"));
        return switch (t) {
            case "default" -> 1.0;
            case "linear" -> r.path("factor").asDouble(1.0);
            default -> throw new UserException(where + ": rope_type '" + t + "' is not supported (expected default or linear)");
        };
    }

    private static String text(JsonNode c, String k, String d) {
        JsonNode n = c.get(k);
        return n == null || n.isNull() ? d : n.asText();
    }

    private static int req(JsonNode c, String k, String where) {
        JsonNode n = c.get(k);
        if (n == null || n.isNull()) throw new UserException(where + ": required field '" + k + "' is missing");
        if (!n.canConvertToInt() || n.asInt() <= 0) throw new UserException(where + ": field '" + k + "' must be a positive integer, got " + n);
        return n.asInt();
    }

    private static int intv(JsonNode c, String k, int d, String where) {
        JsonNode n = c.get(k);
        if (n == null || n.isNull()) return d;
        if (!n.canConvertToInt() || n.asInt() <= 0) throw new UserException(where + ": field '" + k + "' must be a positive integer, got " + n);
        return n.asInt();
    }

    /** Reads {@code generation_config.json} EOS ids (may be a list) if present, else the config's. */
    public int[] generationEos(Path modelDir) {
        Path g = modelDir.resolve("generation_config.json");
        if (Files.isRegularFile(g)) {
            try {
                JsonNode n = new ObjectMapper().readTree(g.toFile());
                if (n.has("eos_token_id")) return eosIds(n.get("eos_token_id"));
            } catch (IOException e) {
                throw new UserException(g + ": not valid JSON");
            }
        }
        return eosIds;
    }
}
