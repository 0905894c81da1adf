package dev.peft4j.model;

import java.util.ArrayList;
import java.util.List;

/**
 * A {@link CausalLM} over a {@link Gemma3Model}, with optional prompt-tuning virtual tokens that are prepended to every
 * sequence, or a prefix-tuning cache every sequence starts from (both are invisible to the caller: positions and logits
 * refer to the caller's tokens only).
 */
public final class Gemma3LM implements CausalLM {
    public final Gemma3Model model;
    private final float[] virtual;      // [n, H] or null
    private final int nVirtual;
    private final KVCache prefix;       // prefilled keys/values (prefix tuning) or null
    /** Sequences per forward call in {@link #logits}; rows are stacked for the matrix products. */
    private final int maxRowsPerBatch;

    public Gemma3LM(Gemma3Model model, float[] virtual) {
        this(model, virtual, null);
    }

    /** @param prefix a cache holding prefix-tuning keys/values; each sequence starts from a copy of it */
    public Gemma3LM(Gemma3Model model, float[] virtual, KVCache prefix) {
        this.model = model;
        this.virtual = virtual;
        this.prefix = prefix;
        this.nVirtual = virtual == null ? 0 : virtual.length / model.config.hidden();
        this.maxRowsPerBatch = 2048;
    }

    public int virtualTokens() { return nVirtual; }
    public float[] virtualVectors() { return virtual; }
    /** Prefix-tuning positions every sequence starts after (0 without a prefix). */
    public int prefixLength() { return prefix == null ? 0 : prefix.length(); }

    /** An empty cache for one sequence of this model (a copy of the prefix-tuning cache when there is one). */
    public KVCache newCache() { return prefix == null ? model.newCache() : prefix.copy(); }

    @Override
    public int vocabSize() { return model.config.vocabSize(); }

    @Override
    public int maxPositions() { return model.config.maxPositions() - nVirtual - prefixLength(); }

    /** Shared prefixes shorter than this are recomputed rather than copied from the previous batch's cache. */
    private static final int MIN_SHARED_PREFIX = 16;
    /** The tokens and cache of the longest sequence of the previous {@link #logits} batch, for prefix reuse. */
    private int[] anchorTokens;
    /** Rows run through the model by {@link #logits} (tests check that shared prefixes are not recomputed). */
    long rowsComputed;
    private KVCache anchorCache;

    /**
     * Scores full sequences. Consecutive requests often share a long prefix (a few-shot preamble, the context of several
     * choices): the cache of the previous batch's longest sequence is kept, and a sequence that starts with at least
     * {@value #MIN_SHARED_PREFIX} of its tokens only runs the rest. The shared tokens are identical, so results are unchanged.
     */
    @Override
    public synchronized List<float[]> logits(List<int[]> sequences, int[] from) {
        List<float[]> out = new ArrayList<>(sequences.size());
        int V = vocabSize();
        int i = 0;
        while (i < sequences.size()) {
            int j = i, rows = 0;
            List<Gemma3Model.Input> batch = new ArrayList<>();
            int[] skip = new int[sequences.size()];      // caller tokens not run (reused from the anchor)
            int[] offset = new int[sequences.size()];    // rows before the caller's first run token (virtual tokens)
            // a sequence that starts a new shared prefix runs alone first, so the rest of its batch can reuse its cache
            int[] first = sequences.get(i);
            boolean firstFresh = anchorTokens == null || commonPrefix(anchorTokens, first, Math.min(from[i], first.length - 1)) < MIN_SHARED_PREFIX;
            boolean sharesWithNext = i + 1 < sequences.size()
                    && commonPrefix(first, sequences.get(i + 1), Math.min(from[i + 1], sequences.get(i + 1).length - 1)) >= MIN_SHARED_PREFIX;
            int limit = firstFresh && sharesWithNext ? i + 1 : sequences.size();
            while (j < limit && (j == i || rows + sequences.get(j).length + nVirtual <= maxRowsPerBatch)) {
                int[] seq = sequences.get(j);
                int lcp = anchorTokens == null ? 0 : commonPrefix(anchorTokens, seq, Math.min(from[j], seq.length - 1));
                KVCache reuse = lcp >= MIN_SHARED_PREFIX ? anchorCache.truncatedCopy(nVirtual + prefixLength() + lcp) : null;
                if (reuse != null) {
                    batch.add(new Gemma3Model.Input(reuse, null, java.util.Arrays.copyOfRange(seq, lcp, seq.length)));
                    skip[j] = lcp;
                    rows += seq.length - lcp;
                } else {
                    batch.add(new Gemma3Model.Input(newCache(), virtual, seq));
                    offset[j] = nVirtual;
                    rows += seq.length + nVirtual;
                }
                j++;
            }
            float[] hidden = model.forward(batch, null);
            rowsComputed += rows;
            int base = 0;
            List<Integer> want = new ArrayList<>();
            int longest = i;
            for (int s = i; s < j; s++) {
                int len = sequences.get(s).length;
                for (int t = from[s]; t < len; t++) want.add(base + offset[s] + t - skip[s]);
                base += offset[s] + len - skip[s];
                if (len > sequences.get(longest).length) longest = s;
            }
            anchorTokens = sequences.get(longest);
            anchorCache = batch.get(longest - i).cache();
            // each sequence's rows are consecutive in hidden: its logits go straight into its own array
            int at = 0;
            for (int s = i; s < j; s++) {
                int n = Math.max(0, sequences.get(s).length - from[s]);
                float[] part = new float[n * V];
                if (n > 0) {
                    int[] rowsOf = new int[n];
                    for (int t = 0; t < n; t++) rowsOf[t] = want.get(at + t);
                    model.logits(hidden, rowsOf, part);
                }
                at += n;
                out.add(part);
            }
            i = j;
        }
        return out;
    }

    private static int commonPrefix(int[] a, int[] b, int max) {
        int n = Math.min(Math.min(a.length, b.length), Math.max(0, max));
        int k = 0;
        while (k < n && a[k] == b[k]) k++;
        return k;
    }

    @Override
    public Session newSession() { return new Sess(newCache(), 0); }

    private final class Sess implements Session {
        private final KVCache cache;
        private int length;
        /** The logits row {@link #append} returns, reused by every append (decoding allocates no per-token arrays). */
        private float[] lastRow;
        private final int[] lastIndex = new int[1];

        Sess(KVCache cache, int length) {
            this.cache = cache;
            this.length = length;
        }

        private float[] run(int[] tokens, boolean all) {
            if (tokens.length == 0) throw new IllegalArgumentException("append needs at least one token");
            float[] v = cache.length() == 0 ? virtual : null;
            float[] h = model.forward(List.of(new Gemma3Model.Input(cache, v, tokens)), null);
            int skip = v == null ? 0 : nVirtual;
            length += tokens.length;
            if (all) {
                int[] rows = new int[tokens.length];
                for (int i = 0; i < rows.length; i++) rows[i] = skip + i;
                return model.logits(h, rows);
            }
            if (lastRow == null) lastRow = new float[vocabSize()];
            lastIndex[0] = skip + tokens.length - 1;
            return model.logits(h, lastIndex, lastRow);
        }

        @Override public float[] append(int[] tokens) { return run(tokens, false); }
        @Override public float[] appendAll(int[] tokens) { return run(tokens, true); }
        @Override public int length() { return length; }
        @Override public Session fork() { return new Sess(cache.copy(), length); }
        @Override public void reserve(int tokens) { cache.ensureCapacity(nVirtual + tokens); }
    }
}
