package dev.peft4j.data;

import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.UserException;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * Turns records into {@link Tokenized} examples. Prompt and response are tokenized separately and concatenated:
 * {@code [BOS] + tok(prompt) + tok(response + suffix) + [EOS]}, so the loss boundary is exact and the prompt tokens are the
 * same ones a generation prompt gets. Labels are -100 on BOS and the prompt. When the response text already ends with the
 * EOS token (gemma-chat's {@code <end_of_turn>} with a tokenizer whose EOS is {@code <end_of_turn>}), EOS is not doubled.
 *
 * <p>An example longer than {@code maxSeqLen} is either dropped (Dolly drops them, so the end marker is never cut off)
 * or, with {@code truncate}, cut at {@code maxSeqLen} from the end (losing the tail of the response and EOS). When the
 * prompt alone leaves no room for a response token it is dropped either way.
 */
public final class Encoder {
    private Encoder() {}

    /** Encodes one record; returns null when it is too long and cannot (or may not) be truncated. */
    public static Tokenized encode(InstructionRecord r, Template t, Tokenizer tok, int maxSeqLen, boolean truncate) {
        return encode(r, t, s -> tok.encode(s, false), tok.bosId(), tok.eosId(), maxSeqLen, truncate);
    }

    /** Same, with the tokenizer given as a function (text -> ids without special tokens) and BOS/EOS ids. */
    public static Tokenized encode(InstructionRecord r, Template t, Function<String, int[]> tok, int bos, int eos,
                                   int maxSeqLen, boolean truncate) {
        if (maxSeqLen < 2) throw new UserException("--max-seq-len must be at least 2, got " + maxSeqLen);
        int[] p = tok.apply(t.renderPrompt(r));
        int[] a = tok.apply(t.renderResponse(r));
        int promptLen = 1 + p.length;
        boolean endsWithEos = a.length > 0 && a[a.length - 1] == eos; // e.g. gemma-chat's <end_of_turn> when that is EOS
        int full = promptLen + a.length + (endsWithEos ? 0 : 1);
        boolean truncated = false;
        int len = full;
        if (full > maxSeqLen) {
            if (!truncate || promptLen >= maxSeqLen) return null;
            len = maxSeqLen;
            truncated = true;
        }
        int[] ids = new int[len], labels = new int[len];
        for (int i = 0; i < len; i++) {
            int id = i == 0 ? bos : i < promptLen ? p[i - 1] : i < promptLen + a.length ? a[i - promptLen] : eos;
            ids[i] = id;
            labels[i] = i < promptLen ? Tokenized.IGNORE : id;
        }
        return new Tokenized(ids, labels, promptLen, truncated);
    }

    /**
     * Encodes all records, counting drops ({@link SkipReason#TOO_LONG}) and truncations into {@code summary}. With
     * {@code strict} a too-long example is a {@link UserException}. Fails when nothing is left.
     */
    public static List<Tokenized> encodeAll(List<InstructionRecord> records, Template t, Tokenizer tok, int maxSeqLen,
                                            boolean truncate, boolean strict, DataSummary summary, Consumer<String> warnings) {
        return encodeAll(records, t, s -> tok.encode(s, false), tok.bosId(), tok.eosId(), maxSeqLen, truncate, strict, summary, warnings);
    }

    public static List<Tokenized> encodeAll(List<InstructionRecord> records, Template t, Function<String, int[]> tok, int bos, int eos,
                                            int maxSeqLen, boolean truncate, boolean strict, DataSummary summary,
                                            Consumer<String> warnings) {
        List<Tokenized> out = new ArrayList<>(records.size());
        int warned = 0;
        for (InstructionRecord r : records) {
            Tokenized e = encode(r, t, tok, bos, eos, maxSeqLen, truncate);
            if (e == null) {
                String why = r.source() + ": example is longer than --max-seq-len " + maxSeqLen
                        + (truncate ? " even before its response" : " (use --truncate to cut it instead)");
                if (strict) throw new UserException(why + " (--strict)");
                if (summary != null) summary.moveToSkipped(SkipReason.TOO_LONG);
                if (warnings != null && ++warned <= DataOptions.MAX_WARNINGS) warnings.accept(why + "; skipped");
                continue;
            }
            if (e.truncated() && summary != null) summary.addTruncated();
            out.add(e);
        }
        if (warnings != null && warned > DataOptions.MAX_WARNINGS) {
            warnings.accept((warned - DataOptions.MAX_WARNINGS) + " more examples longer than --max-seq-len " + maxSeqLen + " skipped");
        }
        if (out.isEmpty() && !records.isEmpty()) {
            throw new UserException((summary != null ? summary.name() + ": " : "") + "all " + records.size()
                    + " examples are longer than --max-seq-len " + maxSeqLen);
        }
        return out;
    }
}
