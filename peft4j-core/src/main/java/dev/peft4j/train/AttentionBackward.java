package dev.peft4j.train;

import dev.peft4j.tensor.Parallel;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Tiled (flash-attention style) backward of causal / sliding-window GQA attention. Same contract as
 * {@link Kernels#attentionBackward}. Work is split into independent items so no two threads write the same gradient:
 * <ol>
 *   <li>per (sequence, query head, block of {@value #QB} queries): S = Q·Kᵀ·scale over the visible keys, P = softmax(S),
 *       dP = dO·Vᵀ, Δ = rowsum(P∘dP), dS = P∘(dP − Δ)·scale, dQ = dS·K; the row log-sum-exp and Δ are kept;</li>
 *   <li>per (sequence, kv head, block of {@value #KB} keys): for every query head of the group and every query that sees
 *       the block, P and dS are recomputed from the kept statistics, and dK += dSᵀ·Q, dV += Pᵀ·dO.</li>
 * </ol>
 * The products run as small register-tiled matrix products (several rows share each vector load) instead of one dot or
 * axpy per (query, key) pair.
 */
final class AttentionBackward {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    static final int QB = 16, KB = 16, QSUB = 64;

    private AttentionBackward() {}

    static void run(float[] q, float[] k, float[] v, float[] dOut, float[] dq, float[] dk, float[] dv,
                    int[] rowStart, int[] rowCount, int nH, int nKV, int D, float scale, int window) {
        final int N = q.length / (nH * D);
        final int groups = nH / nKV;
        final int S = rowStart.length;
        final int qs = nH * D, ks = nKV * D;   // row strides of q/dOut/dq and k/v/dk/dv
        final float[] lse = new float[N * nH], delta = new float[N * nH];
        // items of phase 1: (sequence, head, query block)
        int[] qItemStart = new int[S + 1];
        for (int s = 0; s < S; s++) qItemStart[s + 1] = qItemStart[s] + nH * ((rowCount[s] + QB - 1) / QB);
        Parallel.forRange(qItemStart[S], 1, (a, b) -> {
            float[] sc = null, dp = null;
            for (int item = a; item < b; item++) {
                int s = seqOf(qItemStart, item);
                int local = item - qItemStart[s];
                int nBlocks = (rowCount[s] + QB - 1) / QB;
                int h = local / nBlocks, blk = local % nBlocks, kvh = h / groups;
                int base = rowStart[s];
                int i0 = blk * QB, i1 = Math.min(rowCount[s], i0 + QB), nq = i1 - i0;
                int klo = window > 0 ? Math.max(0, i0 - window + 1) : 0, nk = i1 - klo;
                if (sc == null || sc.length < nq * nk) { sc = new float[nq * nk]; dp = new float[nq * nk]; }
                int qOff = (base + i0) * qs + h * D, kOff = (base + klo) * ks + kvh * D;
                abT(q, qOff, qs, nq, k, kOff, ks, nk, D, sc, nk);
                abT(dOut, qOff, qs, nq, v, kOff, ks, nk, D, dp, nk);
                for (int t = 0; t < nq; t++) {
                    int i = i0 + t, jlo = window > 0 ? Math.max(0, i - window + 1) : 0;   // visible keys: [jlo, i]
                    int row = t * nk;
                    float max = Float.NEGATIVE_INFINITY;
                    for (int j = jlo; j <= i; j++) {
                        float x = sc[row + j - klo] * scale;
                        sc[row + j - klo] = x;
                        if (x > max) max = x;
                    }
                    double sum = 0;
                    for (int j = jlo; j <= i; j++) sum += Math.exp(sc[row + j - klo] - max);
                    float l = (float) (max + Math.log(sum));
                    double dsum = 0;
                    for (int j = jlo; j <= i; j++) {
                        float p = (float) Math.exp(sc[row + j - klo] - l);
                        sc[row + j - klo] = p;
                        dsum += (double) p * dp[row + j - klo];
                    }
                    float ds = (float) dsum;
                    for (int j = klo; j < jlo; j++) sc[row + j - klo] = 0f;
                    for (int j = i + 1; j < i1; j++) sc[row + j - klo] = 0f;
                    for (int j = jlo; j <= i; j++) sc[row + j - klo] = sc[row + j - klo] * (dp[row + j - klo] - ds) * scale;
                    int r = (base + i) * nH + h;
                    lse[r] = l;
                    delta[r] = ds;
                    java.util.Arrays.fill(dq, (base + i) * qs + h * D, (base + i) * qs + h * D + D, 0f);
                }
                pB(sc, nk, nq, nk, k, kOff, ks, D, dq, qOff, qs);   // dQ = dS·K
            }
        });
        // items of phase 2: (sequence, kv head, key block)
        int[] kItemStart = new int[S + 1];
        for (int s = 0; s < S; s++) kItemStart[s + 1] = kItemStart[s] + nKV * ((rowCount[s] + KB - 1) / KB);
        Parallel.forRange(kItemStart[S], 1, (a, b) -> {
            float[] sc = new float[QSUB * KB], dp = new float[QSUB * KB];
            for (int item = a; item < b; item++) {
                int s = seqOf(kItemStart, item);
                int local = item - kItemStart[s];
                int nBlocks = (rowCount[s] + KB - 1) / KB;
                int kvh = local / nBlocks, blk = local % nBlocks;
                int base = rowStart[s], T = rowCount[s];
                int j0 = blk * KB, j1 = Math.min(T, j0 + KB), nk = j1 - j0;
                int qhi = window > 0 ? Math.min(T, j1 - 1 + window) : T;   // queries [j0, qhi) see some key of the block
                int kOff = (base + j0) * ks + kvh * D;
                for (int j = j0; j < j1; j++) {
                    java.util.Arrays.fill(dk, (base + j) * ks + kvh * D, (base + j) * ks + kvh * D + D, 0f);
                    java.util.Arrays.fill(dv, (base + j) * ks + kvh * D, (base + j) * ks + kvh * D + D, 0f);
                }
                for (int h = kvh * groups; h < (kvh + 1) * groups; h++) {
                    for (int i0 = j0; i0 < qhi; i0 += QSUB) {
                        int nq = Math.min(QSUB, qhi - i0);
                        int qOff = (base + i0) * qs + h * D;
                        abT(q, qOff, qs, nq, k, kOff, ks, nk, D, sc, nk);
                        abT(dOut, qOff, qs, nq, v, kOff, ks, nk, D, dp, nk);
                        for (int t = 0; t < nq; t++) {
                            int i = i0 + t, r = (base + i) * nH + h, row = t * nk;
                            float l = lse[r], ds = delta[r];
                            for (int c = 0; c < nk; c++) {
                                int j = j0 + c;
                                if (j > i || (window > 0 && i - j >= window)) {
                                    sc[row + c] = 0f;
                                    dp[row + c] = 0f;
                                } else {
                                    float p = (float) Math.exp(sc[row + c] * scale - l);
                                    sc[row + c] = p;
                                    dp[row + c] = p * (dp[row + c] - ds) * scale;
                                }
                            }
                        }
                        pTA(dp, nk, nq, nk, q, qOff, qs, D, dk, kOff, ks);      // dK += dSᵀ·Q
                        pTA(sc, nk, nq, nk, dOut, qOff, qs, D, dv, kOff, ks);   // dV += Pᵀ·dO
                    }
                }
            }
        });
    }

    private static int seqOf(int[] itemStart, int item) {
        int s = 0;
        while (itemStart[s + 1] <= item) s++;
        return s;
    }

    /** c[i*cs + j] = Σ_d a[aOff + i*as + d] · b[bOff + j*bs + d] for i < na, j < nb (overwrites). */
    static void abT(float[] a, int aOff, int as, int na, float[] b, int bOff, int bs, int nb, int D, float[] c, int cs) {
        int bound = D - D % L;
        int i = 0;
        for (; i + 4 <= na; i += 4) {
            int a0 = aOff + i * as, a1 = a0 + as, a2 = a1 + as, a3 = a2 + as;
            int j = 0;
            for (; j + 4 <= nb; j += 4) {
                int b0 = bOff + j * bs, b1 = b0 + bs, b2 = b1 + bs, b3 = b2 + bs;
                FloatVector c00 = FloatVector.zero(F), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
                FloatVector c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
                for (int d = 0; d < bound; d += L) {
                    FloatVector w0 = FloatVector.fromArray(F, b, b0 + d), w1 = FloatVector.fromArray(F, b, b1 + d);
                    FloatVector w2 = FloatVector.fromArray(F, b, b2 + d), w3 = FloatVector.fromArray(F, b, b3 + d);
                    FloatVector x = FloatVector.fromArray(F, a, a0 + d);
                    c00 = x.fma(w0, c00); c01 = x.fma(w1, c01); c02 = x.fma(w2, c02); c03 = x.fma(w3, c03);
                    x = FloatVector.fromArray(F, a, a1 + d);
                    c10 = x.fma(w0, c10); c11 = x.fma(w1, c11); c12 = x.fma(w2, c12); c13 = x.fma(w3, c13);
                    x = FloatVector.fromArray(F, a, a2 + d);
                    c20 = x.fma(w0, c20); c21 = x.fma(w1, c21); c22 = x.fma(w2, c22); c23 = x.fma(w3, c23);
                    x = FloatVector.fromArray(F, a, a3 + d);
                    c30 = x.fma(w0, c30); c31 = x.fma(w1, c31); c32 = x.fma(w2, c32); c33 = x.fma(w3, c33);
                }
                int o = i * cs + j;
                c[o] = dev.peft4j.tensor.Ops.hsum(c00); c[o + 1] = dev.peft4j.tensor.Ops.hsum(c01);
                c[o + 2] = dev.peft4j.tensor.Ops.hsum(c02); c[o + 3] = dev.peft4j.tensor.Ops.hsum(c03);
                o += cs;
                c[o] = dev.peft4j.tensor.Ops.hsum(c10); c[o + 1] = dev.peft4j.tensor.Ops.hsum(c11);
                c[o + 2] = dev.peft4j.tensor.Ops.hsum(c12); c[o + 3] = dev.peft4j.tensor.Ops.hsum(c13);
                o += cs;
                c[o] = dev.peft4j.tensor.Ops.hsum(c20); c[o + 1] = dev.peft4j.tensor.Ops.hsum(c21);
                c[o + 2] = dev.peft4j.tensor.Ops.hsum(c22); c[o + 3] = dev.peft4j.tensor.Ops.hsum(c23);
                o += cs;
                c[o] = dev.peft4j.tensor.Ops.hsum(c30); c[o + 1] = dev.peft4j.tensor.Ops.hsum(c31);
                c[o + 2] = dev.peft4j.tensor.Ops.hsum(c32); c[o + 3] = dev.peft4j.tensor.Ops.hsum(c33);
                if (bound < D) {
                    for (int r = 0; r < 4; r++) for (int t = 0; t < 4; t++) {
                        float sum = 0;
                        for (int d = bound; d < D; d++) sum += a[aOff + (i + r) * as + d] * b[bOff + (j + t) * bs + d];
                        c[(i + r) * cs + j + t] += sum;
                    }
                }
            }
            for (; j < nb; j++) for (int r = 0; r < 4; r++) c[(i + r) * cs + j] = dot(a, aOff + (i + r) * as, b, bOff + j * bs, D);
        }
        for (; i < na; i++) for (int j = 0; j < nb; j++) c[i * cs + j] = dot(a, aOff + i * as, b, bOff + j * bs, D);
    }

    private static float dot(float[] a, int ao, float[] b, int bo, int D) {
        FloatVector acc = FloatVector.zero(F);
        int d = 0;
        for (; d + L <= D; d += L) acc = FloatVector.fromArray(F, a, ao + d).fma(FloatVector.fromArray(F, b, bo + d), acc);
        float s = dev.peft4j.tensor.Ops.hsum(acc);
        for (; d < D; d++) s += a[ao + d] * b[bo + d];
        return s;
    }

    /** out[oOff + i*os + d] += Σ_j p[i*ps + j] · b[bOff + j*bs + d] for i < na, j < nb. */
    static void pB(float[] p, int ps, int na, int nb, float[] b, int bOff, int bs, int D, float[] out, int oOff, int os) {
        int bound = D - D % L;
        int i = 0;
        for (; i + 4 <= na; i += 4) {
            int p0 = i * ps, p1 = p0 + ps, p2 = p1 + ps, p3 = p2 + ps;
            int o0 = oOff + i * os, o1 = o0 + os, o2 = o1 + os, o3 = o2 + os;
            for (int d = 0; d < bound; d += L) {
                FloatVector c0 = FloatVector.fromArray(F, out, o0 + d), c1 = FloatVector.fromArray(F, out, o1 + d);
                FloatVector c2 = FloatVector.fromArray(F, out, o2 + d), c3 = FloatVector.fromArray(F, out, o3 + d);
                for (int j = 0; j < nb; j++) {
                    FloatVector w = FloatVector.fromArray(F, b, bOff + j * bs + d);
                    c0 = FloatVector.broadcast(F, p[p0 + j]).fma(w, c0);
                    c1 = FloatVector.broadcast(F, p[p1 + j]).fma(w, c1);
                    c2 = FloatVector.broadcast(F, p[p2 + j]).fma(w, c2);
                    c3 = FloatVector.broadcast(F, p[p3 + j]).fma(w, c3);
                }
                c0.intoArray(out, o0 + d); c1.intoArray(out, o1 + d); c2.intoArray(out, o2 + d); c3.intoArray(out, o3 + d);
            }
            for (int d = bound; d < D; d++) {
                for (int r = 0; r < 4; r++) {
                    float s = 0;
                    for (int j = 0; j < nb; j++) s += p[(i + r) * ps + j] * b[bOff + j * bs + d];
                    out[oOff + (i + r) * os + d] += s;
                }
            }
        }
        for (; i < na; i++) {
            for (int d = 0; d < D; d++) {
                float s = 0;
                for (int j = 0; j < nb; j++) s += p[i * ps + j] * b[bOff + j * bs + d];
                out[oOff + i * os + d] += s;
            }
        }
    }

    /** out[oOff + j*os + d] += Σ_i p[i*ps + j] · a[aOff + i*as + d] for i < na, j < nb (out = pᵀ·a). */
    static void pTA(float[] p, int ps, int na, int nb, float[] a, int aOff, int as, int D, float[] out, int oOff, int os) {
        int bound = D - D % L;
        int j = 0;
        for (; j + 4 <= nb; j += 4) {
            int o0 = oOff + j * os, o1 = o0 + os, o2 = o1 + os, o3 = o2 + os;
            for (int d = 0; d < bound; d += L) {
                FloatVector c0 = FloatVector.fromArray(F, out, o0 + d), c1 = FloatVector.fromArray(F, out, o1 + d);
                FloatVector c2 = FloatVector.fromArray(F, out, o2 + d), c3 = FloatVector.fromArray(F, out, o3 + d);
                for (int i = 0; i < na; i++) {
                    FloatVector x = FloatVector.fromArray(F, a, aOff + i * as + d);
                    int pr = i * ps + j;
                    c0 = FloatVector.broadcast(F, p[pr]).fma(x, c0);
                    c1 = FloatVector.broadcast(F, p[pr + 1]).fma(x, c1);
                    c2 = FloatVector.broadcast(F, p[pr + 2]).fma(x, c2);
                    c3 = FloatVector.broadcast(F, p[pr + 3]).fma(x, c3);
                }
                c0.intoArray(out, o0 + d); c1.intoArray(out, o1 + d); c2.intoArray(out, o2 + d); c3.intoArray(out, o3 + d);
            }
            for (int d = bound; d < D; d++) {
                for (int t = 0; t < 4; t++) {
                    float s = 0;
                    for (int i = 0; i < na; i++) s += p[i * ps + j + t] * a[aOff + i * as + d];
                    out[oOff + (j + t) * os + d] += s;
                }
            }
        }
        for (; j < nb; j++) {
            for (int d = 0; d < D; d++) {
                float s = 0;
                for (int i = 0; i < na; i++) s += p[i * ps + j] * a[aOff + i * as + d];
                out[oOff + j * os + d] += s;
            }
        }
    }
}
