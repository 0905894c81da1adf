package dev.peft4j.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.AtomicFiles;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Trains a small byte-fallback BPE tokenizer on a corpus and writes it as a Hugging Face {@code tokenizer.json}
 * (loadable by DJL / the Rust tokenizers library and by Python {@code transformers}) plus {@code tokenizer_config.json}.
 *
 * <p>Layout, modelled on Gemma's tokenizer: normalizer {@code Replace(" " -> "▁")}; pre-tokenizer {@code Split} with the
 * regex {@code ▁?[^▁\n]+|▁+|\n+} (behavior Isolated: a word with its leading space, runs of spaces, runs of newlines);
 * model {@code BPE} with {@code byte_fallback} (any character outside the vocabulary becomes {@code <0xXX>} byte tokens,
 * so every text round-trips); decoder {@code Replace("▁" -> " ") + ByteFallback + Fuse}.
 * Ids: {@code <pad>}=0, {@code <eos>}=1, {@code <bos>}=2, {@code <unk>}=3, {@code <start_of_turn>}=4, {@code <end_of_turn>}=5,
 * the 256 byte tokens {@code <0x00>..<0xFF>} = 6..261, then the corpus's characters (most frequent first), then one token
 * per merge.
 *
 * <p>Training is plain BPE: count the pre-tokenized words, then repeatedly merge the most frequent adjacent pair (ties:
 * the lexicographically smallest pair) until the vocabulary is full or no pair occurs twice. Deterministic.
 */
public final class TinyTokenizerBuilder {
    private TinyTokenizerBuilder() {}

    public static final List<String> SPECIALS = List.of("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>");
    static final String SPACE = "\u2581";
    static final String PRE_TOKENIZER_REGEX = SPACE + "?[^" + SPACE + "\\n]+|" + SPACE + "+|\\n+";
    private static final Pattern PRE = Pattern.compile(PRE_TOKENIZER_REGEX);
    private static final Pattern SPECIAL = Pattern.compile("<start_of_turn>|<end_of_turn>|<bos>|<eos>|<pad>|<unk>");

    /** The trained vocabulary (token -> id, in id order) and merges (in rank order). */
    public record Trained(Map<String, Integer> vocab, List<String[]> merges) {}

    public static Trained train(List<String> texts, int vocabSize) {
        Map<String, Integer> vocab = new LinkedHashMap<>();
        for (String s : SPECIALS) vocab.put(s, vocab.size());
        for (int b = 0; b < 256; b++) vocab.put(String.format(Locale.ROOT, "<0x%02X>", b), vocab.size());
        if (vocabSize < vocab.size()) throw new IllegalArgumentException("vocabSize must be at least " + vocab.size());

        // word counts (special tokens are cut out: they are matched before the model)
        Map<String, Integer> words = new TreeMap<>();
        Map<String, Integer> chars = new HashMap<>();
        for (String text : texts) {
            for (String part : SPECIAL.split(text)) {
                Matcher m = PRE.matcher(part.replace(" ", SPACE));
                while (m.find()) words.merge(m.group(), 1, Integer::sum);
            }
        }
        for (var e : words.entrySet()) e.getKey().codePoints().forEach(cp -> chars.merge(Character.toString(cp), e.getValue(), Integer::sum));
        List<String> alphabet = new ArrayList<>(chars.keySet());
        alphabet.sort(Comparator.<String>comparingInt(c -> -chars.get(c)).thenComparing(Comparator.naturalOrder()));
        for (String c : alphabet) if (vocab.size() < vocabSize) vocab.putIfAbsent(c, vocab.size());

        List<List<String>> syms = new ArrayList<>();
        List<Integer> freq = new ArrayList<>();
        for (var e : words.entrySet()) {
            List<String> s = new ArrayList<>();
            e.getKey().codePoints().forEach(cp -> s.add(Character.toString(cp)));
            syms.add(s);
            freq.add(e.getValue());
        }
        List<String[]> merges = new ArrayList<>();
        while (vocab.size() < vocabSize) {
            Map<String, Integer> pairs = new HashMap<>();
            for (int w = 0; w < syms.size(); w++) {
                List<String> s = syms.get(w);
                for (int i = 0; i + 1 < s.size(); i++) {
                    if (!vocab.containsKey(s.get(i)) || !vocab.containsKey(s.get(i + 1))) continue;
                    pairs.merge(s.get(i) + " " + s.get(i + 1), freq.get(w), Integer::sum);
                }
            }
            String best = null;
            int bestCount = 1;
            for (var e : pairs.entrySet()) {
                if (e.getValue() > bestCount || (e.getValue() == bestCount && best != null && e.getKey().compareTo(best) < 0)) {
                    best = e.getKey();
                    bestCount = e.getValue();
                }
            }
            if (best == null) break;
            String[] ab = best.split(" ", 2);
            String merged = ab[0] + ab[1];
            merges.add(ab);
            vocab.putIfAbsent(merged, vocab.size());
            for (List<String> s : syms) {
                for (int i = 0; i + 1 < s.size(); i++) {
                    if (s.get(i).equals(ab[0]) && s.get(i + 1).equals(ab[1])) {
                        s.set(i, merged);
                        s.remove(i + 1);
                    }
                }
            }
        }
        return new Trained(vocab, merges);
    }

    /** The {@code tokenizer.json} text for a trained model. */
    public static String tokenizerJson(Trained t) {
        ObjectMapper om = new ObjectMapper();
        ObjectNode root = om.createObjectNode();
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (String s : SPECIALS) {
            ObjectNode a = added.addObject();
            a.put("id", t.vocab().get(s));
            a.put("content", s);
            a.put("single_word", false);
            a.put("lstrip", false);
            a.put("rstrip", false);
            a.put("normalized", false);
            a.put("special", true);
        }
        ObjectNode norm = root.putObject("normalizer");
        norm.put("type", "Replace");
        norm.putObject("pattern").put("String", " ");
        norm.put("content", SPACE);
        ObjectNode pre = root.putObject("pre_tokenizer");
        pre.put("type", "Split");
        pre.putObject("pattern").put("Regex", PRE_TOKENIZER_REGEX);
        pre.put("behavior", "Isolated");
        pre.put("invert", false);
        ObjectNode post = root.putObject("post_processor");
        post.put("type", "TemplateProcessing");
        ArrayNode single = post.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", "<bos>").put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        ArrayNode pair = post.putArray("pair");
        pair.addObject().putObject("SpecialToken").put("id", "<bos>").put("type_id", 0);
        pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        pair.addObject().putObject("SpecialToken").put("id", "<bos>").put("type_id", 1);
        pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
        ObjectNode bos = post.putObject("special_tokens").putObject("<bos>");
        bos.put("id", "<bos>");
        bos.putArray("ids").add(t.vocab().get("<bos>"));
        bos.putArray("tokens").add("<bos>");
        ObjectNode dec = root.putObject("decoder");
        dec.put("type", "Sequence");
        ArrayNode decs = dec.putArray("decoders");
        ObjectNode rep = decs.addObject();
        rep.put("type", "Replace");
        rep.putObject("pattern").put("String", SPACE);
        rep.put("content", " ");
        decs.addObject().put("type", "ByteFallback");
        decs.addObject().put("type", "Fuse");
        ObjectNode model = root.putObject("model");
        model.put("type", "BPE");
        model.putNull("dropout");
        model.put("unk_token", "<unk>");
        model.putNull("continuing_subword_prefix");
        model.putNull("end_of_word_suffix");
        model.put("fuse_unk", true);
        model.put("byte_fallback", true);
        model.put("ignore_merges", false);
        ObjectNode vocab = model.putObject("vocab");
        t.vocab().forEach(vocab::put);
        ArrayNode merges = model.putArray("merges");
        for (String[] m : t.merges()) merges.add(m[0] + " " + m[1]);
        return write(om, root);
    }

    /** The matching {@code tokenizer_config.json}: BOS/EOS/PAD/UNK strings, {@code add_bos_token: true}. */
    public static String tokenizerConfigJson(Trained t, int modelMaxLength) {
        ObjectMapper om = new ObjectMapper();
        ObjectNode root = om.createObjectNode();
        root.put("add_bos_token", true);
        root.put("add_eos_token", false);
        ObjectNode dec = root.putObject("added_tokens_decoder");
        for (String s : SPECIALS) {
            ObjectNode a = dec.putObject(String.valueOf(t.vocab().get(s)));
            a.put("content", s);
            a.put("lstrip", false);
            a.put("normalized", false);
            a.put("rstrip", false);
            a.put("single_word", false);
            a.put("special", true);
        }
        root.put("bos_token", "<bos>");
        root.put("eos_token", "<eos>");
        root.put("pad_token", "<pad>");
        root.put("unk_token", "<unk>");
        root.putArray("additional_special_tokens").add("<start_of_turn>").add("<end_of_turn>");
        root.put("clean_up_tokenization_spaces", false);
        root.put("model_max_length", modelMaxLength);
        root.put("padding_side", "right");
        root.put("tokenizer_class", "PreTrainedTokenizerFast");
        return write(om, root);
    }

    private static String write(ObjectMapper om, ObjectNode root) {
        try {
            return om.writer(new DefaultPrettyPrinter()).writeValueAsString(root) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Trains on {@code texts} and writes {@code dir/tokenizer.json} and {@code dir/tokenizer_config.json} atomically. */
    public static Trained build(List<String> texts, int vocabSize, Path dir) {
        Trained t = train(texts, vocabSize);
        AtomicFiles.writeString(dir.resolve("tokenizer.json"), tokenizerJson(t));
        AtomicFiles.writeString(dir.resolve("tokenizer_config.json"), tokenizerConfigJson(t, 2048));
        return t;
    }
}
