package dev.peft4j.tokenizer;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

/**
 * A Hugging Face {@code tokenizer.json} (through DJL's binding of the Rust tokenizers library, so ids match Python exactly)
 * plus the special tokens of {@code tokenizer_config.json}. {@link #encode(String, boolean)} never adds special tokens on its
 * own: the caller decides about BOS, as lm-eval and PEFT do.
 */
public final class Tokenizer implements AutoCloseable {
    private final HuggingFaceTokenizer hf;
    private final int bos, eos, pad;
    private final String bosToken, eosToken, padToken;
    private final boolean addBos;
    private final Map<String, Integer> specialIds = new java.util.concurrent.ConcurrentHashMap<>();

    private Tokenizer(HuggingFaceTokenizer hf, JsonNode cfg) {
        this.hf = hf;
        this.bosToken = tokenString(cfg, "bos_token", "<bos>");
        this.eosToken = tokenString(cfg, "eos_token", "<eos>");
        this.padToken = tokenString(cfg, "pad_token", "<pad>");
        this.addBos = cfg == null || !cfg.has("add_bos_token") || cfg.get("add_bos_token").asBoolean(true);
        this.bos = idOf(bosToken);
        this.eos = idOf(eosToken);
        this.pad = idOf(padToken);
    }

    /** Loads {@code dir/tokenizer.json} and, if present, {@code dir/tokenizer_config.json}. */
    public static Tokenizer load(Path dir) {
        Path json = dir.resolve("tokenizer.json");
        if (!Files.isRegularFile(json)) {
            throw new UserException(json + ": tokenizer.json not found (expected a Hugging Face tokenizer file in " + dir + ")");
        }
        JsonNode cfg = null;
        Path cfgPath = dir.resolve("tokenizer_config.json");
        if (Files.isRegularFile(cfgPath)) {
            try {
                cfg = new ObjectMapper().readTree(cfgPath.toFile());
            } catch (IOException e) {
                throw new UserException(cfgPath + ": not valid JSON (" + e.getMessage().split("\n")[0] + ")");
            }
        }
        try {
            Map<String, String> opts = new HashMap<>();
            opts.put("addSpecialTokens", "false");
            opts.put("truncation", "false");
            opts.put("padding", "false");
            opts.put("maxLength", "1000000");
            HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(json, opts);
            return new Tokenizer(hf, cfg);
        } catch (IOException | RuntimeException e) {
            throw new UserException(json + ": cannot load tokenizer (" + String.valueOf(e.getMessage()).split("\n")[0] + ")");
        }
    }

    private static String tokenString(JsonNode cfg, String key, String dflt) {
        if (cfg == null || !cfg.has(key) || cfg.get(key).isNull()) return dflt;
        JsonNode n = cfg.get(key);
        if (n.isTextual()) return n.asText();
        if (n.has("content")) return n.get("content").asText();
        return dflt;
    }

    /** Id of a single token string (special or not), or -1 if it is not one token of the vocabulary. */
    public int idOf(String token) {
        Integer cached = specialIds.get(token);
        if (cached != null) return cached;
        long[] ids = hf.encode(token, false, false).getIds();
        int id = ids.length == 1 ? (int) ids[0] : -1;
        specialIds.put(token, id);
        return id;
    }

    /** Token ids of {@code text}; BOS is prepended only when {@code withBos}. */
    public int[] encode(String text, boolean withBos) {
        Encoding e = hf.encode(text, false, false);
        long[] ids = e.getIds();
        int off = withBos ? 1 : 0;
        int[] out = new int[ids.length + off];
        if (withBos) out[0] = bos;
        for (int i = 0; i < ids.length; i++) out[i + off] = (int) ids[i];
        return out;
    }

    /** Decodes ids; special tokens are kept when {@code skipSpecial} is false. */
    public String decode(int[] ids, boolean skipSpecial) {
        long[] l = Arrays.stream(ids).asLongStream().toArray();
        return hf.decode(l, skipSpecial);
    }

    public String decode(int[] ids) { return decode(ids, false); }

    public int bosId() { return bos; }
    public int eosId() { return eos; }
    public int padId() { return pad; }
    public String bosToken() { return bosToken; }
    public String eosToken() { return eosToken; }
    /** Whether the tokenizer config asks for BOS at the start of a text (Gemma: true). */
    public boolean addsBos() { return addBos; }

    /** Gemma's chat format for one user turn, ending where the model's answer starts (BOS not included). */
    public static String chatPrompt(String user) {
        return ChatTemplate.user(user);
    }

    @Override
    public void close() { hf.close(); }
}
