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

    /** Shared prefixes shorter than this are recomputed rather than shared or copied from the previous call's cache. */
    private static final int MIN_SHARED_PREFIX = 16;
    /** The tokens and cache of the longest sequence of the previous {@link #logitRows} chunk, for prefix reuse across calls. */
    private int[] anchorTokens;
    /** Rows run through the model by {@link #logits} (tests check that shared prefixes are not recomputed). */
    long rowsComputed;
    private KVCache anchorCache;

    /** Copies of {@link #logitRows}' rows, one array per sequence. */
    @Override
    public List<float[]> logits(List<int[]> sequences, int[] from) {
        LogitRows r = logitRows(sequences, from);
        List<float[]> out = new ArrayList<>(sequences.size());
        for (int i = 0; i < sequences.size(); i++) out.add(r.copy(i));
        return out;
    }

    /**
     * Scores full sequences, computing every shared token once. Consecutive sequences that share at least
     * {@value #MIN_SHARED_PREFIX} leading tokens with the first of their group (the choices of one question, a common few-shot
     * preamble) form a group: the group's common prefix runs once, then each member runs only its own remaining tokens from a
     * copy of the prefix's cache, all groups' prefixes in one batched forward and all remainders in another. A group's
     * prefix also starts from the previous call's cache when it shares at least {@value #MIN_SHARED_PREFIX} tokens with it.
     * Only the rows asked for go through the output head, gathered into blocks of up to {@link #headBlockRows} rows per
     * head product; a row of a shared prefix is computed once and shared by the sequences that need it. Every token sees
     * exactly the same keys and values as in a separate run of its sequence, so results do not depend on the grouping.
     */
    @Override
    public synchronized LogitRows logitRows(List<int[]> sequences, int[] from) {
        final int n = sequences.size();
        if (from.length != n) throw new IllegalArgumentException(n + " sequences but " + from.length + " start positions");
        int[] fromC = new int[n];
        int[][] block = new int[n][], row = new int[n][];
        long wanted = 0;
        for (int i = 0; i < n; i++) {
            int len = sequences.get(i).length;
            fromC[i] = Math.max(0, Math.min(from[i], len));
            block[i] = new int[len - fromC[i]];
            row[i] = new int[len - fromC[i]];
            wanted += len - fromC[i];
        }
        // groups of consecutive sequences sharing a prefix with the group's first: {first, end (exclusive), prefix length}
        List<int[]> groups = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] s = sequences.get(i);
            if (!groups.isEmpty()) {
                int[] g = groups.getLast();
                int lcp = commonPrefix(sequences.get(g[0]), s, s.length);
                if (lcp >= MIN_SHARED_PREFIX) {
                    g[1] = i + 1;
                    g[2] = Math.min(g[2], lcp);
                    continue;
                }
            }
            groups.add(new int[]{i, i + 1, s.length});
        }
        Head head = new Head((int) Math.min(wanted, headBlockRows()));
        for (int gi = 0; gi < groups.size(); ) {
            int ge = gi, rows = 0;
            while (ge < groups.size()) {
                int[] g = groups.get(ge);
                int r = nVirtual + g[2];
                for (int i = g[0]; i < g[1]; i++) r += sequences.get(i).length - g[2];
                if (ge > gi && rows + r > maxRowsPerBatch) break;
                rows += r;
                ge++;
            }
            runChunk(sequences, fromC, groups.subList(gi, ge), head, block, row);
            gi = ge;
        }
        head.flush();
        return new LogitRows(vocabSize(), head.blocks.toArray(new float[0][]), block, row);
    }

    /** Rows per output-head product (and per logits block): 1024, fewer for a vocabulary so large a block would not fit an array. */
    private int headBlockRows() { return Math.max(1, Math.min(1024, Integer.MAX_VALUE / Math.max(1, vocabSize()))); }

    /** Hidden rows waiting for the output head, and the logits blocks made so far; row g of the call is row g % cap of block g / cap. */
    private final class Head {
        final int cap, H = model.config.hidden();
        final float[] pending;
        final List<float[]> blocks = new ArrayList<>();
        int count;

        Head(int cap) {
            this.cap = Math.max(1, cap);
            this.pending = new float[this.cap * H];
        }

        /** Queues row r of {@code hidden}; returns its index among the call's rows. */
        int add(float[] hidden, int r) {
            if (count == cap) flush();
            System.arraycopy(hidden, r * H, pending, count * H, H);
            return blocks.size() * cap + count++;
        }

        void flush() {
            if (count == 0) return;
            int[] rows = new int[count];
            for (int i = 0; i < count; i++) rows[i] = i;
            blocks.add(model.logits(pending, rows, new float[count * vocabSize()]));
            count = 0;
        }

        void assign(int global, int[] block, int[] row, int t) {
            block[t] = global / cap;
            row[t] = global % cap;
        }
    }

    /** One chunk of groups: their prefixes in one forward, then their members' remaining tokens; wanted rows go to the head. */
    private void runChunk(List<int[]> seqs, int[] from, List<int[]> groups, Head head, int[][] block, int[][] row) {
        final int ng = groups.size();
        KVCache[] gcache = new KVCache[ng];
        int[] reused = new int[ng], runStart = new int[ng];
        List<Gemma3Model.Input> prefixes = new ArrayList<>();
        int[] keep = new int[ng];
        int rows = 0;
        for (int g = 0; g < ng; g++) {
            int[] gr = groups.get(g);
            int[] s = seqs.get(gr[0]);
            int p = gr[2], minFrom = p;
            for (int i = gr[0]; i < gr[1]; i++) minFrom = Math.min(minFrom, from[i]);
            // rows at or after the first wanted position are computed, not reused
            int lcp = anchorTokens == null ? 0 : commonPrefix(anchorTokens, s, minFrom);
            KVCache c = lcp >= MIN_SHARED_PREFIX ? anchorCache.truncatedCopy(nVirtual + prefixLength() + lcp) : null;
            if (c == null) {
                c = newCache();
                lcp = 0;
            }
            gcache[g] = c;
            reused[g] = lcp;
            runStart[g] = -1;
            if (p > lcp) {
                float[] v = lcp == 0 ? virtual : null;
                runStart[g] = rows + (v == null ? 0 : nVirtual);
                keep[prefixes.size()] = (v == null ? 0 : nVirtual) + Math.min(p, Math.max(minFrom, lcp)) - lcp;
                prefixes.add(new Gemma3Model.Input(c, v, java.util.Arrays.copyOfRange(s, lcp, p)));
                rows += (v == null ? 0 : nVirtual) + p - lcp;
            }
        }
        if (!prefixes.isEmpty()) {
            float[] hidden = model.forward(prefixes, null, java.util.Arrays.copyOf(keep, prefixes.size()));
            rowsComputed += rows;
            for (int g = 0; g < ng; g++) {
                int[] gr = groups.get(g);
                int p = gr[2];
                for (int t = reused[g]; t < p && runStart[g] >= 0; t++) {
                    int global = -1;
                    for (int i = gr[0]; i < gr[1]; i++) {
                        if (t < from[i]) continue;
                        if (global < 0) global = head.add(hidden, runStart[g] + t - reused[g]);
                        head.assign(global, block[i], row[i], t - from[i]);
                    }
                }
            }
        }
        // members' own tokens after their group's prefix, from copies of the prefix cache
        List<Gemma3Model.Input> rest = new ArrayList<>();
        List<Integer> who = new ArrayList<>();
        int[] bestTokens = null;
        KVCache bestCache = null;
        for (int g = 0; g < ng; g++) {
            int[] gr = groups.get(g);
            int p = gr[2], last = -1;
            for (int i = gr[0]; i < gr[1]; i++) if (seqs.get(i).length > p) last = i;
            if (last < 0) {
                int[] s = seqs.get(gr[0]);
                if (bestTokens == null || p > bestTokens.length) { bestTokens = java.util.Arrays.copyOf(s, p); bestCache = gcache[g]; }
                continue;
            }
            for (int i = gr[0]; i <= last; i++) {
                int[] s = seqs.get(i);
                if (s.length <= p) continue;
                KVCache c = i == last ? gcache[g] : gcache[g].copy();
                rest.add(new Gemma3Model.Input(c, null, java.util.Arrays.copyOfRange(s, p, s.length)));
                who.add(i);
                if (bestTokens == null || s.length > bestTokens.length) { bestTokens = s; bestCache = c; }
            }
        }
        for (int a = 0; a < rest.size(); ) {
            int b = a, r = 0;
            while (b < rest.size() && (b == a || r + rest.get(b).ids().length <= maxRowsPerBatch)) r += rest.get(b++).ids().length;
            int[] keepRest = new int[b - a];
            for (int k = a; k < b; k++) {
                int i = who.get(k), p = seqs.get(i).length - rest.get(k).ids().length;
                keepRest[k - a] = Math.max(from[i], p) - p;
            }
            float[] hidden = model.forward(rest.subList(a, b), null, keepRest);
            rowsComputed += r;
            for (int k = a, at = 0; k < b; k++) {
                int i = who.get(k);
                int[] s = seqs.get(i);
                int p = s.length - rest.get(k).ids().length;
                for (int t = Math.max(p, from[i]); t < s.length; t++) head.assign(head.add(hidden, at + t - p), block[i], row[i], t - from[i]);
                at += s.length - p;
            }
            a = b;
        }
        if (bestTokens != null) {
            anchorTokens = bestTokens;
            anchorCache = bestCache;
        }
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
        @Override public void truncate(int len) {
            if (len < 0 || len > length) throw new IllegalArgumentException("truncate to " + len + " tokens: the session holds " + length);
            cache.truncate(cache.length() - (length - len));
            length = len;
        }
    }
}
