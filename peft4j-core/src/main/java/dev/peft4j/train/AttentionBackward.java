package dev.peft4j.train;

import dev.peft4j.tensor.Parallel;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * Tiled (flash-attention style) backward of causal / sliding-window GQA attention. Same contract as
 * {@link Kernels#attentionBackward}. Work is split into independent items so no two threads write the same gradient:
 * <ol>
 *   <li>per (sequence, query head, block of {@value #QB} queries): S = Q·Kᵀ·scale over the visible keys, P = softmax(S),
 *       dP = dO·Vᵀ, Δ = rowsum(P∘dP), dS = P∘(dP − Δ)·scale, dQ = dS·K; the row log-sum-exp and Δ are kept;</li>
 *   <li>per (sequence, kv head, block of 4L keys (a 4-vector column panel)): for every query head of the group and every query that sees
 *       the block, P and dS are recomputed from the kept statistics, and dK += dSᵀ·Q, dV += Pᵀ·dO.</li>
 * </ol>
 * Every product runs through one register-tiled kernel ({@link #gemm}: 6 rows x 4 vectors of accumulators, broadcast FMAs,
 * no horizontal sums); the products against Kᵀ and Vᵀ read transposed copies of K and V made once per call (zero-padded
 * to whole blocks of keys).
 */
final class AttentionBackward {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** Keys per block (one 4-vector column panel of Kᵀ), queries per phase-1 block, queries per phase-2 sub-block. */
    static final int KB = 4 * L, QB = 48, QSUB = 96;

    private AttentionBackward() {}

    static void run(float[] q, float[] k, float[] v, float[] dOut, float[] dq, float[] dk, float[] dv,
                    int[] rowStart, int[] rowCount, int nH, int nKV, int D, float scale, int window) {
        final int N = q.length / (nH * D);
        final int groups = nH / nKV;
        final int S = rowStart.length;
        final int qs = nH * D, ks = nKV * D;   // row strides of q/dOut/dq and k/v/dk/dv
        final float[] lse = new float[N * nH], delta = new float[N * nH];
        // transposed K and V per (sequence, kv head): [D][ts] with ts = the length rounded up to whole key blocks (+ L, so
        // rows of a power-of-two length do not alias in the cache), zero past the sequence's end
        final int[] ts = new int[S];
        final long[] tBase = new long[S + 1];
        for (int s = 0; s < S; s++) {
            ts[s] = (rowCount[s] + KB - 1) / KB * KB + L;
            tBase[s + 1] = tBase[s] + (long) nKV * D * ts[s];
        }
        if (tBase[S] > Integer.MAX_VALUE - 16) throw new IllegalArgumentException("attention backward: " + tBase[S] + " transposed floats");
        final float[] kt = new float[(int) tBase[S]], vt = new float[(int) tBase[S]];
        Parallel.forRange(S * nKV, 1, (a, b) -> {
            for (int item = a; item < b; item++) {
                int s = item / nKV, kvh = item % nKV, T = rowCount[s], st = ts[s];
                int to = (int) tBase[s] + kvh * D * st;
                for (int j = 0; j < T; j++) {
                    int src = (rowStart[s] + j) * ks + kvh * D;
                    for (int d = 0; d < D; d++) {
                        kt[to + d * st + j] = k[src + d];
                        vt[to + d * st + j] = v[src + d];
                    }
                }
            }
        });
        // phase 1 items: (sequence, head, query block)
        int[] qItemStart = new int[S + 1];
        for (int s = 0; s < S; s++) qItemStart[s + 1] = qItemStart[s] + nH * ((rowCount[s] + QB - 1) / QB);
        Parallel.forChunks(qItemStart[S], 2, (a, b) -> {
            float[] sc = null, dp = null;
            for (int item = a; item < b; item++) {
                int s = seqOf(qItemStart, item);
                int local = item - qItemStart[s];
                int nBlocks = (rowCount[s] + QB - 1) / QB;
                int h = local / nBlocks, blk = local % nBlocks, kvh = h / groups;
                int base = rowStart[s];
                int i0 = blk * QB, i1 = Math.min(rowCount[s], i0 + QB), nq = i1 - i0;
                int klo = window > 0 ? Math.max(0, i0 - window + 1) : 0;
                int ka = klo - klo % KB, ncols = (i1 - ka + KB - 1) / KB * KB;   // whole key blocks from ka
                if (sc == null || sc.length < nq * ncols) { sc = new float[nq * ncols]; dp = new float[nq * ncols]; }
                int qOff = (base + i0) * qs + h * D, tOff = (int) tBase[s] + kvh * D * ts[s] + ka;
                gemm(q, qOff, qs, 1, D, kt, tOff, ts[s], sc, 0, ncols, nq, ncols, false);
                gemm(dOut, qOff, qs, 1, D, vt, tOff, ts[s], dp, 0, ncols, nq, ncols, false);
                for (int t = 0; t < nq; t++) {
                    int i = i0 + t, jlo = window > 0 ? Math.max(0, i - window + 1) : 0;   // visible keys: [jlo, i]
                    int row = t * ncols - ka;   // sc[row + j] is key j
                    float max = Float.NEGATIVE_INFINITY;
                    for (int j = jlo; j <= i; j++) {
                        float x = sc[row + j] * scale;
                        sc[row + j] = x;
                        if (x > max) max = x;
                    }
                    expInPlace(sc, row + jlo, i - jlo + 1, max);   // e^(s − max), vectors
                    double sum = 0;
                    for (int j = jlo; j <= i; j++) sum += sc[row + j];
                    float l = (float) (max + Math.log(sum)), inv = (float) (1.0 / sum);
                    double dsum = 0;
                    for (int j = jlo; j <= i; j++) {
                        float p = sc[row + j] * inv;
                        sc[row + j] = p;
                        dsum += (double) p * dp[row + j];
                    }
                    float ds = (float) dsum;
                    for (int j = ka; j < jlo; j++) sc[row + j] = 0f;
                    for (int j = i + 1; j < ka + ncols; j++) sc[row + j] = 0f;
                    for (int j = jlo; j <= i; j++) sc[row + j] = sc[row + j] * (dp[row + j] - ds) * scale;
                    int r = (base + i) * nH + h;
                    lse[r] = l;
                    delta[r] = ds;
                    java.util.Arrays.fill(dq, (base + i) * qs + h * D, (base + i) * qs + h * D + D, 0f);
                }
                // dQ = dS·K over the keys [ka, i1)
                gemm(sc, 0, ncols, 1, i1 - ka, k, (base + ka) * ks + kvh * D, ks, dq, qOff, qs, nq, D, true);
            }
        });
        // phase 2 items: (sequence, kv head, key block)
        int[] kItemStart = new int[S + 1];
        for (int s = 0; s < S; s++) kItemStart[s + 1] = kItemStart[s] + nKV * ((rowCount[s] + KB - 1) / KB);
        Parallel.forChunks(kItemStart[S], 1, (a, b) -> {
            float[] sc = new float[QSUB * KB], dp = new float[QSUB * KB];
            for (int item = a; item < b; item++) {
                int s = seqOf(kItemStart, item);
                int local = item - kItemStart[s];
                int nBlocks = (rowCount[s] + KB - 1) / KB;
                int kvh = local / nBlocks, blk = local % nBlocks;
                int base = rowStart[s], T = rowCount[s];
                int j0 = blk * KB, j1 = Math.min(T, j0 + KB), nk = j1 - j0;
                int qhi = window > 0 ? Math.min(T, j1 - 1 + window) : T;   // queries [j0, qhi) see some key of the block
                int kOff = (base + j0) * ks + kvh * D, tOff = (int) tBase[s] + kvh * D * ts[s] + j0;
                for (int j = j0; j < j1; j++) {
                    java.util.Arrays.fill(dk, (base + j) * ks + kvh * D, (base + j) * ks + kvh * D + D, 0f);
                    java.util.Arrays.fill(dv, (base + j) * ks + kvh * D, (base + j) * ks + kvh * D + D, 0f);
                }
                for (int h = kvh * groups; h < (kvh + 1) * groups; h++) {
                    for (int i0 = j0; i0 < qhi; i0 += QSUB) {
                        int nq = Math.min(QSUB, qhi - i0);
                        int qOff = (base + i0) * qs + h * D;
                        gemm(q, qOff, qs, 1, D, kt, tOff, ts[s], sc, 0, KB, nq, KB, false);
                        gemm(dOut, qOff, qs, 1, D, vt, tOff, ts[s], dp, 0, KB, nq, KB, false);
                        for (int t = 0; t < nq; t++) {
                            int i = i0 + t, r = (base + i) * nH + h, row = t * KB;
                            float l = lse[r], ds = delta[r];
                            // keys of the block this query sees: [cLo, cHi); the others get zeros
                            int cLo = Math.max(0, (window > 0 ? i - window + 1 : j0) - j0), cHi = Math.max(cLo, Math.min(j1 - 1, i) - j0 + 1);
                            java.util.Arrays.fill(sc, row, row + cLo, 0f);
                            java.util.Arrays.fill(dp, row, row + cLo, 0f);
                            java.util.Arrays.fill(sc, row + cHi, row + KB, 0f);
                            java.util.Arrays.fill(dp, row + cHi, row + KB, 0f);
                            for (int c = cLo; c < cHi; c++) sc[row + c] *= scale;
                            expInPlace(sc, row + cLo, cHi - cLo, l);
                            for (int c = cLo; c < cHi; c++) dp[row + c] = sc[row + c] * (dp[row + c] - ds) * scale;
                        }
                        gemm(dp, 0, 1, KB, nq, q, qOff, qs, dk, kOff, ks, nk, D, true);      // dK += dSᵀ·Q
                        gemm(sc, 0, 1, KB, nq, dOut, qOff, qs, dv, kOff, ks, nk, D, true);   // dV += Pᵀ·dO
                    }
                }
            }
        });
    }

    /**
     * x[o + j] = e^(x[o + j] − m) for j in [0, n): {@link dev.peft4j.tensor.Ops#exp}, the deterministic exp (exact IEEE
     * operations only, the same value in vectors and in the scalar tail, whichever JIT tier runs it).
     */
    private static void expInPlace(float[] x, int o, int n, float m) {
        int j = 0;
        for (; j + L <= n; j += L) dev.peft4j.tensor.Ops.exp(FloatVector.fromArray(F, x, o + j).sub(m)).intoArray(x, o + j);
        for (; j < n; j++) x[o + j] = dev.peft4j.tensor.Ops.exp(x[o + j] - m);
    }

    private static int seqOf(int[] itemStart, int item) {
        int s = 0;
        while (itemStart[s + 1] <= item) s++;
        return s;
    }

    /**
     * c[cOff + r*cs + j] (=|+=) Σ_{t<K} a[aOff + r*ars + t*acs] · b[bOff + t*bs + j] for r < rows, j < n: A read one element
     * at a time (any strides, so Aᵀ costs nothing), B and C by rows. 6-row x 4-vector register tiles over column panels of
     * B, each panel reused from cache by all the rows; the remaining rows one at a time, the last columns (n not a multiple
     * of 4 vectors) in scalar loops.
     */
    static void gemm(float[] a, int aOff, int ars, int acs, int K, float[] b, int bOff, int bs,
                     float[] c, int cOff, int cs, int rows, int n, boolean acc) {
        final int W = 4 * L, nv = n - n % W;
        for (int j = 0; j < nv; j += W) {
            int r = 0;
            for (; r + 6 <= rows; r += 6) tile6(a, aOff + r * ars, ars, acs, K, b, bOff + j, bs, c, cOff + r * cs + j, cs, acc);
            for (; r < rows; r++) tile1(a, aOff + r * ars, acs, K, b, bOff + j, bs, c, cOff + r * cs + j, acc);
        }
        for (int r = 0; r < rows && nv < n; r++) {
            for (int j = nv; j < n; j++) {
                float sum = 0;
                for (int t = 0; t < K; t++) sum += a[aOff + r * ars + t * acs] * b[bOff + t * bs + j];
                int o = cOff + r * cs + j;
                c[o] = acc ? c[o] + sum : sum;
            }
        }
    }

    private static void tile6(float[] a, int a0, int ars, int acs, int K, float[] b, int b0, int bs, float[] c, int c0, int cs, boolean acc) {
        int a1 = a0 + ars, a2 = a1 + ars, a3 = a2 + ars, a4 = a3 + ars, a5 = a4 + ars;
        FloatVector s00 = FloatVector.zero(F), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00;
        FloatVector s20 = s00, s21 = s00, s22 = s00, s23 = s00, s30 = s00, s31 = s00, s32 = s00, s33 = s00;
        FloatVector s40 = s00, s41 = s00, s42 = s00, s43 = s00, s50 = s00, s51 = s00, s52 = s00, s53 = s00;
        for (int t = 0; t < K; t++) {
            int bo = b0 + t * bs, ao = t * acs;
            FloatVector w0 = FloatVector.fromArray(F, b, bo), w1 = FloatVector.fromArray(F, b, bo + L);
            FloatVector w2 = FloatVector.fromArray(F, b, bo + 2 * L), w3 = FloatVector.fromArray(F, b, bo + 3 * L);
            FloatVector x = FloatVector.broadcast(F, a[a0 + ao]);
            s00 = x.fma(w0, s00); s01 = x.fma(w1, s01); s02 = x.fma(w2, s02); s03 = x.fma(w3, s03);
            x = FloatVector.broadcast(F, a[a1 + ao]);
            s10 = x.fma(w0, s10); s11 = x.fma(w1, s11); s12 = x.fma(w2, s12); s13 = x.fma(w3, s13);
            x = FloatVector.broadcast(F, a[a2 + ao]);
            s20 = x.fma(w0, s20); s21 = x.fma(w1, s21); s22 = x.fma(w2, s22); s23 = x.fma(w3, s23);
            x = FloatVector.broadcast(F, a[a3 + ao]);
            s30 = x.fma(w0, s30); s31 = x.fma(w1, s31); s32 = x.fma(w2, s32); s33 = x.fma(w3, s33);
            x = FloatVector.broadcast(F, a[a4 + ao]);
            s40 = x.fma(w0, s40); s41 = x.fma(w1, s41); s42 = x.fma(w2, s42); s43 = x.fma(w3, s43);
            x = FloatVector.broadcast(F, a[a5 + ao]);
            s50 = x.fma(w0, s50); s51 = x.fma(w1, s51); s52 = x.fma(w2, s52); s53 = x.fma(w3, s53);
        }
        int o1 = c0 + cs, o2 = o1 + cs, o3 = o2 + cs, o4 = o3 + cs, o5 = o4 + cs;
        if (acc) {
            s00 = s00.add(FloatVector.fromArray(F, c, c0)); s01 = s01.add(FloatVector.fromArray(F, c, c0 + L));
            s02 = s02.add(FloatVector.fromArray(F, c, c0 + 2 * L)); s03 = s03.add(FloatVector.fromArray(F, c, c0 + 3 * L));
            s10 = s10.add(FloatVector.fromArray(F, c, o1)); s11 = s11.add(FloatVector.fromArray(F, c, o1 + L));
            s12 = s12.add(FloatVector.fromArray(F, c, o1 + 2 * L)); s13 = s13.add(FloatVector.fromArray(F, c, o1 + 3 * L));
            s20 = s20.add(FloatVector.fromArray(F, c, o2)); s21 = s21.add(FloatVector.fromArray(F, c, o2 + L));
            s22 = s22.add(FloatVector.fromArray(F, c, o2 + 2 * L)); s23 = s23.add(FloatVector.fromArray(F, c, o2 + 3 * L));
            s30 = s30.add(FloatVector.fromArray(F, c, o3)); s31 = s31.add(FloatVector.fromArray(F, c, o3 + L));
            s32 = s32.add(FloatVector.fromArray(F, c, o3 + 2 * L)); s33 = s33.add(FloatVector.fromArray(F, c, o3 + 3 * L));
            s40 = s40.add(FloatVector.fromArray(F, c, o4)); s41 = s41.add(FloatVector.fromArray(F, c, o4 + L));
            s42 = s42.add(FloatVector.fromArray(F, c, o4 + 2 * L)); s43 = s43.add(FloatVector.fromArray(F, c, o4 + 3 * L));
            s50 = s50.add(FloatVector.fromArray(F, c, o5)); s51 = s51.add(FloatVector.fromArray(F, c, o5 + L));
            s52 = s52.add(FloatVector.fromArray(F, c, o5 + 2 * L)); s53 = s53.add(FloatVector.fromArray(F, c, o5 + 3 * L));
        }
        s00.intoArray(c, c0); s01.intoArray(c, c0 + L); s02.intoArray(c, c0 + 2 * L); s03.intoArray(c, c0 + 3 * L);
        s10.intoArray(c, o1); s11.intoArray(c, o1 + L); s12.intoArray(c, o1 + 2 * L); s13.intoArray(c, o1 + 3 * L);
        s20.intoArray(c, o2); s21.intoArray(c, o2 + L); s22.intoArray(c, o2 + 2 * L); s23.intoArray(c, o2 + 3 * L);
        s30.intoArray(c, o3); s31.intoArray(c, o3 + L); s32.intoArray(c, o3 + 2 * L); s33.intoArray(c, o3 + 3 * L);
        s40.intoArray(c, o4); s41.intoArray(c, o4 + L); s42.intoArray(c, o4 + 2 * L); s43.intoArray(c, o4 + 3 * L);
        s50.intoArray(c, o5); s51.intoArray(c, o5 + L); s52.intoArray(c, o5 + 2 * L); s53.intoArray(c, o5 + 3 * L);
    }

    private static void tile1(float[] a, int a0, int acs, int K, float[] b, int b0, int bs, float[] c, int c0, boolean acc) {
        FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
        for (int t = 0; t < K; t++) {
            int bo = b0 + t * bs;
            FloatVector x = FloatVector.broadcast(F, a[a0 + t * acs]);
            s0 = x.fma(FloatVector.fromArray(F, b, bo), s0);
            s1 = x.fma(FloatVector.fromArray(F, b, bo + L), s1);
            s2 = x.fma(FloatVector.fromArray(F, b, bo + 2 * L), s2);
            s3 = x.fma(FloatVector.fromArray(F, b, bo + 3 * L), s3);
        }
        if (acc) {
            s0 = s0.add(FloatVector.fromArray(F, c, c0)); s1 = s1.add(FloatVector.fromArray(F, c, c0 + L));
            s2 = s2.add(FloatVector.fromArray(F, c, c0 + 2 * L)); s3 = s3.add(FloatVector.fromArray(F, c, c0 + 3 * L));
        }
        s0.intoArray(c, c0); s1.intoArray(c, c0 + L); s2.intoArray(c, c0 + 2 * L); s3.intoArray(c, c0 + 3 * L);
    }
}
