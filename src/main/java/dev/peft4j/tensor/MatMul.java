package dev.peft4j.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Matrix products against a {@link Matrix} W [out, in] (nn.Linear layout), float32 compute, all cores, Vector API.
 * Weights are converted to float32 four rows at a time into a small per-thread buffer and reused across a chunk of input rows,
 * so a product reads the weights about once per {@value #XCHUNK} rows while keeping 4x4 register tiles busy.
 */
public final class MatMul {
    private static final VectorSpecies<Float> F = Matrix.F;
    private static final int L = F.length();
    static final int XCHUNK = 64;
    private static final ThreadLocal<float[][]> SCRATCH = ThreadLocal.withInitial(() -> new float[1][0]);

    private MatMul() {}

    private static float[] scratch(int n) {
        float[][] h = SCRATCH.get();
        if (h[0].length < n) h[0] = new float[n];
        return h[0];
    }

    /** y[n, out] = x[n, in] · Wᵀ (overwrites y). */
    public static void xWt(float[] x, int n, Matrix w, float[] y) {
        xWt(x, 0, n, w, y, 0, false);
    }

    /**
     * y[yOff + r*out + o] (=|+=) Σ_i x[xOff + r*in + i] · W[o, i], for r in [0,n). Parallel over output rows.
     */
    public static void xWt(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean accumulate) {
        final int in = w.cols, out = w.rows;
        int grain = Math.max(4, (int) Math.min(out, 65536L / Math.max(1, in)));
        Parallel.forRange((out + 3) / 4, Math.max(1, grain / 4), (b0, b1) -> {
            float[] wb = scratch(4 * in);
            int o0 = b0 * 4, o1 = Math.min(out, b1 * 4);
            for (int xc = 0; xc < n; xc += XCHUNK) {
                int xe = Math.min(n, xc + XCHUNK);
                for (int o = o0; o < o1; o += 4) {
                    int no = Math.min(4, o1 - o);
                    w.rowsToFloat(o, no, wb, 0);
                    if (no < 4) java.util.Arrays.fill(wb, no * in, 4 * in, 0f);
                    int r = xc;
                    for (; r + 4 <= xe; r += 4) tile4x4(x, xOff + r * in, in, wb, y, yOff + r * out + o, out, no, accumulate);
                    for (; r < xe; r++) tile1x4(x, xOff + r * in, in, wb, y, yOff + r * out + o, no, accumulate);
                }
            }
        });
    }

    private static void tile4x4(float[] x, int xo, int in, float[] wb, float[] y, int yo, int out, int no, boolean acc) {
        FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00;
        FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
        FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        int i = 0;
        int bound = F.loopBound(in);
        for (; i < bound; i += L) {
            FloatVector w0 = FloatVector.fromArray(F, wb, i);
            FloatVector w1 = FloatVector.fromArray(F, wb, in + i);
            FloatVector w2 = FloatVector.fromArray(F, wb, 2 * in + i);
            FloatVector w3 = FloatVector.fromArray(F, wb, 3 * in + i);
            FloatVector x0 = FloatVector.fromArray(F, x, xo + i);
            a00 = x0.fma(w0, a00); a01 = x0.fma(w1, a01); a02 = x0.fma(w2, a02); a03 = x0.fma(w3, a03);
            FloatVector x1 = FloatVector.fromArray(F, x, xo + in + i);
            a10 = x1.fma(w0, a10); a11 = x1.fma(w1, a11); a12 = x1.fma(w2, a12); a13 = x1.fma(w3, a13);
            FloatVector x2 = FloatVector.fromArray(F, x, xo + 2 * in + i);
            a20 = x2.fma(w0, a20); a21 = x2.fma(w1, a21); a22 = x2.fma(w2, a22); a23 = x2.fma(w3, a23);
            FloatVector x3 = FloatVector.fromArray(F, x, xo + 3 * in + i);
            a30 = x3.fma(w0, a30); a31 = x3.fma(w1, a31); a32 = x3.fma(w2, a32); a33 = x3.fma(w3, a33);
        }
        float[] s = {
                a00.reduceLanes(VectorOperators.ADD), a01.reduceLanes(VectorOperators.ADD), a02.reduceLanes(VectorOperators.ADD), a03.reduceLanes(VectorOperators.ADD),
                a10.reduceLanes(VectorOperators.ADD), a11.reduceLanes(VectorOperators.ADD), a12.reduceLanes(VectorOperators.ADD), a13.reduceLanes(VectorOperators.ADD),
                a20.reduceLanes(VectorOperators.ADD), a21.reduceLanes(VectorOperators.ADD), a22.reduceLanes(VectorOperators.ADD), a23.reduceLanes(VectorOperators.ADD),
                a30.reduceLanes(VectorOperators.ADD), a31.reduceLanes(VectorOperators.ADD), a32.reduceLanes(VectorOperators.ADD), a33.reduceLanes(VectorOperators.ADD)};
        for (; i < in; i++) {
            for (int r = 0; r < 4; r++) {
                float xv = x[xo + r * in + i];
                for (int c = 0; c < 4; c++) s[r * 4 + c] += xv * wb[c * in + i];
            }
        }
        for (int r = 0; r < 4; r++) {
            int base = yo + r * out;
            for (int c = 0; c < no; c++) {
                if (acc) y[base + c] += s[r * 4 + c];
                else y[base + c] = s[r * 4 + c];
            }
        }
    }

    private static void tile1x4(float[] x, int xo, int in, float[] wb, float[] y, int yo, int no, boolean acc) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        int bound = F.loopBound(in);
        for (; i < bound; i += L) {
            FloatVector x0 = FloatVector.fromArray(F, x, xo + i);
            a0 = x0.fma(FloatVector.fromArray(F, wb, i), a0);
            a1 = x0.fma(FloatVector.fromArray(F, wb, in + i), a1);
            a2 = x0.fma(FloatVector.fromArray(F, wb, 2 * in + i), a2);
            a3 = x0.fma(FloatVector.fromArray(F, wb, 3 * in + i), a3);
        }
        float[] s = {a0.reduceLanes(VectorOperators.ADD), a1.reduceLanes(VectorOperators.ADD), a2.reduceLanes(VectorOperators.ADD), a3.reduceLanes(VectorOperators.ADD)};
        for (; i < in; i++) {
            float xv = x[xo + i];
            for (int c = 0; c < 4; c++) s[c] += xv * wb[c * in + i];
        }
        for (int c = 0; c < no; c++) {
            if (acc) y[yo + c] += s[c];
            else y[yo + c] = s[c];
        }
    }

    /** dx[n, in] += dy[n, out] · W  (the input gradient of y = x·Wᵀ). Parallel over rows of dx. */
    public static void dyW(float[] dy, int n, Matrix w, float[] dx) {
        final int in = w.cols, out = w.rows;
        Parallel.forRange(n, 4, (r0, r1) -> {
            float[] wb = scratch(4 * in);
            for (int xc = r0; xc < r1; xc += XCHUNK) {
                int xe = Math.min(r1, xc + XCHUNK);
                for (int o = 0; o < out; o += 4) {
                    int no = Math.min(4, out - o);
                    w.rowsToFloat(o, no, wb, 0);
                    for (int r = xc; r < xe; r++) {
                        int dxo = r * in;
                        int dyo = r * out + o;
                        float c0 = dy[dyo], c1 = no > 1 ? dy[dyo + 1] : 0f, c2 = no > 2 ? dy[dyo + 2] : 0f, c3 = no > 3 ? dy[dyo + 3] : 0f;
                        if (c0 == 0f && c1 == 0f && c2 == 0f && c3 == 0f) continue;
                        FloatVector v0 = FloatVector.broadcast(F, c0), v1 = FloatVector.broadcast(F, c1);
                        FloatVector v2 = FloatVector.broadcast(F, c2), v3 = FloatVector.broadcast(F, c3);
                        int i = 0;
                        int bound = F.loopBound(in);
                        for (; i < bound; i += L) {
                            FloatVector acc = FloatVector.fromArray(F, dx, dxo + i);
                            acc = v0.fma(FloatVector.fromArray(F, wb, i), acc);
                            if (no > 1) acc = v1.fma(FloatVector.fromArray(F, wb, in + i), acc);
                            if (no > 2) acc = v2.fma(FloatVector.fromArray(F, wb, 2 * in + i), acc);
                            if (no > 3) acc = v3.fma(FloatVector.fromArray(F, wb, 3 * in + i), acc);
                            acc.intoArray(dx, dxo + i);
                        }
                        for (; i < in; i++) {
                            float s = c0 * wb[i];
                            if (no > 1) s += c1 * wb[in + i];
                            if (no > 2) s += c2 * wb[2 * in + i];
                            if (no > 3) s += c3 * wb[3 * in + i];
                            dx[dxo + i] += s;
                        }
                    }
                }
            }
        });
    }

    /** dW[out, in] += dy[n, out]ᵀ · x[n, in]  (the weight gradient of y = x·Wᵀ). Parallel over rows of dW. */
    public static void dyTx(float[] dy, float[] x, int n, int out, int in, float[] dW) {
        Parallel.forRange(out, 4, (o0, o1) -> {
            for (int o = o0; o < o1; o++) {
                int wo = o * in;
                for (int r = 0; r < n; r++) {
                    float c = dy[r * out + o];
                    if (c == 0f) continue;
                    FloatVector cv = FloatVector.broadcast(F, c);
                    int xo = r * in;
                    int i = 0;
                    int bound = F.loopBound(in);
                    for (; i < bound; i += L) {
                        cv.fma(FloatVector.fromArray(F, x, xo + i), FloatVector.fromArray(F, dW, wo + i)).intoArray(dW, wo + i);
                    }
                    for (; i < in; i++) dW[wo + i] += c * x[xo + i];
                }
            }
        });
    }
}
