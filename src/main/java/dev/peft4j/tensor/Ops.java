package dev.peft4j.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** Forward kernels of the Gemma 3 layer other than matrix products. Row-major float32 arrays; n rows of width d. */
public final class Ops {
    private static final VectorSpecies<Float> F = Matrix.F;
    private static final int L = F.length();

    private Ops() {}

    /**
     * Gemma RMSNorm over rows: out = x / sqrt(mean(x²) + eps) · (1 + w), w the stored weight. Works in place (out == x allowed).
     * If {@code rstdOut} is not null, stores 1/sqrt(mean(x²)+eps) per row (for the backward pass).
     */
    public static void rmsNorm(float[] x, int xOff, float[] out, int outOff, int n, int d, float[] w, float eps, float[] rstdOut, int rstdOff) {
        for (int r = 0; r < n; r++) {
            int xo = xOff + r * d, oo = outOff + r * d;
            FloatVector acc = FloatVector.zero(F);
            int i = 0;
            int bound = F.loopBound(d);
            for (; i < bound; i += L) {
                FloatVector v = FloatVector.fromArray(F, x, xo + i);
                acc = v.fma(v, acc);
            }
            float ss = acc.reduceLanes(VectorOperators.ADD);
            for (; i < d; i++) ss += x[xo + i] * x[xo + i];
            float rstd = (float) (1.0 / Math.sqrt(ss / d + eps));
            if (rstdOut != null) rstdOut[rstdOff + r] = rstd;
            i = 0;
            for (; i < bound; i += L) {
                FloatVector v = FloatVector.fromArray(F, x, xo + i).mul(rstd);
                v.mul(FloatVector.fromArray(F, w, i).add(1f)).intoArray(out, oo + i);
            }
            for (; i < d; i++) out[oo + i] = x[xo + i] * rstd * (1f + w[i]);
        }
    }

    /**
     * Rotary embedding, rotate-half layout (dim i pairs with i + d/2), in place on {@code heads} heads of width {@code d} per row.
     * cos/sin tables are [maxPos, d/2]; row r has absolute position pos[r].
     */
    public static void rope(float[] x, int n, int heads, int d, int[] pos, float[] cos, float[] sin) {
        int half = d / 2;
        for (int r = 0; r < n; r++) {
            int tb = pos[r] * half;
            for (int h = 0; h < heads; h++) {
                int b = (r * heads + h) * d;
                for (int i = 0; i < half; i++) {
                    float c = cos[tb + i], s = sin[tb + i];
                    float x1 = x[b + i], x2 = x[b + half + i];
                    x[b + i] = x1 * c - x2 * s;
                    x[b + half + i] = x2 * c + x1 * s;
                }
            }
        }
    }

    /** gelu with the tanh approximation (PyTorch's gelu(approximate="tanh")). */
    public static float geluTanh(float x) {
        double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
        return (float) (0.5 * x * (1.0 + Math.tanh(u)));
    }

    /** out[i] = gelu_tanh(g[i]) · u[i] for i in [0, len). */
    public static void geluMul(float[] g, float[] u, float[] out, int len) {
        for (int i = 0; i < len; i++) out[i] = geluTanh(g[i]) * u[i];
    }

    public static float dot(float[] a, int ao, float[] b, int bo, int len) {
        FloatVector acc = FloatVector.zero(F);
        int i = 0;
        int bound = F.loopBound(len);
        for (; i < bound; i += L) acc = FloatVector.fromArray(F, a, ao + i).fma(FloatVector.fromArray(F, b, bo + i), acc);
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; i < len; i++) s += a[ao + i] * b[bo + i];
        return s;
    }

    /** y[yo..] += a · x[xo..] */
    public static void axpy(float a, float[] x, int xo, float[] y, int yo, int len) {
        FloatVector av = FloatVector.broadcast(F, a);
        int i = 0;
        int bound = F.loopBound(len);
        for (; i < bound; i += L) av.fma(FloatVector.fromArray(F, x, xo + i), FloatVector.fromArray(F, y, yo + i)).intoArray(y, yo + i);
        for (; i < len; i++) y[yo + i] += a * x[xo + i];
    }
}
