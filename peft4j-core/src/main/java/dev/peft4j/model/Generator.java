package dev.peft4j.model;

import java.util.Arrays;
import java.util.function.IntConsumer;

/**
 * Autoregressive generation with a KV cache: prefill the prompt, then one token at a time until EOS, a stop string or the limit.
 * Greedy decoding can also run with prompt lookup (transformers' {@code prompt_lookup_num_tokens}, vLLM's n-gram speculative
 * decoding): draft tokens copied from where the last tokens occurred before in the text are checked in one forward pass
 * with the next token, and every draft the model agrees with is a token gained for the cost of one step (decoding one token
 * streams all the weights; checking a few more in the same pass costs little more). The tokens are exactly those of plain
 * greedy decoding: the products and attention give each row bitwise the same values whatever the rows beside it.
 */
public final class Generator {
    /**
     * The generated tokens and why generation stopped ({@code eos}, {@code stop} or {@code length}); with prompt lookup,
     * the draft tokens checked and how many of them the model confirmed.
     */
    public record Result(int[] tokens, String stopReason, int draftTokens, int acceptedTokens) {
        public Result(int[] tokens, String stopReason) { this(tokens, stopReason, 0, 0); }
    }

    /** Decodes ids to text for stop-string checks (may be null when no stop strings are used). */
    public interface Detokenizer { String decode(int[] ids); }

    /**
     * Most draft tokens checked per step: a step of up to 15 rows per sequence takes the attention path single-token decoding
     * takes (longer chunks take the blocked one, whose sums run in another order), so every row is bitwise what decoding
     * it alone gives. 7 fills the 8-row tile of the products exactly.
     */
    public static final int MAX_DRAFT = Gemma3Model.BLOCK_ATTENTION_MIN_ROWS - 2;

    /** Longest n-gram of the last tokens looked up in the text (transformers' {@code max_matching_ngram_size} default). */
    static final int LOOKUP_NGRAM = 2;

    private final CausalLM lm;

    public Generator(CausalLM lm) { this.lm = lm; }

    /**
     * Generates up to {@code maxNew} tokens after {@code prompt}. {@code onToken} sees each new token as it is produced.
     * Stops after an EOS id (which is included in the result), or when the decoded text contains a stop string
     * (the result then ends with the token that completed it).
     */
    public Result generate(int[] prompt, int maxNew, Sampler sampler, int[] eosIds, String[] stops, Detokenizer detok, IntConsumer onToken) {
        return generate(prompt, maxNew, sampler, eosIds, stops, detok, onToken, 0);
    }

    /**
     * As {@link #generate(int[], int, Sampler, int[], String[], Detokenizer, IntConsumer)}, with prompt lookup of up to
     * {@code lookup} draft tokens per step (at most {@link #MAX_DRAFT}) when the sampler is greedy (0: none). The tokens are the
     * same either way.
     */
    public Result generate(int[] prompt, int maxNew, Sampler sampler, int[] eosIds, String[] stops, Detokenizer detok, IntConsumer onToken, int lookup) {
        if (prompt.length == 0) throw new IllegalArgumentException("empty prompt");
        if (lookup < 0) throw new IllegalArgumentException("lookup: expected >= 0, got " + lookup);
        if (lookup > 0 && !sampler.options().isGreedy()) throw new IllegalArgumentException("prompt lookup needs greedy decoding (temperature 0)");
        // the last generated token is never fed back, so prompt + maxNew - 1 positions must fit
        if (prompt.length + maxNew - 1 > lm.maxPositions()) {
            maxNew = Math.max(0, lm.maxPositions() - prompt.length + 1);
        }
        if (maxNew == 0) return new Result(new int[0], "length");
        CausalLM.Session s = lm.newSession();
        s.reserve(prompt.length + maxNew);
        Out out = new Out(prompt, maxNew, eosIds, stops, detok, onToken);
        int V = lm.vocabSize();
        int tok = sampler.next(s.append(prompt), out.hist, out.len);
        int drafted = 0, accepted = 0;
        while (!out.emit(tok)) {
            int[] draft = lookup > 0 ? lookup(out.hist, out.len, Math.min(Math.min(lookup, MAX_DRAFT), maxNew - out.produced - 1)) : EMPTY;
            if (draft.length == 0) {
                tok = sampler.next(s.append(new int[]{tok}), out.hist, out.len);
                continue;
            }
            // the token and the drafts in one pass: row i is the distribution after draft i (row 0: after the token)
            int base = s.length();
            int[] in = new int[1 + draft.length];
            in[0] = tok;
            System.arraycopy(draft, 0, in, 1, draft.length);
            float[] rows = s.appendAll(in);
            drafted += draft.length;
            int m = 0;
            boolean done = false;
            while (true) {
                int pick = sampler.next(rows, m * V, V, out.hist, out.len);
                if (m < draft.length && pick == draft[m]) {
                    m++;
                    accepted++;
                    if (out.emit(pick)) { done = true; break; }
                } else {
                    tok = pick;   // the model's own next token: fed at the next step
                    break;
                }
            }
            if (done) break;
            s.truncate(base + 1 + m);   // the token and the confirmed drafts stay; the rest never happened
        }
        return new Result(Arrays.copyOfRange(out.hist, prompt.length, out.len), out.reason, drafted, accepted);
    }

    private static final int[] EMPTY = new int[0];

    /**
     * Prompt lookup as transformers does it: for n from {@value #LOOKUP_NGRAM} down to 1, the first earlier occurrence of the
     * last n tokens that has tokens after it gives up to {@code max} of those as the draft.
     */
    static int[] lookup(int[] hist, int len, int max) {
        if (max <= 0) return EMPTY;
        for (int n = Math.min(LOOKUP_NGRAM, len - 1); n >= 1; n--) {
            search:
            for (int i = 0; i + n < len; i++) {   // the window at i; the last n tokens themselves have nothing after them
                for (int j = 0; j < n; j++) if (hist[i + j] != hist[len - n + j]) continue search;
                int from = i + n, to = Math.min(len, from + max);
                return Arrays.copyOfRange(hist, from, to);
            }
        }
        return EMPTY;
    }

    /** The generated tokens after the prompt, and the stop conditions. */
    private static final class Out {
        final int[] hist;
        final int promptLen, maxNew;
        final int[] eosIds;
        final String[] stops;
        final Detokenizer detok;
        final IntConsumer onToken;
        int len, produced;
        String reason = "length";

        Out(int[] prompt, int maxNew, int[] eosIds, String[] stops, Detokenizer detok, IntConsumer onToken) {
            this.hist = Arrays.copyOf(prompt, prompt.length + maxNew);
            this.len = this.promptLen = prompt.length;
            this.maxNew = maxNew;
            this.eosIds = eosIds;
            this.stops = stops;
            this.detok = detok;
            this.onToken = onToken;
        }

        /** Adds a generated token; true when generation ends with it (EOS, a stop string, or the limit). */
        boolean emit(int tok) {
            hist[len++] = tok;
            produced++;
            if (onToken != null) onToken.accept(tok);
            if (contains(eosIds, tok)) { reason = "eos"; return true; }
            if (stops != null && stops.length > 0 && detok != null) {
                String text = detok.decode(Arrays.copyOfRange(hist, promptLen, len));
                for (String st : stops) if (!st.isEmpty() && text.contains(st)) { reason = "stop"; return true; }
            }
            return produced == maxNew;
        }
    }

    static boolean contains(int[] a, int v) {
        if (a == null) return false;
        for (int x : a) if (x == v) return true;
        return false;
    }
}
