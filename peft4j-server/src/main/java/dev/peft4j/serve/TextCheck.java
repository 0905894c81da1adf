package dev.peft4j.serve;

import java.util.Arrays;
import java.util.List;
import java.util.function.Function;

/**
 * The text of a completion as tokens come: decodes them (special tokens skipped), finds the first stop string (the text is
 * cut before it, as OpenAI does), and says how much is safe to show now: not a tail that could still become a stop string,
 * nor a character whose UTF-8 bytes are split over tokens (U+FFFD).
 *
 * <p>Decoding is incremental, as vLLM's {@code detokenize_incrementally}: each token decodes a short window, the tokens
 * from {@code prefixOffset} on, and keeps what goes beyond the window's first part ({@code prefixOffset..readOffset}), so a
 * token costs the same whatever the length of the text (a full decode per token made a long completion quadratic). Both
 * decodes start at the same token, so a decoder that treats a text's first token apart (a stripped leading space) treats
 * them alike. The text is the full decode of the tokens for decoders that concatenate (Gemma's: byte fallback, fuse); a
 * window whose decode does not extend its first part's is decoded again in full.
 */
final class TextCheck {
    record Result(String safe, boolean stopped) {}

    private final Function<int[], String> tok;     // ids -> text, special tokens skipped
    private final List<String> stops;
    private String finalText = "";
    /** Text of the tokens before {@link #readOffset}; it never ends inside a character. */
    private final StringBuilder done = new StringBuilder();
    private int prefixOffset, readOffset;
    /** Windows decoded again in full (a decoder that does not concatenate). */
    int fullDecodes;

    TextCheck(Function<int[], String> tok, List<String> stops) {
        this.tok = tok;
        this.stops = stops;
    }

    /** Takes all the tokens generated so far (those of the previous call and new ones). */
    Result add(int[] generated) {
        String text = tok == null ? "" : decode(generated);
        Result r = rules(text, stops);
        finalText = r.stopped() ? r.safe() : text;
        return r;
    }

    /**
     * The rules on a completion's whole text: cut before the first stop string (stopped), else what is safe to show (no
     * tail that could still become a stop string, no trailing U+FFFD).
     */
    static Result rules(String text, List<String> stops) {
        int cut = -1;
        for (String s : stops) {
            if (s.isEmpty()) continue;
            int k = text.indexOf(s);
            if (k >= 0 && (cut < 0 || k < cut)) cut = k;
        }
        if (cut >= 0) return new Result(text.substring(0, cut), true);
        int hold = 0;
        for (String s : stops) {
            for (int l = Math.min(s.length() - 1, text.length()); l > hold; l--) {
                if (text.endsWith(s.substring(0, l))) { hold = l; break; }
            }
        }
        String safe = text.substring(0, text.length() - hold);
        while (safe.endsWith("\uFFFD")) safe = safe.substring(0, safe.length() - 1);
        return new Result(safe, false);
    }

    /** The decoded text of {@code ids}: the confirmed part plus the current window's new text (which may end in U+FFFD). */
    private String decode(int[] ids) {
        int n = ids.length;
        String prefix = tok.apply(Arrays.copyOfRange(ids, prefixOffset, readOffset));
        String all = tok.apply(Arrays.copyOfRange(ids, prefixOffset, n));
        if (!all.startsWith(prefix)) {
            // not a decoder that concatenates: the whole text, and the window starts afresh after it
            String full = tok.apply(ids);
            fullDecodes++;
            if (!full.endsWith("\uFFFD")) {
                done.setLength(0);
                done.append(full);
                prefixOffset = Math.max(0, n - 1);   // one token of context for the next window
                readOffset = n;
            }
            return full;
        }
        String delta = all.substring(prefix.length());
        if (!delta.isEmpty() && !delta.endsWith("\uFFFD")) {
            done.append(delta);
            prefixOffset = readOffset;
            readOffset = n;
            return done.toString();
        }
        return done + delta;
    }

    String finalText() { return finalText; }
}
