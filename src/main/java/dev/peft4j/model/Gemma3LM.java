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

    private KVCache newCache() { return prefix == null ? model.newCache() : prefix.copy(); }

    @Override
    public int vocabSize() { return model.config.vocabSize(); }

    @Override
    public int maxPositions() { return model.config.maxPositions() - nVirtual - prefixLength(); }

    @Override
    public List<float[]> logits(List<int[]> sequences, int[] from) {
        List<float[]> out = new ArrayList<>(sequences.size());
        int i = 0;
        while (i < sequences.size()) {
            int j = i, rows = 0;
            List<Gemma3Model.Input> batch = new ArrayList<>();
            while (j < sequences.size() && (j == i || rows + sequences.get(j).length + nVirtual <= maxRowsPerBatch)) {
                rows += sequences.get(j).length + nVirtual;
                batch.add(new Gemma3Model.Input(newCache(), virtual, sequences.get(j)));
                j++;
            }
            float[] hidden = model.forward(batch, null);
            int base = 0;
            List<Integer> want = new ArrayList<>();
            for (int s = i; s < j; s++) {
                int len = sequences.get(s).length;
                for (int t = from[s]; t < len; t++) want.add(base + nVirtual + t);
                base += len + nVirtual;
            }
            float[] lg = model.logits(hidden, want.stream().mapToInt(Integer::intValue).toArray());
            int V = vocabSize(), at = 0;
            for (int s = i; s < j; s++) {
                int n = sequences.get(s).length - from[s];
                float[] part = new float[Math.max(0, n) * V];
                System.arraycopy(lg, at * V, part, 0, part.length);
                at += Math.max(0, n);
                out.add(part);
            }
            i = j;
        }
        return out;
    }

    @Override
    public Session newSession() { return new Sess(newCache(), 0); }

    private final class Sess implements Session {
        private final KVCache cache;
        private int length;

        Sess(KVCache cache, int length) {
            this.cache = cache;
            this.length = length;
        }

        private float[] run(int[] tokens, boolean all) {
            if (tokens.length == 0) throw new IllegalArgumentException("append needs at least one token");
            float[] v = cache.length() == 0 ? virtual : null;
            float[] h = model.forward(List.of(new Gemma3Model.Input(cache, v, tokens)), null);
            int skip = v == null ? 0 : nVirtual;
            int[] rows;
            if (all) {
                rows = new int[tokens.length];
                for (int i = 0; i < rows.length; i++) rows[i] = skip + i;
            } else {
                rows = new int[]{skip + tokens.length - 1};
            }
            length += tokens.length;
            return model.logits(h, rows);
        }

        @Override public float[] append(int[] tokens) { return run(tokens, false); }
        @Override public float[] appendAll(int[] tokens) { return run(tokens, true); }
        @Override public int length() { return length; }
        @Override public Session fork() { return new Sess(cache.copy(), length); }
    }
}
