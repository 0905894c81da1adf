package dev.peft4j.train;

import dev.peft4j.model.Linear;
import dev.peft4j.tensor.Matrix;
import org.junit.jupiter.api.Test;

import java.util.Random;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Every backward kernel against central finite differences of an independent double-precision forward of the same op, on small
 * random shapes. The scalar checked is L = Σ y·R for a fixed random R, so dL/dy = R is the upstream gradient fed to the kernel.
 */
class KernelsGradientTest {
    final Random rnd = new Random(42);

    float[] rand(int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (rnd.nextGaussian() * scale);
        return a;
    }

    static double[] d(float[] a) {
        double[] r = new double[a.length];
        for (int i = 0; i < a.length; i++) r[i] = a[i];
        return r;
    }

    static double dot(double[] y, float[] r) {
        double s = 0;
        for (int i = 0; i < y.length; i++) s += y[i] * r[i];
        return s;
    }

    /** Central differences of L(x) over every element of x (x is modified and restored). */
    static double[] numeric(double[] x, Function<double[], Double> loss) {
        double[] g = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            double keep = x[i], h = 1e-6 * Math.max(1, Math.abs(keep));
            x[i] = keep + h;
            double up = loss.apply(x);
            x[i] = keep - h;
            double dn = loss.apply(x);
            x[i] = keep;
            g[i] = (up - dn) / (2 * h);
        }
        return g;
    }

    static void assertClose(double[] num, float[] ana, double tol, String what) {
        double n = 0, den = 0;
        for (int i = 0; i < num.length; i++) {
            n += (num[i] - ana[i]) * (num[i] - ana[i]);
            den += num[i] * num[i];
        }
        double rel = Math.sqrt(n / Math.max(den, 1e-30));
        assertTrue(den > 0, what + ": gradient is all zero");
        assertTrue(rel < tol, what + ": relative error " + rel);
    }

    // ------------------------------------------------------------------ double-precision forwards

    static double[] rmsNorm(double[] x, double[] w, int n, int dd, double eps) {
        double[] y = new double[x.length];
        for (int r = 0; r < n; r++) {
            double ss = 0;
            for (int i = 0; i < dd; i++) ss += x[r * dd + i] * x[r * dd + i];
            double rs = 1 / Math.sqrt(ss / dd + eps);
            for (int i = 0; i < dd; i++) y[r * dd + i] = x[r * dd + i] * rs * (1 + w[i]);
        }
        return y;
    }

    static double[] rope(double[] x, int n, int heads, int dim, int[] pos, float[] cos, float[] sin) {
        double[] y = x.clone();
        int half = dim / 2;
        for (int r = 0; r < n; r++) for (int h = 0; h < heads; h++) {
            int b = (r * heads + h) * dim;
            for (int i = 0; i < half; i++) {
                double c = cos[pos[r] * half + i], s = sin[pos[r] * half + i];
                y[b + i] = x[b + i] * c - x[b + half + i] * s;
                y[b + half + i] = x[b + half + i] * c + x[b + i] * s;
            }
        }
        return y;
    }

    static double[] attention(double[] q, double[] k, double[] v, int[] rowStart, int[] rowCount, int nH, int nKV, int D, double scale, int window) {
        int N = q.length / (nH * D), g = nH / nKV;
        double[] out = new double[N * nH * D];
        for (int s = 0; s < rowStart.length; s++) for (int i = 0; i < rowCount[s]; i++) for (int h = 0; h < nH; h++) {
            int qo = ((rowStart[s] + i) * nH + h) * D;
            int lo = window > 0 ? Math.max(0, i - window + 1) : 0;
            double[] sc = new double[i - lo + 1];
            double max = Double.NEGATIVE_INFINITY, sum = 0;
            for (int j = lo; j <= i; j++) {
                int ko = ((rowStart[s] + j) * nKV + h / g) * D;
                double t = 0;
                for (int e = 0; e < D; e++) t += q[qo + e] * k[ko + e];
                sc[j - lo] = t * scale;
                max = Math.max(max, sc[j - lo]);
            }
            for (int j = 0; j < sc.length; j++) sum += sc[j] = Math.exp(sc[j] - max);
            for (int j = lo; j <= i; j++) {
                int vo = ((rowStart[s] + j) * nKV + h / g) * D;
                for (int e = 0; e < D; e++) out[qo + e] += sc[j - lo] / sum * v[vo + e];
            }
        }
        return out;
    }

    static double gelu(double x) {
        return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    }

    /** y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ */
    static double[] linear(double[] x, double[] w, double[] a, double[] b, double s, int n, int in, int out, int r) {
        double[] y = new double[n * out];
        for (int t = 0; t < n; t++) {
            double[] mid = new double[r];
            for (int k = 0; k < r; k++) for (int i = 0; i < in; i++) mid[k] += x[t * in + i] * a[k * in + i];
            for (int o = 0; o < out; o++) {
                double acc = 0;
                for (int i = 0; i < in; i++) acc += x[t * in + i] * w[o * in + i];
                for (int k = 0; k < r; k++) acc += s * mid[k] * b[o * r + k];
                y[t * out + o] = acc;
            }
        }
        return y;
    }

    // ------------------------------------------------------------------ tests

    @Test
    void rmsNormBackwardPerRowAndPerHead() {
        for (int[] shape : new int[][]{{5, 24}, {3 * 4, 8}}) {   // per row (n rows of width d), per head (rows·heads of head_dim)
            int n = shape[0], dd = shape[1];
            float[] x = rand(n * dd, 1.5), w = rand(dd, 0.3), R = rand(n * dd, 1);
            float[] rstd = new float[n], y = new float[n * dd];
            dev.peft4j.tensor.Ops.rmsNorm(x, 0, y, 0, n, dd, w, 1e-6f, rstd, 0);
            float[] dx = new float[n * dd], dw = new float[dd];
            Kernels.rmsNormBackward(x, rstd, w, R, dx, dw, n, dd);
            double[] xd = d(x), wd = d(w);
            assertClose(numeric(xd, xx -> dot(rmsNorm(xx, wd, n, dd, 1e-6), R)), dx, 1e-4, "rmsnorm dx " + n + "x" + dd);
            assertClose(numeric(wd, ww -> dot(rmsNorm(xd, ww, n, dd, 1e-6), R)), dw, 1e-4, "rmsnorm dw " + n + "x" + dd);
        }
    }

    @Test
    void ropeBackwardIsTheInverseRotation() {
        int n = 6, heads = 3, dim = 8, half = 4;
        int[] pos = {0, 1, 2, 7, 3, 5};
        float[] cos = new float[8 * half], sin = new float[8 * half];
        for (int p = 0; p < 8; p++) for (int i = 0; i < half; i++) {
            double ang = p * Math.pow(100, -(double) i / half);
            cos[p * half + i] = (float) Math.cos(ang);
            sin[p * half + i] = (float) Math.sin(ang);
        }
        float[] x = rand(n * heads * dim, 1), R = rand(n * heads * dim, 1);
        float[] g = R.clone();
        Kernels.ropeBackward(g, n, heads, dim, pos, cos, sin);
        assertClose(numeric(d(x), xx -> dot(rope(xx, n, heads, dim, pos, cos, sin), R)), g, 1e-5, "rope dx");
    }

    @Test
    void attentionBackwardCausalSlidingGqaPacked() {
        int nH = 4, nKV = 2, D = 8;
        int[] rowStart = {0, 7}, rowCount = {7, 5};
        int N = 12;
        float scale = (float) Math.pow(6, -0.5);
        for (boolean tiled : new boolean[]{true, false}) {
            for (int window : new int[]{0, 3}) {
                float[] q = rand(N * nH * D, 1), k = rand(N * nKV * D, 1), v = rand(N * nKV * D, 1), R = rand(N * nH * D, 1);
                float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
                if (tiled) Kernels.attentionBackward(q, k, v, R, dq, dk, dv, rowStart, rowCount, nH, nKV, D, scale, window);
                else Kernels.attentionBackwardRowwise(q, k, v, R, dq, dk, dv, rowStart, rowCount, nH, nKV, D, scale, window);
                double[] qd = d(q), kd = d(k), vd = d(v);
                String w = " (window " + window + (tiled ? ", tiled)" : ", row-wise)");
                assertClose(numeric(qd, x -> dot(attention(x, kd, vd, rowStart, rowCount, nH, nKV, D, scale, window), R)), dq, 1e-4, "attention dq" + w);
                assertClose(numeric(kd, x -> dot(attention(qd, x, vd, rowStart, rowCount, nH, nKV, D, scale, window), R)), dk, 1e-4, "attention dk" + w);
                assertClose(numeric(vd, x -> dot(attention(qd, kd, x, rowStart, rowCount, nH, nKV, D, scale, window), R)), dv, 1e-4, "attention dv" + w);
            }
        }
    }

    /** The tiled kernel against the row-wise one on longer packed sequences (several blocks, windows inside blocks, tails). */
    @Test
    void tiledAttentionBackwardEqualsRowwise() {
        int[][] cfg = {{4, 1, 32}, {4, 2, 40}, {2, 2, 3}};   // heads, kv heads, head_dim (40 and 3: vector tails)
        int[] rowStart = {0, 70, 71, 116}, rowCount = {70, 1, 45, 33};
        int N = 149;
        for (int[] c : cfg) {
            int nH = c[0], nKV = c[1], D = c[2];
            for (int window : new int[]{0, 20, 5, 16}) {
                float[] q = rand(N * nH * D, 1), k = rand(N * nKV * D, 1), v = rand(N * nKV * D, 1), R = rand(N * nH * D, 1);
                float[][] a = {new float[q.length], new float[k.length], new float[v.length]};
                float[][] b = {new float[q.length], new float[k.length], new float[v.length]};
                java.util.Arrays.fill(a[0], 9f);   // outputs are overwritten, whatever they held
                Kernels.attentionBackward(q, k, v, R, a[0], a[1], a[2], rowStart, rowCount, nH, nKV, D, 0.3f, window);
                Kernels.attentionBackwardRowwise(q, k, v, R, b[0], b[1], b[2], rowStart, rowCount, nH, nKV, D, 0.3f, window);
                for (int t = 0; t < 3; t++) assertClose(d(b[t]), a[t], 1e-5, "tiled vs row-wise " + "qkv".charAt(t) + " " + java.util.Arrays.toString(c) + " window " + window);
            }
        }
    }

    @Test
    void geluTimesUpBackward() {
        int n = 200;
        float[] g = rand(n, 2), u = rand(n, 1), R = rand(n, 1);
        float[] dg = new float[n], du = new float[n];
        Kernels.geluMulBackward(g, u, R, dg, du, n);
        double[] gd = d(g), ud = d(u);
        assertClose(numeric(gd, x -> { double s = 0; for (int i = 0; i < n; i++) s += gelu(x[i]) * ud[i] * R[i]; return s; }), dg, 1e-5, "gelu dg");
        assertClose(numeric(ud, x -> { double s = 0; for (int i = 0; i < n; i++) s += gelu(gd[i]) * x[i] * R[i]; return s; }), du, 1e-5, "gelu du");
    }

    @Test
    void linearAndLoraBackward() {
        int n = 9, in = 20, out = 13, r = 3;
        float s = 2f;
        float[] x = rand(n * in, 1), w = rand(out * in, 0.3), a = rand(r * in, 0.3), b = rand(out * r, 0.3), R = rand(n * out, 1);
        Linear lin = new Linear("m", Matrix.heap(out, in, w.clone()));
        lin.lora = new Linear.Lora(r, s, a.clone(), b.clone(), in, out);
        float[] y = new float[n * out], mid = new float[n * r];
        lin.forward(x, n, y, mid);
        double[] xd = d(x), wd = d(w), ad = d(a), bd = d(b);
        double maxDiff = 0;
        double[] yd = linear(xd, wd, ad, bd, s, n, in, out, r);
        for (int i = 0; i < y.length; i++) maxDiff = Math.max(maxDiff, Math.abs(y[i] - yd[i]));
        assertTrue(maxDiff < 1e-5, "forward differs by " + maxDiff);
        float[] dx = new float[n * in], dW = new float[out * in], dA = new float[r * in], dB = new float[out * r];
        Kernels.linearBackward(lin, x, R, n, dx, dW, mid, dA, dB);
        assertClose(numeric(xd, v -> dot(linear(v, wd, ad, bd, s, n, in, out, r), R)), dx, 1e-5, "linear dx");
        assertClose(numeric(wd, v -> dot(linear(xd, v, ad, bd, s, n, in, out, r), R)), dW, 1e-5, "linear dW");
        assertClose(numeric(ad, v -> dot(linear(xd, wd, v, bd, s, n, in, out, r), R)), dA, 1e-5, "lora dA");
        assertClose(numeric(bd, v -> dot(linear(xd, wd, ad, v, s, n, in, out, r), R)), dB, 1e-5, "lora dB");
        // frozen base weight: dW skipped, the rest unchanged
        float[] dx2 = new float[n * in], dA2 = new float[r * in];
        Kernels.linearBackward(lin, x, R, n, dx2, null, mid, dA2, null);
        assertArrayEquals(dx, dx2);
        assertArrayEquals(dA, dA2);
    }

    @Test
    void loraBackwardWithDropout() {
        int n = 7, in = 24, out = 11, r = 2;
        float s = 2f, p = 0.3f;
        long seed = 0x5EEDL;
        float[] x = rand(n * in, 1), w = rand(out * in, 0.3), a = rand(r * in, 0.3), b = rand(out * r, 0.3), R = rand(n * out, 1);
        Linear lin = new Linear("m", Matrix.heap(out, in, w.clone()));
        lin.lora = new Linear.Lora(r, s, a.clone(), b.clone(), in, out);
        lin.lora.dropout = p;
        float[] y = new float[n * out], mid = new float[n * r];
        lin.forward(x, n, y, mid, seed);
        // the mask as a pure function of (seed, index): applied to ones it gives 0 or 1/(1-p)
        float[] mask = new float[n * in];
        java.util.Arrays.fill(mask, 1f);
        Linear.dropout(mask, mask, n * in, p, seed);
        int zeros = 0;
        for (float m : mask) {
            if (m == 0f) zeros++;
            else assertEquals(1f / (1f - p), m, 1e-6f);
        }
        assertTrue(zeros > 0 && zeros < n * in, "mask drops " + zeros + " of " + n * in);
        double[] xd = d(x), wd = d(w), ad = d(a), bd = d(b);
        Function<double[][], double[]> fwd = v -> {
            double[] xm = v[0].clone();
            for (int i = 0; i < xm.length; i++) xm[i] *= mask[i];
            double[] base = linear(v[0], v[1], v[2], v[3], 0, n, in, out, r);
            double[] lora = linear(xm, new double[out * in], v[2], v[3], s, n, in, out, r);
            for (int i = 0; i < base.length; i++) base[i] += lora[i];
            return base;
        };
        double[] yd = fwd.apply(new double[][]{xd, wd, ad, bd});
        for (int i = 0; i < y.length; i++) assertEquals(yd[i], y[i], 1e-5, "forward with dropout");
        float[] dx = new float[n * in], dA = new float[r * in], dB = new float[out * r];
        Kernels.linearBackward(lin, x, R, n, dx, null, mid, dA, dB, seed);
        assertClose(numeric(xd, v -> dot(fwd.apply(new double[][]{v, wd, ad, bd}), R)), dx, 1e-5, "dropout dx");
        assertClose(numeric(ad, v -> dot(fwd.apply(new double[][]{xd, wd, v, bd}), R)), dA, 1e-5, "dropout dA");
        assertClose(numeric(bd, v -> dot(fwd.apply(new double[][]{xd, wd, ad, v}), R)), dB, 1e-5, "dropout dB");
        // without a seed (evaluation) there is no dropout
        float[] y0 = new float[n * out];
        lin.forward(x, n, y0, null, 0L);
        double[] ye = linear(xd, wd, ad, bd, s, n, in, out, r);
        for (int i = 0; i < y0.length; i++) assertEquals(ye[i], y0[i], 1e-5);
    }

    @Test
    void dropoutMaskRate() {
        int len = 200_000;
        float[] ones = new float[len];
        java.util.Arrays.fill(ones, 1f);
        for (float p : new float[]{0.05f, 0.5f}) {
            float[] m = new float[len];
            Linear.dropout(ones, m, len, p, 99L);
            int z = 0;
            for (float v : m) if (v == 0f) z++;
            double sd = Math.sqrt(len * p * (1 - p));
            assertEquals(len * p, z, 5 * sd, "dropped elements at p=" + p);
        }
    }

    @Test
    void embeddingAndVirtualTokenBackward() {
        int V = 7, H = 5;
        float scale = 2.5f;
        int[] ids = {-1, -1, 3, 0, 3, -1, -1, 6, 1};   // two sequences, each with 2 virtual rows; 0 = padding_idx
        int[] rowStart = {0, 5};
        float[] E = rand(V * H, 1), P = rand(2 * H, 1), R = rand(ids.length * H, 1);
        // forward: x[row] = virtual row, or E[id]·scale
        Function<double[][], double[]> fwd = ep -> {
            double[] x = new double[ids.length * H];
            for (int row = 0; row < ids.length; row++) for (int i = 0; i < H; i++) {
                int local = row - (row >= 5 ? 5 : 0);
                x[row * H + i] = ids[row] < 0 ? ep[1][local * H + i] : ep[0][ids[row] * H + i] * scale;
            }
            return x;
        };
        float[] dE = new float[V * H], dP = new float[2 * H];
        Kernels.embeddingBackward(ids, R, H, scale, 0, dE);
        Kernels.virtualTokensBackward(rowStart, R, H, 2, dP);
        double[] ed = d(E), pd = d(P);
        double[] numE = numeric(ed, e -> dot(fwd.apply(new double[][]{e, pd}), R));
        for (int i = 0; i < H; i++) numE[i] = 0;   // nn.Embedding(padding_idx=0): row 0 gets no gradient
        assertClose(numE, dE, 1e-6, "embedding dE");
        assertClose(numeric(pd, p -> dot(fwd.apply(new double[][]{ed, p}), R)), dP, 1e-6, "virtual tokens dP");
    }

    @Test
    void chunkedCrossEntropyWithSoftcap() {
        int N = 6, H = 8, V = 50;
        int[] targets = {3, -100, 49, 0, -100, 17};
        float[] hid = rand(N * H, 1), head = rand(V * H, 1);
        int saved = CrossEntropy.maxChunkFloats;
        try {
            for (Double cap : new Double[]{null, 3.0}) {
                for (int chunkFloats : new int[]{1 << 20, 4 * 7}) {   // one chunk; chunks of 7 columns (50 = 7·7 + 1)
                    CrossEntropy.maxChunkFloats = chunkFloats;
                    float[] dh = new float[N * H], dHead = new float[V * H];
                    double loss = CrossEntropy.lossAndGrad(hid, H, targets, Matrix.heap(V, H, head), cap, 0.25f, dh, dHead);
                    Function<double[][], Double> ref = hw -> {
                        double sum = 0;
                        for (int r = 0; r < N; r++) {
                            if (targets[r] == -100) continue;
                            double[] z = new double[V];
                            double max = Double.NEGATIVE_INFINITY, se = 0;
                            for (int o = 0; o < V; o++) {
                                for (int i = 0; i < H; i++) z[o] += hw[0][r * H + i] * hw[1][o * H + i];
                                if (cap != null) z[o] = cap * Math.tanh(z[o] / cap);
                                max = Math.max(max, z[o]);
                            }
                            for (int o = 0; o < V; o++) se += Math.exp(z[o] - max);
                            sum += max + Math.log(se) - z[targets[r]];
                        }
                        return sum;
                    };
                    double[] hd = d(hid), wd = d(head);
                    double want = ref.apply(new double[][]{hd, wd});
                    assertEquals(want, loss, 1e-5 * Math.abs(want), "loss (cap " + cap + ", chunk " + chunkFloats + ")");
                    double[] nh = numeric(hd, x -> 0.25 * ref.apply(new double[][]{x, wd}));
                    for (int r = 0; r < N; r++) if (targets[r] == -100) for (int i = 0; i < H; i++) assertEquals(0f, dh[r * H + i]);
                    assertClose(nh, dh, 1e-4, "d hidden (cap " + cap + ")");
                    assertClose(numeric(wd, x -> 0.25 * ref.apply(new double[][]{hd, x})), dHead, 1e-4, "d head (cap " + cap + ")");
                    // forward only gives the same loss
                    assertEquals(loss, CrossEntropy.lossAndGrad(hid, H, targets, Matrix.heap(V, H, head), cap, 1f, null, null), 1e-9);
                }
            }
        } finally {
            CrossEntropy.maxChunkFloats = saved;
        }
    }

    /** Wider vocabulary (vector paths, several chunks) against the closed-form gradient in double precision. */
    @Test
    void chunkedCrossEntropyAgainstClosedForm() {
        int N = 5, H = 16, V = 300;
        int[] targets = {299, 0, -100, 150, 17};
        float[] hid = rand(N * H, 1), head = rand(V * H, 1);
        int saved = CrossEntropy.maxChunkFloats;
        try {
            for (Double cap : new Double[]{null, 4.0}) {
                for (int chunkFloats : new int[]{1 << 20, 4 * 130}) {   // one chunk; chunks of 130 columns
                    CrossEntropy.maxChunkFloats = chunkFloats;
                    double want = 0;
                    double[] wdh = new double[N * H], wdw = new double[V * H];
                    for (int r = 0; r < N; r++) {
                        if (targets[r] == -100) continue;
                        double[] z = new double[V], dz = new double[V];
                        double max = Double.NEGATIVE_INFINITY, se = 0;
                        for (int o = 0; o < V; o++) {
                            for (int i = 0; i < H; i++) z[o] += (double) hid[r * H + i] * head[o * H + i];
                            dz[o] = 1;
                            if (cap != null) { double y = Math.tanh(z[o] / cap); z[o] = cap * y; dz[o] = 1 - y * y; }
                            max = Math.max(max, z[o]);
                        }
                        for (int o = 0; o < V; o++) se += Math.exp(z[o] - max);
                        want += max + Math.log(se) - z[targets[r]];
                        for (int o = 0; o < V; o++) {
                            double g = 0.5 * (Math.exp(z[o] - max) / se - (o == targets[r] ? 1 : 0)) * dz[o];
                            for (int i = 0; i < H; i++) { wdh[r * H + i] += g * head[o * H + i]; wdw[o * H + i] += g * hid[r * H + i]; }
                        }
                    }
                    float[] dh = new float[N * H], dw = new float[V * H], dh2 = new float[N * H];
                    double loss = CrossEntropy.lossAndGrad(hid, H, targets, Matrix.heap(V, H, head), cap, 0.5f, dh, dw);
                    double loss2 = CrossEntropy.lossAndGrad(hid, H, targets, Matrix.heap(V, H, head), cap, 0.5f, dh2, null);   // fused path
                    String w = " (cap " + cap + ", chunk " + chunkFloats + ")";
                    assertEquals(want, loss, 1e-5 * want, "loss" + w);
                    assertEquals(want, loss2, 1e-5 * want, "loss, fused" + w);
                    assertClose(wdh, dh, 1e-5, "d hidden" + w);
                    assertClose(wdh, dh2, 1e-5, "d hidden, fused" + w);
                    assertClose(wdw, dw, 1e-5, "d head" + w);
                    // a mapped head is read in place (chunks rounded to multiples of 32 rows)
                    java.lang.foreign.MemorySegment seg = java.lang.foreign.Arena.ofAuto().allocate(4L * V * H, 64);
                    for (int i = 0; i < V * H; i++) seg.setAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), i, head[i]);
                    Matrix mapped = Matrix.mapped(V, H, dev.peft4j.tensor.DType.F32, seg);
                    float[] dh3 = new float[N * H], dh4 = new float[N * H], dw4 = new float[V * H];
                    assertEquals(want, CrossEntropy.lossAndGrad(hid, H, targets, mapped, cap, 0.5f, dh3, null), 1e-5 * want, "loss, mapped, fused" + w);
                    assertEquals(want, CrossEntropy.lossAndGrad(hid, H, targets, mapped, cap, 0.5f, dh4, dw4), 1e-5 * want, "loss, mapped" + w);
                    assertClose(wdh, dh3, 1e-5, "d hidden, mapped, fused" + w);
                    assertClose(wdh, dh4, 1e-5, "d hidden, mapped" + w);
                    assertClose(wdw, dw4, 1e-5, "d head, mapped" + w);
                }
            }
        } finally {
            CrossEntropy.maxChunkFloats = saved;
        }
    }

    @Test
    void labelsAreShiftedAndOutOfRangeTargetsRejected() {
        assertArrayEquals(new int[]{-100, 5, 6, -100}, CrossEntropy.shiftLabels(new int[]{4, -100, 5, 6}));
        var e = assertThrows(dev.peft4j.util.UserException.class,
                () -> CrossEntropy.lossAndGrad(new float[4], 2, new int[]{9, -100}, Matrix.heap(3, 2, new float[6]), null, 1f, null, null));
        assertTrue(e.getMessage().contains("labels"), e.getMessage());
    }
}
