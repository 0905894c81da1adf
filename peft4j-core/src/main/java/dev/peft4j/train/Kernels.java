package dev.peft4j.train;

import dev.peft4j.model.Linear;
import dev.peft4j.tensor.MatMul;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.tensor.Ops;
import dev.peft4j.tensor.Parallel;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Backward kernels of the Gemma 3 layer (llm.c style: one explicit backward per forward op). Arrays are row-major float32,
 * rows packed over the batch as in {@link dev.peft4j.model.Tape}. Unless a method says otherwise, input gradients
 * ({@code dx}) and parameter gradients ({@code dw}, {@code dW}, {@code dA}, {@code dB}) are ACCUMULATED (+=), and a null
 * gradient array means "not needed" (its computation is skipped).
 */
public final class Kernels {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    private Kernels() {}

    // ------------------------------------------------------------------ RMSNorm

    /**
     * Backward of the Gemma RMSNorm y = x·rstd·(1 + w) over n rows of width d (rstd as saved by the forward pass).
     * dx += rstd·(1+w)·dy − x·rstd³/d · Σ_j dy_j (1+w_j) x_j;  dw += Σ_rows dy·x·rstd.
     * The per-head variant (q_norm / k_norm) is the same call with n = rows·heads and d = head_dim (w shared by all heads).
     */
    public static void rmsNormBackward(float[] x, int xOff, float[] rstd, int rOff, float[] w, float[] dy, int dyOff,
                                       float[] dx, int dxOff, float[] dw, int n, int d) {
        int blocks = Math.min(n, Math.max(1, Parallel.threads()));
        float[][] partial = dw == null ? null : new float[blocks][];
        Parallel.forRange(blocks, 1, (b0, b1) -> {
            for (int b = b0; b < b1; b++) {
                int r0 = (int) ((long) n * b / blocks), r1 = (int) ((long) n * (b + 1) / blocks);
                float[] pw = dw == null ? null : (partial[b] = new float[d]);
                for (int r = r0; r < r1; r++) {
                    int xo = xOff + r * d, go = dyOff + r * d, oo = dxOff + r * d;
                    float rs = rstd[rOff + r];
                    double dot = 0;
                    for (int i = 0; i < d; i++) dot += (double) dy[go + i] * (1f + w[i]) * x[xo + i];
                    if (dx != null) {
                        float c = (float) (dot * rs * rs * rs / d);
                        for (int i = 0; i < d; i++) dx[oo + i] += rs * (1f + w[i]) * dy[go + i] - x[xo + i] * c;
                    }
                    if (pw != null) for (int i = 0; i < d; i++) pw[i] += dy[go + i] * x[xo + i] * rs;
                }
            }
        });
        if (dw != null) for (float[] p : partial) for (int i = 0; i < d; i++) dw[i] += p[i];
    }

    /** {@link #rmsNormBackward} over whole arrays: n rows of width d. */
    public static void rmsNormBackward(float[] x, float[] rstd, float[] w, float[] dy, float[] dx, float[] dw, int n, int d) {
        rmsNormBackward(x, 0, rstd, 0, w, dy, 0, dx, 0, dw, n, d);
    }

    // ------------------------------------------------------------------ RoPE

    /**
     * Backward of {@link Ops#rope} (rotate-half layout), in place: the gradient is rotated back by the inverse rotation
     * (dx1 = dy1·cos + dy2·sin, dx2 = dy2·cos − dy1·sin).
     */
    public static void ropeBackward(float[] d, int n, int heads, int dim, int[] pos, float[] cos, float[] sin) {
        int half = dim / 2;
        Parallel.forRange(n, 64, (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int tb = pos[r] * half;
                for (int h = 0; h < heads; h++) {
                    int b = (r * heads + h) * dim;
                    for (int i = 0; i < half; i++) {
                        float c = cos[tb + i], s = sin[tb + i];
                        float g1 = d[b + i], g2 = d[b + half + i];
                        d[b + i] = g1 * c + g2 * s;
                        d[b + half + i] = g2 * c - g1 * s;
                    }
                }
            }
        });
    }

    // ------------------------------------------------------------------ attention

    /**
     * Backward of causal (optionally sliding-window) GQA attention, per packed sequence: sequence s owns rows
     * [rowStart[s], rowStart[s]+rowCount[s]) at consecutive positions; query i sees key j iff j ≤ i and (window ≤ 0 or
     * i − j < window). q [N, nH·D], k/v [N, nKV·D] are the saved post-RoPE q/k and v; dOut [N, nH·D]. The probabilities are
     * recomputed from q and k. dq, dk, dv are OVERWRITTEN. Tiled implementation: {@link AttentionBackward}.
     */
    public static void attentionBackward(float[] q, float[] k, float[] v, float[] dOut, float[] dq, float[] dk, float[] dv,
                                         int[] rowStart, int[] rowCount, int nH, int nKV, int D, float scale, int window) {
        AttentionBackward.run(q, k, v, dOut, dq, dk, dv, rowStart, rowCount, nH, nKV, D, scale, window);
    }

    /**
     * The same as {@link #attentionBackward}, one (query, key) pair at a time (a simple reference): two passes without write
     * conflicts, over (query row, head) for dq and the row statistics, then over (key row, kv head) for dk and dv.
     */
    public static void attentionBackwardRowwise(float[] q, float[] k, float[] v, float[] dOut, float[] dq, float[] dk, float[] dv,
                                         int[] rowStart, int[] rowCount, int nH, int nKV, int D, float scale, int window) {
        final int N = q.length / (nH * D);
        final int groups = nH / nKV;
        final int[] seqOf = new int[N];
        int maxLen = 1;
        for (int s = 0; s < rowStart.length; s++) {
            for (int t = 0; t < rowCount[s]; t++) seqOf[rowStart[s] + t] = s;
            maxLen = Math.max(maxLen, rowCount[s]);
        }
        final float[] lse = new float[N * nH], dsum = new float[N * nH];
        final int buf = maxLen;
        Parallel.forRange(N * nH, 4, (a, b) -> {
            float[] p = new float[buf], dp = new float[buf];
            for (int item = a; item < b; item++) {
                int r = item / nH, h = item % nH, kvh = h / groups;
                int s = seqOf[r], base = rowStart[s], i = r - base;
                int lo = window > 0 ? Math.max(0, i - window + 1) : 0;
                int nk = i - lo + 1;
                int qo = (r * nH + h) * D;
                float max = Float.NEGATIVE_INFINITY;
                for (int j = 0; j < nk; j++) {
                    int ko = ((base + lo + j) * nKV + kvh) * D;
                    p[j] = Ops.dot(q, qo, k, ko, D) * scale;
                    if (p[j] > max) max = p[j];
                }
                double sum = 0;
                for (int j = 0; j < nk; j++) sum += Math.exp(p[j] - max);
                float l = (float) (max + Math.log(sum));
                lse[item] = l;
                double ds = 0;
                for (int j = 0; j < nk; j++) {
                    int vo = ((base + lo + j) * nKV + kvh) * D;
                    p[j] = (float) Math.exp(p[j] - l);
                    dp[j] = Ops.dot(dOut, qo, v, vo, D);
                    ds += (double) p[j] * dp[j];
                }
                float dS = (float) ds;
                dsum[item] = dS;
                java.util.Arrays.fill(dq, qo, qo + D, 0f);
                for (int j = 0; j < nk; j++) {
                    int ko = ((base + lo + j) * nKV + kvh) * D;
                    Ops.axpy(p[j] * (dp[j] - dS) * scale, k, ko, dq, qo, D);
                }
            }
        });
        Parallel.forRange(N * nKV, 4, (a, b) -> {
            for (int item = a; item < b; item++) {
                int r = item / nKV, kvh = item % nKV;
                int s = seqOf[r], base = rowStart[s], j = r - base;
                int hi = window > 0 ? Math.min(rowCount[s] - 1, j + window - 1) : rowCount[s] - 1;
                int ko = item * D;
                java.util.Arrays.fill(dk, ko, ko + D, 0f);
                java.util.Arrays.fill(dv, ko, ko + D, 0f);
                for (int i = j; i <= hi; i++) {
                    for (int h = kvh * groups; h < (kvh + 1) * groups; h++) {
                        int qi = (base + i) * nH + h, qo = qi * D;
                        float pr = (float) Math.exp(Ops.dot(q, qo, k, ko, D) * scale - lse[qi]);
                        float dpv = Ops.dot(dOut, qo, v, ko, D);
                        Ops.axpy(pr * (dpv - dsum[qi]) * scale, q, qo, dk, ko, D);
                        Ops.axpy(pr, dOut, qo, dv, ko, D);
                    }
                }
            }
        });
    }

    // ------------------------------------------------------------------ MLP activation

    /**
     * Backward of act = gelu_tanh(g)·u: dg = dAct·u·gelu'(g), du = dAct·gelu(g) (both OVERWRITTEN; dg may alias dAct).
     * Vectorized, one tanh per element shared by gelu and its derivative.
     */
    public static void geluMulBackward(float[] g, float[] u, float[] dAct, float[] dg, float[] du, int len) {
        final float c = 0.7978845608028654f, k = 0.044715f;
        Parallel.forRange(len, 16384, (a, b) -> {
            int i = a;
            for (; i + L <= b; i += L) {
                FloatVector x = FloatVector.fromArray(F, g, i);
                FloatVector da = FloatVector.fromArray(F, dAct, i);
                FloatVector x2 = x.mul(x);
                FloatVector t = Ops.tanh(x2.mul(k).add(1f).mul(x).mul(c));
                FloatVector half = t.add(1f).mul(0.5f);
                FloatVector gelu = x.mul(half);
                FloatVector one_t2 = t.mul(t).neg().add(1f);
                FloatVector dgelu = x.mul(0.5f * c).mul(one_t2).mul(x2.mul(3 * k).add(1f)).add(half);
                da.mul(gelu).intoArray(du, i);
                da.mul(FloatVector.fromArray(F, u, i)).mul(dgelu).intoArray(dg, i);
            }
            for (; i < b; i++) { // the same float operations as the vector body
                float x = g[i], da = dAct[i], x2 = x * x;
                float t = Ops.tanh((x2 * k + 1f) * x * c);
                float half = (t + 1f) * 0.5f;
                float one_t2 = -(t * t) + 1f;
                float dgelu = x * (0.5f * c) * one_t2 * (x2 * (3 * k) + 1f) + half;
                du[i] = da * (x * half);
                dg[i] = da * u[i] * dgelu;
            }
        });
    }

    /** Recomputes act = gelu_tanh(g)·u exactly as the forward pass does. */
    public static void geluMul(float[] g, float[] u, float[] act, int len) {
        Parallel.forRange(len, 16384, (a, b) -> Ops.geluMul(g, u, act, a, b));
    }

    // ------------------------------------------------------------------ linear + LoRA

    /**
     * Backward of {@link Linear#forward}: dx += dy·W (+ LoRA), dW += dyᵀ·x, and the LoRA factors' gradients.
     * {@code loraMid} is the saved scale·x·Aᵀ [n, r] (only read when the module has LoRA).
     */
    public static void linearBackward(Linear lin, float[] x, float[] dy, int n, float[] dx, float[] dW,
                                      float[] loraMid, float[] dA, float[] dB) {
        linearBackward(lin, x, dy, n, dx, dW, loraMid, dA, dB, 0L);
    }

    /** {@link #linearBackward} of a forward that ran with LoRA dropout seed {@code dropoutSeed} (0 = none). */
    public static void linearBackward(Linear lin, float[] x, float[] dy, int n, float[] dx, float[] dW,
                                      float[] loraMid, float[] dA, float[] dB, long dropoutSeed) {
        linearBackward(lin, x, dy, n, dx, dW, loraMid, dA, dB, null, dropoutSeed);
    }

    /**
     * {@link #linearBackward} for any adapter: {@code dIa3} receives the gradient of an unmerged (IA)³ vector
     * ({@code mid} is then the saved unscaled output of an output-scaling module, see {@link #ia3Backward}).
     */
    public static void linearBackward(Linear lin, float[] x, float[] dy, int n, float[] dx, float[] dW,
                                      float[] mid, float[] dA, float[] dB, float[] dIa3, long dropoutSeed) {
        if (lin.ia3 != null && !lin.merged) {
            ia3Backward(lin, x, dy, n, dx, dW, mid, dIa3);
            return;
        }
        float[] loraMid = mid;
        if (dx != null) BackMatMul.dx(dy, n, lin.weight, dx);
        if (dW != null) BackMatMul.dW(dy, x, n, lin.out(), lin.in(), dW);
        if (lin.lora != null && (dx != null || dA != null || dB != null)) loraBackward(lin.lora, x, loraMid, dy, n, dx, dA, dB, dropoutSeed);
    }

    /**
     * Backward of an (IA)³ module. Output scaling y = z ⊙ l with z = x·Wᵀ ({@code z} saved by the forward as its mid):
     * dl += Σ_rows dy ⊙ z, dz = dy ⊙ l, dx += dz·W, dW += dzᵀ·x. Input scaling (feed-forward) y = (x ⊙ l)·Wᵀ:
     * g = dy·W, dl += Σ_rows g ⊙ x, dx += g ⊙ l, dW += dyᵀ·(x ⊙ l).
     */
    public static void ia3Backward(Linear lin, float[] x, float[] dy, int n, float[] dx, float[] dW, float[] z, float[] dl) {
        float[] l = lin.ia3.l;
        int in = lin.in(), out = lin.out();
        if (!lin.ia3.feedforward) {
            if (dl != null) columnDots(dy, z, n, out, dl);
            if (dx == null && dW == null) return;
            float[] dz = new float[n * out];
            for (int r = 0; r < n; r++) for (int o = 0; o < out; o++) dz[r * out + o] = dy[r * out + o] * l[o];
            if (dx != null) BackMatMul.dx(dz, n, lin.weight, dx);
            if (dW != null) BackMatMul.dW(dz, x, n, out, in, dW);
            return;
        }
        if (dW != null) {
            float[] xs = new float[n * in];
            for (int r = 0; r < n; r++) for (int i = 0; i < in; i++) xs[r * in + i] = x[r * in + i] * l[i];
            BackMatMul.dW(dy, xs, n, out, in, dW);
        }
        if (dx == null && dl == null) return;
        float[] g = new float[n * in];
        BackMatMul.dx(dy, n, lin.weight, g);
        if (dl != null) columnDots(g, x, n, in, dl);
        if (dx != null) for (int r = 0; r < n; r++) for (int i = 0; i < in; i++) dx[r * in + i] += g[r * in + i] * l[i];
    }

    /** acc[j] += Σ_r a[r, j]·b[r, j] over n rows of width w (summed in double). */
    static void columnDots(float[] a, float[] b, int n, int w, float[] acc) {
        double[] s = new double[w];
        for (int r = 0; r < n; r++) {
            int o = r * w;
            for (int j = 0; j < w; j++) s[j] += (double) a[o + j] * b[o + j];
        }
        for (int j = 0; j < w; j++) acc[j] += (float) s[j];
    }

    /**
     * Backward of the LoRA branch y += mid·Bᵀ with mid = s·x·Aᵀ (saved): dB += dyᵀ·mid, dmid = s·dy·B,
     * dA += dmidᵀ·x, dx += dmid·A.
     */
    public static void loraBackward(Linear.Lora lora, float[] x, float[] mid, float[] dy, int n, float[] dx, float[] dA, float[] dB) {
        loraBackward(lora, x, mid, dy, n, dx, dA, dB, 0L);
    }

    /**
     * {@link #loraBackward} with LoRA dropout: the forward used xd = dropout(x) (mask recomputed from {@code dropoutSeed}), so
     * dA += dmidᵀ·xd and dx += dropout(dmid·A) with the same mask and scale.
     */
    public static void loraBackward(Linear.Lora lora, float[] x, float[] mid, float[] dy, int n, float[] dx, float[] dA, float[] dB,
                                    long dropoutSeed) {
        int r = lora.r, in = lora.a.cols, out = lora.b.rows;
        boolean drop = dropoutSeed != 0 && lora.dropout > 0f;
        if (dB != null) outerAccumulate(dy, mid, n, out, r, dB);
        if (dx == null && dA == null) return;
        // dmid [n, r] = dy·B as a product against Bᵀ [r, out] (vectorized over the long dimension out)
        float[] b = lora.b.array(), bt = new float[r * out];
        for (int o = 0; o < out; o++) for (int k = 0; k < r; k++) bt[k * out + o] = b[o * r + k];
        float[] dmid = new float[n * r];
        MatMul.xWt(dy, 0, n, Matrix.heap(r, out, bt), dmid, 0, false);
        if (lora.scale != 1f) for (int i = 0; i < dmid.length; i++) dmid[i] *= lora.scale;
        if (dA != null) {
            float[] xd = x;
            if (drop) {
                xd = new float[n * in];
                Linear.dropout(x, xd, n * in, lora.dropout, dropoutSeed);
            }
            BackMatMul.dW(dmid, xd, n, r, in, dA);
        }
        if (dx != null) {
            if (!drop) {
                BackMatMul.dx(dmid, n, lora.a, dx);
            } else {
                float[] t = new float[n * in];
                BackMatMul.dx(dmid, n, lora.a, t);
                Linear.dropout(t, t, n * in, lora.dropout, dropoutSeed);
                for (int i = 0; i < n * in; i++) dx[i] += t[i];
            }
        }
    }

    /**
     * dW[out, r] += dyᵀ·x for a narrow x [n, r] (LoRA's B gradient): streams dy once, parallel over blocks of output rows,
     * each block of dW staying in cache.
     */
    public static void outerAccumulate(float[] dy, float[] x, int n, int out, int r, float[] dW) {
        final int blk = 64;
        Parallel.forRange((out + blk - 1) / blk, 1, (b0, b1) -> {
            for (int bb = b0; bb < b1; bb++) {
                int o0 = bb * blk, o1 = Math.min(out, o0 + blk);
                for (int t = 0; t < n; t++) {
                    int dyo = t * out, xo = t * r;
                    for (int o = o0; o < o1; o++) {
                        float c = dy[dyo + o];
                        if (c == 0f) continue;
                        int wo = o * r;
                        for (int k = 0; k < r; k++) dW[wo + k] += c * x[xo + k];
                    }
                }
            }
        });
    }

    // ------------------------------------------------------------------ embeddings

    /**
     * Backward of the scaled input embedding x[row] = E[id]·scale: dE[id] += scale·dx[row] for every row with a token id ≥ 0
     * (virtual rows have −1). Rows whose id is {@code paddingIdx} get no gradient, as nn.Embedding(padding_idx) does.
     */
    public static void embeddingBackward(int[] tokenIds, float[] dx, int H, float scale, int paddingIdx, float[] dE) {
        for (int r = 0; r < tokenIds.length; r++) {
            int id = tokenIds[r];
            if (id < 0 || id == paddingIdx) continue;
            int eo = id * H, xo = r * H;
            for (int i = 0; i < H; i++) dE[eo + i] += scale * dx[xo + i];
        }
    }

    /**
     * Prompt tuning: the gradient of the shared virtual-token vectors [nVirtual, H] is the sum over sequences of the
     * gradient at their first nVirtual rows (PEFT repeats the same prompt for every sequence of the batch).
     */
    public static void virtualTokensBackward(int[] rowStart, float[] dx, int H, int nVirtual, float[] dPrompt) {
        for (int start : rowStart) {
            for (int i = 0; i < nVirtual * H; i++) dPrompt[i] += dx[start * H + i];
        }
    }
}
