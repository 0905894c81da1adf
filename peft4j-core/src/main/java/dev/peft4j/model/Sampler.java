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

    public Options options() { return opt; }

    public Sampler(Options opt) {
        this.opt = opt;
        this.rng = new SplittableRandom(opt.seed());
    }

    private static final jdk.incubator.vector.VectorSpecies<Float> F = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;

    /** Index (relative to {@code off}) of the largest of {@code n} values, the first one on ties; NaN is never chosen. */
    public static int argmax(float[] logits, int off, int n) {
        return dev.peft4j.tensor.Ops.argmax(logits, off, n);
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
        float max = maxOf(v);
        if (keys == null || keys.length < v.length) { keys = new long[v.length]; cand = new int[v.length]; }
        int n = 0;
        for (int i = 0; i < v.length; i++) {
            if (v[i] >= max - 40f) {
                int b = Float.floatToIntBits(v[i]);
                int ordered = b ^ ((b >> 31) & 0x7fffffff);        // monotonic in the float value
                keys[n++] = ((long) ~ordered << 32) | i;            // ascending key = descending value, then index
            }
        }
        if (sortTmp == null || sortTmp.length < n) sortTmp = new long[keys.length];
        sortKeys(keys, n, sortTmp, sortCount);
        for (int i = 0; i < n; i++) cand[i] = (int) keys[i];
        return n;
    }

    /** The largest value (NaN if any is NaN), as a scalar {@code Math.max} loop finds it, vectorized. */
    private static float maxOf(float[] v) {
        int L = F.length(), i = 0;
        var mv = jdk.incubator.vector.FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        for (; i + L <= v.length; i += L) mv = mv.max(jdk.incubator.vector.FloatVector.fromArray(F, v, i));
        float max = mv.reduceLanes(jdk.incubator.vector.VectorOperators.MAX);
        for (; i < v.length; i++) max = Math.max(max, v[i]);
        return max;
    }

    private long[] sortTmp;
    private final int[] sortCount = new int[257];

    /**
     * Sorts keys[0, n) ascending (as signed longs), where the low 32 bits are the ascending positions the keys were made in:
     * a stable radix sort on the high 32 bits (the same order as {@link Arrays#sort(long[], int, int)}, several times
     * faster on a vocabulary of candidates), a comparison sort for few keys.
     */
    static void sortKeys(long[] k, int n, long[] tmp, int[] count) {
        if (n < 4096) {
            Arrays.sort(k, 0, n);
            return;
        }
        long[] src = k, dst = tmp;
        for (int shift = 32; shift < 64; shift += 8) {
            Arrays.fill(count, 0);
            for (int i = 0; i < n; i++) count[(int) (((src[i] ^ Long.MIN_VALUE) >>> shift) & 0xFF) + 1]++;
            if (count[(int) (((src[0] ^ Long.MIN_VALUE) >>> shift) & 0xFF) + 1] == n) continue;   // one bucket: the pass would copy
            for (int b = 0; b < 256; b++) count[b + 1] += count[b];
            for (int i = 0; i < n; i++) dst[count[(int) (((src[i] ^ Long.MIN_VALUE) >>> shift) & 0xFF)]++] = src[i];
            long[] t = src; src = dst; dst = t;
        }
        if (src != k) System.arraycopy(src, 0, k, 0, n);
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
        // partial selection with a small heap of indices, the smallest (value, then higher index first) on top
        int[] heap = new int[k];
        int size = 0;
        for (int i = 0; i < v.length; i++) {
            if (size < k) {
                int at = size++;
                while (at > 0 && below(v, i, heap[(at - 1) / 2])) { heap[at] = heap[(at - 1) / 2]; at = (at - 1) / 2; }
                heap[at] = i;
            } else if (v[i] > v[heap[0]]) {
                siftDown(v, heap, size, i);
            }
        }
        int[] out = new int[size];
        for (int i = size - 1; i >= 0; i--) {
            out[i] = heap[0];
            int last = heap[--size];
            if (size > 0) siftDown(v, heap, size, last);
        }
        return out;
    }

    /** The heap order: a below b when its value is smaller, or equal with a higher index. */
    private static boolean below(float[] v, int a, int b) {
        return v[a] != v[b] ? Float.compare(v[a], v[b]) < 0 : a > b;
    }

    /** Replaces the top of the heap [0, size) with x and restores the order. */
    private static void siftDown(float[] v, int[] heap, int size, int x) {
        int at = 0;
        while (true) {
            int c = 2 * at + 1;
            if (c >= size) break;
            if (c + 1 < size && below(v, heap[c + 1], heap[c])) c++;
            if (!below(v, heap[c], x)) break;
            heap[at] = heap[c];
            at = c;
        }
        heap[at] = x;
    }
}
