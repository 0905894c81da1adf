package dev.peft4j.model;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Next-token choice as transformers' {@code generate} does it: repetition penalty, then temperature, top-k, top-p and min-p
 * warpers, then a draw from the softmax (or argmax when temperature is 0). Reproducible for a given seed.
 */
public final class Sampler {
    public record Options(float temperature, int topK, float topP, float minP, float repetitionPenalty, long seed) {
        public static Options greedy() { return new Options(0f, 0, 1f, 0f, 1f, 0); }
        public boolean isGreedy() { return temperature <= 0f; }
    }

    private final Options opt;
    private final SplittableRandom rng;
    /** Buffers reused across tokens (a sampler serves one sequence at a time). */
    private boolean[] seen;
    private double[] probs;
    private long[] keys;
    private int[] cand;

    public Sampler(Options opt) {
        this.opt = opt;
        this.rng = new SplittableRandom(opt.seed());
    }

    private static final jdk.incubator.vector.VectorSpecies<Float> F = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;

    /**
     * Index (relative to {@code off}) of the largest of {@code n} values, the first one on ties; NaN is never chosen, and 0
     * when nothing is above −∞. Vectorized: one pass for the maximum, then a scan for its first occurrence.
     */
    public static int argmax(float[] logits, int off, int n) {
        int L = F.length(), i = 0;
        var mv = jdk.incubator.vector.FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        for (; i + L <= n; i += L) mv = mv.max(jdk.incubator.vector.FloatVector.fromArray(F, logits, off + i));
        float max = mv.reduceLanes(jdk.incubator.vector.VectorOperators.MAX);
        for (; i < n; i++) max = Math.max(max, logits[off + i]);
        if (Float.isNaN(max) || max == Float.NEGATIVE_INFINITY) return argmaxScalar(logits, off, n);
        for (int j = 0; j < n; j++) if (logits[off + j] == max) return j;
        return argmaxScalar(logits, off, n);
    }

    private static int argmaxScalar(float[] logits, int off, int n) {
        int best = 0;
        float bv = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            if (logits[off + i] > bv) { bv = logits[off + i]; best = i; }
        }
        return best;
    }

    /** Picks the next token from a logits row (modified in place); {@code history} holds ids already in the sequence. */
    public int next(float[] logits, int[] history, int historyLen) {
        return next(logits, 0, logits.length, history, historyLen);
    }

    /** Reusable copy of a row for the sampling path (which works on a whole array). */
    private float[] rowCopy;

    /**
     * As {@link #next(float[], int[], int)} for the row of {@code V} values at {@code off} of {@code logits} (a block of
     * several sequences' rows): the row is modified in place; greedy decoding reads it there, without a copy.
     */
    public int next(float[] logits, int off, int V, int[] history, int historyLen) {
        if (opt.repetitionPenalty() != 1f) {
            if (seen == null || seen.length < V) seen = new boolean[V];
            for (int i = 0; i < historyLen; i++) {
                int id = history[i];
                if (id < 0 || id >= V || seen[id]) continue;
                seen[id] = true;
                float l = logits[off + id];
                logits[off + id] = l < 0 ? l * opt.repetitionPenalty() : l / opt.repetitionPenalty();
            }
            for (int i = 0; i < historyLen; i++) if (history[i] >= 0 && history[i] < V) seen[history[i]] = false;
        }
        if (opt.isGreedy()) return argmax(logits, off, V);
        if (off != 0 || logits.length != V) {
            if (rowCopy == null || rowCopy.length != V) rowCopy = new float[V];
            System.arraycopy(logits, off, rowCopy, 0, V);
            logits = rowCopy;
        }
        return draw(logits, V);
    }

    private int draw(float[] logits, int V) {
        float t = opt.temperature();
        for (int i = 0; i < V; i++) logits[i] /= t;
        // candidates sorted by logit, descending
        int k = V;
        if (opt.topK() > 0 && opt.topK() < V) k = opt.topK();
        int[] order;
        int nOrder;
        if (k >= V) {
            nOrder = sortedCandidates(logits);
            order = cand;
        } else {
            order = topIndices(logits, k);
            nOrder = order.length;
        }
        double max = logits[order[0]];
        if (probs == null || probs.length < nOrder) probs = new double[Math.max(nOrder, 1024)];
        double[] p = probs;
        double sum = 0;
        for (int i = 0; i < nOrder; i++) { p[i] = Math.exp(logits[order[i]] - max); sum += p[i]; }
        for (int i = 0; i < nOrder; i++) p[i] /= sum;
        int keep = nOrder;
        if (opt.topP() < 1f) {
            // transformers keeps the smallest set whose cumulative probability reaches top_p (at least one token)
            double cum = 0;
            for (int i = 0; i < nOrder; i++) {
                cum += p[i];
                if (cum >= opt.topP()) { keep = i + 1; break; }
            }
        }
        if (opt.minP() > 0f) {
            double thr = opt.minP() * p[0];
            int m = 0;
            while (m < keep && p[m] >= thr) m++;
            keep = Math.max(1, m);
        }
        double s = 0;
        for (int i = 0; i < keep; i++) s += p[i];
        double u = rng.nextDouble() * s;
        double acc = 0;
        for (int i = 0; i < keep; i++) {
            acc += p[i];
            if (u < acc) return order[i];
        }
        return order[keep - 1];
    }

    /**
     * The candidates of a draw over the whole vocabulary into {@link #cand}, by logit descending (ties by lower index); returns
     * their number. Tokens more than e^-40 below the best cannot change a draw in double precision and are left out. Sorting
     * packed primitive keys (order-preserving logit bits, then the index) allocates nothing per token.
     */
    private int sortedCandidates(float[] v) {
        float max = Float.NEGATIVE_INFINITY;
        for (float x : v) max = Math.max(max, x);
        if (keys == null || keys.length < v.length) { keys = new long[v.length]; cand = new int[v.length]; }
        int n = 0;
        for (int i = 0; i < v.length; i++) {
            if (v[i] >= max - 40f) {
                int b = Float.floatToIntBits(v[i]);
                int ordered = b ^ ((b >> 31) & 0x7fffffff);        // monotonic in the float value
                keys[n++] = ((long) ~ordered << 32) | i;            // ascending key = descending value, then index
            }
        }
        java.util.Arrays.sort(keys, 0, n);
        for (int i = 0; i < n; i++) cand[i] = (int) keys[i];
        return n;
    }

    /** Indices of the k largest values, descending (ties by lower index). */
    static int[] topIndices(float[] v, int k) {
        if (k >= v.length) {
            // tokens more than e^-40 below the best cannot change a draw in double precision: leave them out of the sort
            float max = Float.NEGATIVE_INFINITY;
            for (float x : v) max = Math.max(max, x);
            int n = 0;
            for (float x : v) if (x >= max - 40f) n++;
            Integer[] all = new Integer[n];
            for (int i = 0, j = 0; i < v.length; i++) if (v[i] >= max - 40f) all[j++] = i;
            Arrays.sort(all, (a, b) -> v[b] != v[a] ? Float.compare(v[b], v[a]) : Integer.compare(a, b));
            return Arrays.stream(all).mapToInt(Integer::intValue).toArray();
        }
        // partial selection with a small heap
        java.util.PriorityQueue<Integer> pq = new java.util.PriorityQueue<>(k + 1,
                (a, b) -> v[a] != v[b] ? Float.compare(v[a], v[b]) : Integer.compare(b, a));
        for (int i = 0; i < v.length; i++) {
            if (pq.size() < k) pq.add(i);
            else if (v[i] > v[pq.peek()]) { pq.poll(); pq.add(i); }
        }
        int[] out = new int[pq.size()];
        for (int i = out.length - 1; i >= 0; i--) out[i] = pq.poll();
        return out;
    }
}
