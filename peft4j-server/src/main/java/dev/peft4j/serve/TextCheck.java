package dev.peft4j.serve;

import java.util.List;
import java.util.function.Function;

/**
 * The text of a completion as tokens come: decodes them (special tokens skipped), finds the first stop string (the text is
 * cut before it, as OpenAI does), and says how much is safe to show now: not a tail that could still become a stop string,
 * nor a character whose UTF-8 bytes are split over tokens (U+FFFD).
 */
final class TextCheck {
    record Result(String safe, boolean stopped) {}

    private final Function<int[], String> tok;     // ids -> text, special tokens skipped
    private final List<String> stops;
    private String finalText = "";

    TextCheck(Function<int[], String> tok, List<String> stops) {
        this.tok = tok;
        this.stops = stops;
    }

    Result add(int[] generated) {
        String text = tok == null ? "" : tok.apply(generated);
        int cut = -1;
        for (String s : stops) {
            if (s.isEmpty()) continue;
            int k = text.indexOf(s);
            if (k >= 0 && (cut < 0 || k < cut)) cut = k;
        }
        if (cut >= 0) {
            finalText = text.substring(0, cut);
            return new Result(finalText, true);
        }
        finalText = text;
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

    String finalText() { return finalText; }
}
