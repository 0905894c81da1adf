package dev.peft4j.model;

import java.util.Arrays;
import java.util.function.IntConsumer;

/** Autoregressive generation with a KV cache: prefill the prompt, then one token at a time until EOS, a stop string or the limit. */
public final class Generator {
    public record Result(int[] tokens, String stopReason) {}

    /** Decodes ids to text for stop-string checks (may be null when no stop strings are used). */
    public interface Detokenizer { String decode(int[] ids); }

    private final CausalLM lm;

    public Generator(CausalLM lm) { this.lm = lm; }

    /**
     * Generates up to {@code maxNew} tokens after {@code prompt}. {@code onToken} sees each new token as it is produced.
     * Stops after an EOS id (which is included in the result), or when the decoded text contains a stop string
     * (the result then ends with the token that completed it).
     */
    public Result generate(int[] prompt, int maxNew, Sampler sampler, int[] eosIds, String[] stops, Detokenizer detok, IntConsumer onToken) {
        if (prompt.length == 0) throw new IllegalArgumentException("empty prompt");
        // the last generated token is never fed back, so prompt + maxNew - 1 positions must fit
        if (prompt.length + maxNew - 1 > lm.maxPositions()) {
            maxNew = Math.max(0, lm.maxPositions() - prompt.length + 1);
        }
        CausalLM.Session s = lm.newSession();
        s.reserve(prompt.length + maxNew);
        int[] hist = Arrays.copyOf(prompt, prompt.length + Math.max(maxNew, 0));
        int len = prompt.length;
        if (maxNew == 0) return new Result(new int[0], "length");
        float[] logits = s.append(prompt);
        int produced = 0;
        String reason = "length";
        while (produced < maxNew) {
            int tok = sampler.next(logits, hist, len);
            hist[len++] = tok;
            produced++;
            if (onToken != null) onToken.accept(tok);
            if (contains(eosIds, tok)) { reason = "eos"; break; }
            if (stops != null && stops.length > 0 && detok != null) {
                String text = detok.decode(Arrays.copyOfRange(hist, prompt.length, len));
                boolean hit = false;
                for (String st : stops) if (!st.isEmpty() && text.contains(st)) { hit = true; break; }
                if (hit) { reason = "stop"; break; }
            }
            if (produced == maxNew) break;
            logits = s.append(new int[]{tok});
        }
        return new Result(Arrays.copyOfRange(hist, prompt.length, len), reason);
    }

    static boolean contains(int[] a, int v) {
        if (a == null) return false;
        for (int x : a) if (x == v) return true;
        return false;
    }
}
