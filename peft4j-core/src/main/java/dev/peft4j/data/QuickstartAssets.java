package dev.peft4j.data;

import dev.peft4j.tokenizer.TinyTokenizerBuilder;
import dev.peft4j.util.AtomicFiles;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Files the project ships for {@code peft4j quickstart}, so it runs with no download: {@code dolly-mini.jsonl}
 * (76 short instruction/response records in Dolly's format, written for this project, covering Dolly's eight
 * categories) and a tiny BPE tokenizer ({@code tokenizer/}, {@value #VOCAB_SIZE} tokens, built from that data with
 * {@link TinyTokenizerBuilder} — {@link #main} rebuilds it).
 */
public final class QuickstartAssets {
    private QuickstartAssets() {}

    public static final int VOCAB_SIZE = 1024;
    public static final String DATA = "dolly-mini.jsonl";
    private static final String BASE = "/quickstart/";
    private static final List<String> TOKENIZER_FILES = List.of("tokenizer.json", "tokenizer_config.json");

    /** Bytes of a shipped file, e.g. {@code "dolly-mini.jsonl"} or {@code "tokenizer/tokenizer.json"}. */
    public static byte[] resource(String name) {
        try (InputStream in = QuickstartAssets.class.getResourceAsStream(BASE + name)) {
            if (in == null) throw new IllegalStateException("resource " + BASE + name + " missing from the build");
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Writes {@code dir/dolly-mini.jsonl} and {@code dir/tokenizer/{tokenizer.json,tokenizer_config.json}} (atomically)
     * and returns {@code dir}. Load them with {@code InstructionDataset.load(dir.resolve(DATA), ...)} and
     * {@code Tokenizer.load(dir.resolve("tokenizer"))}.
     */
    public static Path copyTo(Path dir) {
        AtomicFiles.write(dir.resolve(DATA), resource(DATA));
        for (String f : TOKENIZER_FILES) AtomicFiles.write(dir.resolve("tokenizer").resolve(f), resource("tokenizer/" + f));
        return dir;
    }

    /** The texts the tokenizer is trained on: every record rendered with each built-in template. */
    public static List<String> corpus(List<InstructionRecord> records) {
        List<String> texts = new ArrayList<>();
        for (String name : Templates.NAMES) {
            Template t = Templates.byName(name);
            for (InstructionRecord r : records) texts.add(t.renderPrompt(r) + t.renderResponse(r));
        }
        return texts;
    }

    /** Rebuilds the shipped tokenizer: {@code QuickstartAssets DATA.jsonl OUT_DIR}. */
    public static void main(String[] args) {
        List<InstructionRecord> recs = InstructionDataset.load(Path.of(args[0]), DataOptions.defaults().withStrict(true)).records();
        TinyTokenizerBuilder.Trained t = TinyTokenizerBuilder.build(corpus(recs), VOCAB_SIZE, Path.of(args[1]));
        System.out.println("wrote " + args[1] + ": " + t.vocab().size() + " tokens, " + t.merges().size() + " merges");
    }
}
