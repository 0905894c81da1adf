package dev.peft4j.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** Forward kernels of the Gemma 3 layer other than matrix products. Row-major float32 arrays; n rows of width d. */
public final class Ops {
    private static final VectorSpecies<Float> F = Matrix.F;
    private static final int L = F.length();
    /** Floats per vector in these kernels (16 with AVX-512). */
    public static final int LANES = L;

    private Ops() {}

    /**
     * Gemma RMSNorm over rows: out = x / sqrt(mean(x²) + eps) · (1 + w), w the stored weight. Works in place (out == x allowed).
     * If {@code rstdOut} is not null, stores 1/sqrt(mean(x²)+eps) per row (for the backward pass).
     */
    public static void rmsNorm(float[] x, int xOff, float[] out, int outOff, int n, int d, float[] w, float eps, float[] rstdOut, int rstdOff) {
        if ((long) n * d >= ROWS_PARALLEL) {   // a prefill's or a training batch's rows, split over the threads
            Parallel.forRange(n, Math.max(1, ROWS_GRAIN / d), (a, b) -> rmsNormRows(x, xOff, out, outOff, a, b, d, w, eps, rstdOut, rstdOff));
        } else {
            rmsNormRows(x, xOff, out, outOff, 0, n, d, w, eps, rstdOut, rstdOff);
        }
    }

    /**
     * Element-wise work of at least this many values is split over the threads by rows (each row is computed the same way
     * on whatever thread, so results do not change); below it, one thread (decoding: a dispatch would cost more).
     */
    static final int ROWS_PARALLEL = 1 << 15, ROWS_GRAIN = 1 << 13;

    private static void rmsNormRows(float[] x, int xOff, float[] out, int outOff, int r0, int r1, int d, float[] w, float eps, float[] rstdOut, int rstdOff) {
        for (int r = r0; r < r1; r++) {
            int xo = xOff + r * d, oo = outOff + r * d;
            FloatVector acc = FloatVector.zero(F);
            int i = 0;
            int bound = F.loopBound(d);
            for (; i < bound; i += L) {
                FloatVector v = FloatVector.fromArray(F, x, xo + i);
                acc = v.fma(v, acc);
            }
            float ss = hsum(acc);
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
        if ((long) n * heads * d >= ROWS_PARALLEL) {
            Parallel.forRange(n, Math.max(1, ROWS_GRAIN / (heads * d)), (a, b) -> ropeRows(x, a, b, heads, d, pos, cos, sin));
        } else {
            ropeRows(x, 0, n, heads, d, pos, cos, sin);
        }
    }

    /** {@link #rope} of rows [r0, r1): vectors where the half-width allows (the same products and sums, lane by lane). */
    private static void ropeRows(float[] x, int r0, int r1, int heads, int d, int[] pos, float[] cos, float[] sin) {
        int half = d / 2;
        for (int r = r0; r < r1; r++) {
            int tb = pos[r] * half;
            for (int h = 0; h < heads; h++) {
                int b = (r * heads + h) * d;
                int i = 0;
                for (; i + L <= half; i += L) {
                    FloatVector c = FloatVector.fromArray(F, cos, tb + i), s = FloatVector.fromArray(F, sin, tb + i);
                    FloatVector x1 = FloatVector.fromArray(F, x, b + i), x2 = FloatVector.fromArray(F, x, b + half + i);
                    x1.mul(c).sub(x2.mul(s)).intoArray(x, b + i);
                    x2.mul(c).add(x1.mul(s)).intoArray(x, b + half + i);
                }
                for (; i < half; i++) {
                    float c = cos[tb + i], s = sin[tb + i];
                    float x1 = x[b + i], x2 = x[b + half + i];
                    x[b + i] = x1 * c - x2 * s;
                    x[b + half + i] = x2 * c + x1 * s;
                }
            }
        }
    }

    /** x[i] += y[i] for i in [0, n) (a residual connection), split over the threads when long. */
    public static void addInPlace(float[] x, float[] y, int n) {
        if (n >= ROWS_PARALLEL) Parallel.forRange(n, ROWS_GRAIN, (a, b) -> addRange(x, y, a, b));
        else addRange(x, y, 0, n);
    }

    private static void addRange(float[] x, float[] y, int from, int to) {
        int i = from;
        for (; i + L <= to; i += L) FloatVector.fromArray(F, x, i).add(FloatVector.fromArray(F, y, i)).intoArray(x, i);
        for (; i < to; i++) x[i] += y[i];
    }

    // tanh as a rational function (odd degree-13 over even degree-6 polynomial, clamped at ±7.9053), accurate to 4e-7.
    // Only +, ×, fma and ÷ are used, which are exact IEEE operations in the interpreter, C1, C2 and the Vector API alike, so
    // results never depend on which of them ran the code (the library tanh/exp intrinsics do differ between them).
    private static final float TANH_CLAMP = 7.90531110763549805f;
    private static final float A1 = 4.89352455891786e-03f, A3 = 6.37261928875436e-04f, A5 = 1.48572235717979e-05f,
            A7 = 5.12229709037114e-08f, A9 = -8.60467152213735e-11f, A11 = 2.00018790482477e-13f, A13 = -2.76076847742355e-16f;
    private static final float B0 = 4.89352518554385e-03f, B2 = 2.26843463243900e-03f, B4 = 1.18534705686654e-04f, B6 = 1.19825839466702e-06f;

    public static float tanh(float v) {
        if (Math.abs(v) < 0.0004f) return v;
        float x = Math.max(-TANH_CLAMP, Math.min(TANH_CLAMP, v));
        float x2 = x * x;
        float p = Math.fma(x2, A13, A11);
        p = Math.fma(x2, p, A9);
        p = Math.fma(x2, p, A7);
        p = Math.fma(x2, p, A5);
        p = Math.fma(x2, p, A3);
        p = Math.fma(x2, p, A1);
        p = x * p;
        float q = Math.fma(x2, B6, B4);
        q = Math.fma(x2, q, B2);
        q = Math.fma(x2, q, B0);
        return p / q;
    }

    public static FloatVector tanh(FloatVector v) {
        FloatVector x = v.max(-TANH_CLAMP).min(TANH_CLAMP);
        FloatVector x2 = x.mul(x);
        FloatVector p = x2.fma(FloatVector.broadcast(v.species(), A13), FloatVector.broadcast(v.species(), A11));
        p = x2.fma(p, FloatVector.broadcast(v.species(), A9));
        p = x2.fma(p, FloatVector.broadcast(v.species(), A7));
        p = x2.fma(p, FloatVector.broadcast(v.species(), A5));
        p = x2.fma(p, FloatVector.broadcast(v.species(), A3));
        p = x2.fma(p, FloatVector.broadcast(v.species(), A1));
        p = x.mul(p);
        FloatVector q = x2.fma(FloatVector.broadcast(v.species(), B6), FloatVector.broadcast(v.species(), B4));
        q = x2.fma(q, FloatVector.broadcast(v.species(), B2));
        q = x2.fma(q, FloatVector.broadcast(v.species(), B0));
        FloatVector r = p.div(q);
        return r.blend(v, v.abs().compare(VectorOperators.LT, 0.0004f));
    }

    // exp by range reduction (x = k·ln2 + r) and a degree-6 polynomial for e^r (Cephes expf), accurate to ~2 ulp for
    // x in [-87, 88]; below −87 the result is clamped to e^−87 (irrelevant next to the softmax maximum). Exact IEEE
    // operations only, for the same reason as tanh.
    private static final float EXP_HI = 88.3762626647949f, EXP_LO = -87.0f, LOG2E = 1.44269504088896341f;
    private static final float LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
    private static final float P0 = 1.9875691500E-4f, P1 = 1.3981999507E-3f, P2 = 8.3334519073E-3f, P3 = 4.1665795894E-2f,
            P4 = 1.6666665459E-1f, P5 = 5.0000001201E-1f;

    public static float exp(float v) {
        float x = Math.max(EXP_LO, Math.min(EXP_HI, v));
        float fx = (float) Math.floor(x * LOG2E + 0.5f);
        x = x - fx * LN2_HI;
        x = x - fx * LN2_LO;
        float y = Math.fma(P0, x, P1);
        y = Math.fma(y, x, P2);
        y = Math.fma(y, x, P3);
        y = Math.fma(y, x, P4);
        y = Math.fma(y, x, P5);
        y = Math.fma(y, x * x, x + 1f);
        return y * Float.intBitsToFloat(((int) fx + 127) << 23);
    }

    public static FloatVector exp(FloatVector v) {
        var sp = v.species();
        FloatVector x = v.max(EXP_LO).min(EXP_HI);
        FloatVector t = x.mul(LOG2E).add(0.5f);
        FloatVector fx = t.convert(VectorOperators.F2I, 0).convert(VectorOperators.I2F, 0).reinterpretAsFloats();
        fx = fx.lanewise(VectorOperators.SUB, 1f, fx.compare(VectorOperators.GT, t));          // floor: truncation rounds negatives up
        x = x.sub(fx.mul(LN2_HI));
        x = x.sub(fx.mul(LN2_LO));
        FloatVector y = x.fma(FloatVector.broadcast(sp, P0), FloatVector.broadcast(sp, P1));
        y = y.fma(x, FloatVector.broadcast(sp, P2));
        y = y.fma(x, FloatVector.broadcast(sp, P3));
        y = y.fma(x, FloatVector.broadcast(sp, P4));
        y = y.fma(x, FloatVector.broadcast(sp, P5));
        y = y.fma(x.mul(x), x.add(1f));
        IntVector e = (IntVector) fx.convert(VectorOperators.F2I, 0);
        return y.mul(e.add(127).lanewise(VectorOperators.LSHL, 23).reinterpretAsFloats());
    }

    /** gelu with the tanh approximation (PyTorch's gelu(approximate="tanh")): 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))). */
    public static float geluTanh(float x) {
        float t = tanh((x * x * 0.044715f + 1f) * x * 0.7978845608028654f);
        return x * ((t + 1f) * 0.5f);
    }

    /**
     * out[i] = gelu_tanh(g[i]) · u[i] for i in [from, to) (out may alias g). The scalar tail performs the same float
     * operations as the vector body, so every element gets the same value whichever path computes it.
     */
    public static void geluMul(float[] g, float[] u, float[] out, int from, int to) {
        final float c = 0.7978845608028654f, k = 0.044715f;
        int i = from;
        for (; i + L <= to; i += L) {
            FloatVector x = FloatVector.fromArray(F, g, i);
            FloatVector t = tanh(x.mul(x).mul(k).add(1f).mul(x).mul(c));
            x.mul(t.add(1f).mul(0.5f)).mul(FloatVector.fromArray(F, u, i)).intoArray(out, i);
        }
        for (; i < to; i++) out[i] = geluTanh(g[i]) * u[i];
    }

    /**
     * Index of the largest of v[off .. off + n) (the first one on ties; NaN values are never picked unless all are NaN or
     * −∞, then 0): a vector maximum, then the first position holding it.
     */
    public static int argmax(float[] v, int off, int n) {
        // four independent maxima (one chain waited on each max's latency: 32% slower over 8 rows of 262,144 logits); the
        // maximum does not depend on the order it is taken in
        FloatVector m = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY), m1 = m, m2 = m, m3 = m;
        int i = 0;
        for (; i + 4 * L <= n; i += 4 * L) {
            m = m.max(FloatVector.fromArray(F, v, off + i));
            m1 = m1.max(FloatVector.fromArray(F, v, off + i + L));
            m2 = m2.max(FloatVector.fromArray(F, v, off + i + 2 * L));
            m3 = m3.max(FloatVector.fromArray(F, v, off + i + 3 * L));
        }
        for (; i + L <= n; i += L) m = m.max(FloatVector.fromArray(F, v, off + i));
        float best = m.max(m1).max(m2.max(m3)).reduceLanes(VectorOperators.MAX);
        for (; i < n; i++) best = Math.max(best, v[off + i]);
        if (Float.isNaN(best) || best == Float.NEGATIVE_INFINITY) {   // the rare rows: the plain scan's answer
            int b = 0;
            float bv = Float.NEGATIVE_INFINITY;
            for (int j = 0; j < n; j++) if (v[off + j] > bv) { bv = v[off + j]; b = j; }
            return b;
        }
        int j = 0;   // the first index holding the maximum, 16 at a time
        for (; j + L <= n; j += L) {
            var eq = FloatVector.fromArray(F, v, off + j).eq(best);
            if (eq.anyTrue()) return j + eq.firstTrue();
        }
        for (; j < n; j++) if (v[off + j] == best) return j;
        return 0;
    }

    private static final VectorSpecies<Float> F256 = FloatVector.SPECIES_256, F128 = FloatVector.SPECIES_128;

    /**
     * Sum of a vector's lanes in a fixed order: halves are added lanewise down to 4 lanes, then (l0 + l1) + (l2 + l3).
     * {@code reduceLanes(ADD)} may add in a different order once the JIT has compiled it, which would make results depend
     * on timing; this keeps every run bit-identical.
     */
    public static float hsum(FloatVector v) {
        FloatVector x = v;
        if (x.length() == 16) x = ((FloatVector) x.reinterpretShape(F256, 0)).add((FloatVector) x.reinterpretShape(F256, 1));
        if (x.length() == 8) x = ((FloatVector) x.reinterpretShape(F128, 0)).add((FloatVector) x.reinterpretShape(F128, 1));
        return (x.lane(0) + x.lane(1)) + (x.lane(2) + x.lane(3));
    }

    public static float dot(float[] a, int ao, float[] b, int bo, int len) {
        FloatVector acc = FloatVector.zero(F);
        int i = 0;
        int bound = F.loopBound(len);
        for (; i < bound; i += L) acc = FloatVector.fromArray(F, a, ao + i).fma(FloatVector.fromArray(F, b, bo + i), acc);
        float s = hsum(acc);
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

    /**
     * Scores of m query rows (a[ao + h·as ...], h < m) against one key b[bo ...]: out[oo + h·os] = {@link #dot}(a row, b) bit for
     * bit, with the key read once for all of them (heads sharing a KV head). {@code tmp} holds at least 4·L floats.
     */
    public static void dots(int m, float[] a, int ao, int as, float[] b, int bo, int len, float[] out, int oo, int os, float[] tmp) {
        int h = 0;
        for (; h + 4 <= m; h += 4) dot4(a, ao + h * as, as, b, bo, len, out, oo + h * os, os, tmp);
        for (; h < m; h++) out[oo + h * os] = dot(a, ao + h * as, b, bo, len);
    }

    /**
     * Scores of m query rows against keys [j0, j1): out[oo + h·os + j] = {@link #dot}(row h, key j) bit for bit, where row h is
     * a[ao + h·as ..] and key j is b[bo + j·bs ..], each {@code len} long. Four heads against four keys at a time (16
     * independent chains, each the one {@link #dot} runs, summed in {@link #hsum}'s order): one key or one head at a time,
     * the chains' FMA latency left the core mostly idle (1.75x slower over 512 keys from the L2 cache). The rest go through
     * {@link #dots}. {@code tmp} holds at least 16·L floats.
     */
    public static void scores(int m, float[] a, int ao, int as, float[] b, int bo, int bs, int len, int j0, int j1, float[] out, int oo, int os, float[] tmp) {
        int j = j0;
        int m4 = m / 4 * 4;
        if (m4 > 0 && len >= L) {
            for (; j + 4 <= j1; j += 4) {
                for (int h = 0; h < m4; h += 4) dot4x4(a, ao + h * as, as, b, bo + j * bs, bs, len, out, oo + h * os + j, os, tmp);
                for (int h = m4; h < m; h++) for (int k = j; k < j + 4; k++) out[oo + h * os + k] = dot(a, ao + h * as, b, bo + k * bs, len);
            }
        }
        for (; j < j1; j++) dots(m, a, ao, as, b, bo + j * bs, len, out, oo + j, os, tmp);
    }

    /** Four rows of a against four keys of b (16 chains): out[oo + k + h·os] = dot(row h, key k), bit for bit. */
    private static void dot4x4(float[] a, int ao, int as, float[] b, int bo, int bs, int len, float[] out, int oo, int os, float[] tmp) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, d0 = c0, d1 = c0, d2 = c0, d3 = c0;
        FloatVector e0 = c0, e1 = c0, e2 = c0, e3 = c0, f0 = c0, f1 = c0, f2 = c0, f3 = c0;
        int a1 = ao + as, a2 = a1 + as, a3 = a2 + as, b1 = bo + bs, b2 = b1 + bs, b3 = b2 + bs;
        int i = 0, bound = F.loopBound(len);
        for (; i < bound; i += L) {
            FloatVector q0 = FloatVector.fromArray(F, a, ao + i), q1 = FloatVector.fromArray(F, a, a1 + i);
            FloatVector q2 = FloatVector.fromArray(F, a, a2 + i), q3 = FloatVector.fromArray(F, a, a3 + i);
            FloatVector x = FloatVector.fromArray(F, b, bo + i);
            c0 = q0.fma(x, c0); c1 = q1.fma(x, c1); c2 = q2.fma(x, c2); c3 = q3.fma(x, c3);
            x = FloatVector.fromArray(F, b, b1 + i);
            d0 = q0.fma(x, d0); d1 = q1.fma(x, d1); d2 = q2.fma(x, d2); d3 = q3.fma(x, d3);
            x = FloatVector.fromArray(F, b, b2 + i);
            e0 = q0.fma(x, e0); e1 = q1.fma(x, e1); e2 = q2.fma(x, e2); e3 = q3.fma(x, e3);
            x = FloatVector.fromArray(F, b, b3 + i);
            f0 = q0.fma(x, f0); f1 = q1.fma(x, f1); f2 = q2.fma(x, f2); f3 = q3.fma(x, f3);
        }
        c0.intoArray(tmp, 0); c1.intoArray(tmp, L); c2.intoArray(tmp, 2 * L); c3.intoArray(tmp, 3 * L);
        d0.intoArray(tmp, 4 * L); d1.intoArray(tmp, 5 * L); d2.intoArray(tmp, 6 * L); d3.intoArray(tmp, 7 * L);
        e0.intoArray(tmp, 8 * L); e1.intoArray(tmp, 9 * L); e2.intoArray(tmp, 10 * L); e3.intoArray(tmp, 11 * L);
        f0.intoArray(tmp, 12 * L); f1.intoArray(tmp, 13 * L); f2.intoArray(tmp, 14 * L); f3.intoArray(tmp, 15 * L);
        for (int k = 0; k < 4; k++) {
            int bk = bo + k * bs;
            for (int h = 0; h < 4; h++) {
                float s = laneSum(tmp, (4 * k + h) * L);
                for (int t = i, ah = ao + h * as; t < len; t++) s += a[ah + t] * b[bk + t];
                out[oo + k + h * os] = s;
            }
        }
    }

    /**
     * Four dots sharing b. The accumulators leave through tmp and are summed by {@link #laneSum} in {@link #hsum}'s order:
     * passing the four vectors to hsum made C2 box them when it declined to inline the calls in this larger method.
     */
    private static void dot4(float[] a, int ao, int as, float[] b, int bo, int len, float[] out, int oo, int os, float[] tmp) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0;
        int i = 0;
        int bound = F.loopBound(len);
        int a1 = ao + as, a2 = a1 + as, a3 = a2 + as;
        for (; i < bound; i += L) {
            FloatVector bv = FloatVector.fromArray(F, b, bo + i);
            c0 = FloatVector.fromArray(F, a, ao + i).fma(bv, c0);
            c1 = FloatVector.fromArray(F, a, a1 + i).fma(bv, c1);
            c2 = FloatVector.fromArray(F, a, a2 + i).fma(bv, c2);
            c3 = FloatVector.fromArray(F, a, a3 + i).fma(bv, c3);
        }
        c0.intoArray(tmp, 0); c1.intoArray(tmp, L); c2.intoArray(tmp, 2 * L); c3.intoArray(tmp, 3 * L);
        float s0 = laneSum(tmp, 0), s1 = laneSum(tmp, L), s2 = laneSum(tmp, 2 * L), s3 = laneSum(tmp, 3 * L);
        for (; i < len; i++) {
            s0 += a[ao + i] * b[bo + i]; s1 += a[a1 + i] * b[bo + i]; s2 += a[a2 + i] * b[bo + i]; s3 += a[a3 + i] * b[bo + i];
        }
        out[oo] = s0; out[oo + os] = s1; out[oo + 2 * os] = s2; out[oo + 3 * os] = s3;
    }

    /** The lane sum of t[o, o + L) in {@link #hsum}'s order (halves added until four lanes, then (0+1)+(2+3)). */
    static float laneSum(float[] t, int o) {
        int n = L;
        float[] x = t;
        float l0, l1, l2, l3;
        if (n == 16) {
            float e0 = x[o] + x[o + 8], e1 = x[o + 1] + x[o + 9], e2 = x[o + 2] + x[o + 10], e3 = x[o + 3] + x[o + 11];
            float e4 = x[o + 4] + x[o + 12], e5 = x[o + 5] + x[o + 13], e6 = x[o + 6] + x[o + 14], e7 = x[o + 7] + x[o + 15];
            l0 = e0 + e4; l1 = e1 + e5; l2 = e2 + e6; l3 = e3 + e7;
        } else if (n == 8) {
            l0 = x[o] + x[o + 4]; l1 = x[o + 1] + x[o + 5]; l2 = x[o + 2] + x[o + 6]; l3 = x[o + 3] + x[o + 7];
        } else {
            l0 = x[o]; l1 = x[o + 1]; l2 = x[o + 2]; l3 = x[o + 3];
        }
        return (l0 + l1) + (l2 + l3);
    }

    /**
     * Weighted sums of m heads over nk value rows: y[yo + h·ys + d] = Σ_j p[po + h·ps + j] · v[vo + j·vs + d] for d < len,
     * accumulated in j order exactly as {@link #axpy} from zero would, with each value row read once for all heads.
     */
    public static void weightedRows(int m, float[] p, int po, int ps, int nk, float[] v, int vo, int vs, int len, float[] y, int yo, int ys) {
        int h = 0;
        for (; h + 4 <= m; h += 4) {
            int d = 0;
            for (; d + 4 * L <= len; d += 4 * L) pv4w(p, po + h * ps, ps, nk, v, vo + d, vs, y, yo + h * ys + d, ys);
            for (; d + L <= len; d += L) pv4(p, po + h * ps, ps, nk, v, vo + d, vs, y, yo + h * ys + d, ys);
            for (; d < len; d++) for (int hh = h; hh < h + 4; hh++) y[yo + hh * ys + d] = tail(p, po + hh * ps, nk, v, vo + d, vs);
        }
        for (; h < m; h++) {
            java.util.Arrays.fill(y, yo + h * ys, yo + h * ys + len, 0f);
            for (int j = 0; j < nk; j++) axpy(p[po + h * ps + j], v, vo + j * vs, y, yo + h * ys, len);
        }
    }

    private static float tail(float[] p, int po, int nk, float[] v, int vo, int vs) {
        float y = 0f;
        for (int j = 0; j < nk; j++) y += p[po + j] * v[vo + j * vs];
        return y;
    }

    /**
     * {@link #pv4} for four vectors of values at once (4 heads x 64 dimensions, 16 accumulators): each key's values are read
     * as 256 contiguous bytes in a quarter of the passes over the keys. Every output still sums its keys in order.
     */
    private static void pv4w(float[] p, int po, int ps, int nk, float[] v, int vo, int vs, float[] y, int yo, int ys) {
        FloatVector c00 = FloatVector.zero(F), c01 = c00, c02 = c00, c03 = c00, c10 = c00, c11 = c00, c12 = c00, c13 = c00;
        FloatVector c20 = c00, c21 = c00, c22 = c00, c23 = c00, c30 = c00, c31 = c00, c32 = c00, c33 = c00;
        int p1 = po + ps, p2 = p1 + ps, p3 = p2 + ps;
        for (int j = 0, vj = vo; j < nk; j++, vj += vs) {
            FloatVector x0 = FloatVector.fromArray(F, v, vj), x1 = FloatVector.fromArray(F, v, vj + L);
            FloatVector x2 = FloatVector.fromArray(F, v, vj + 2 * L), x3 = FloatVector.fromArray(F, v, vj + 3 * L);
            FloatVector b = FloatVector.broadcast(F, p[po + j]);
            c00 = b.fma(x0, c00); c01 = b.fma(x1, c01); c02 = b.fma(x2, c02); c03 = b.fma(x3, c03);
            b = FloatVector.broadcast(F, p[p1 + j]);
            c10 = b.fma(x0, c10); c11 = b.fma(x1, c11); c12 = b.fma(x2, c12); c13 = b.fma(x3, c13);
            b = FloatVector.broadcast(F, p[p2 + j]);
            c20 = b.fma(x0, c20); c21 = b.fma(x1, c21); c22 = b.fma(x2, c22); c23 = b.fma(x3, c23);
            b = FloatVector.broadcast(F, p[p3 + j]);
            c30 = b.fma(x0, c30); c31 = b.fma(x1, c31); c32 = b.fma(x2, c32); c33 = b.fma(x3, c33);
        }
        c00.intoArray(y, yo); c01.intoArray(y, yo + L); c02.intoArray(y, yo + 2 * L); c03.intoArray(y, yo + 3 * L);
        int y1 = yo + ys, y2 = y1 + ys, y3 = y2 + ys;
        c10.intoArray(y, y1); c11.intoArray(y, y1 + L); c12.intoArray(y, y1 + 2 * L); c13.intoArray(y, y1 + 3 * L);
        c20.intoArray(y, y2); c21.intoArray(y, y2 + L); c22.intoArray(y, y2 + 2 * L); c23.intoArray(y, y2 + 3 * L);
        c30.intoArray(y, y3); c31.intoArray(y, y3 + L); c32.intoArray(y, y3 + 2 * L); c33.intoArray(y, y3 + 3 * L);
    }

    private static void pv4(float[] p, int po, int ps, int nk, float[] v, int vo, int vs, float[] y, int yo, int ys) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0;
        int p1 = po + ps, p2 = p1 + ps, p3 = p2 + ps;
        for (int j = 0; j < nk; j++) {
            FloatVector x = FloatVector.fromArray(F, v, vo + j * vs);
            c0 = FloatVector.broadcast(F, p[po + j]).fma(x, c0);
            c1 = FloatVector.broadcast(F, p[p1 + j]).fma(x, c1);
            c2 = FloatVector.broadcast(F, p[p2 + j]).fma(x, c2);
            c3 = FloatVector.broadcast(F, p[p3 + j]).fma(x, c3);
        }
        c0.intoArray(y, yo); c1.intoArray(y, yo + ys); c2.intoArray(y, yo + 2 * ys); c3.intoArray(y, yo + 3 * ys);
    }

    /**
     * In place: x[o..o+n) ← softmax(scale·x): scaled, max subtracted, exponentiated ({@link #exp}: exact IEEE operations, so
     * the same in the interpreter and in compiled code, unlike the Vector API's EXP), normalized by the sum. All four passes
     * run on vectors (the sum in 16 lanes, then across them in {@link #hsum}'s fixed order): every attention path (decoding,
     * blocks of queries) calls this one function, so they agree bitwise.
     */
    public static void softmaxScaled(float[] x, int o, int n, float scale) {
        int bound = F.loopBound(n), j = 0;
        FloatVector vmax = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        for (; j < bound; j += L) {
            FloatVector v = FloatVector.fromArray(F, x, o + j).mul(scale);
            v.intoArray(x, o + j);
            vmax = vmax.max(v);
        }
        float max = bound > 0 ? vmax.reduceLanes(VectorOperators.MAX) : Float.NEGATIVE_INFINITY;
        for (; j < n; j++) {
            float v = x[o + j] * scale;
            x[o + j] = v;
            if (v > max) max = v;
        }
        FloatVector vsum = FloatVector.zero(F);
        for (j = 0; j < bound; j += L) {
            FloatVector e = exp(FloatVector.fromArray(F, x, o + j).sub(max));
            e.intoArray(x, o + j);
            vsum = vsum.add(e);
        }
        float sum = hsum(vsum);   // a fixed order of the lanes (reduceLanes may change its order once compiled)
        for (; j < n; j++) {
            float e = exp(x[o + j] - max);
            x[o + j] = e;
            sum += e;
        }
        float inv = 1f / sum;
        for (j = 0; j < bound; j += L) FloatVector.fromArray(F, x, o + j).mul(inv).intoArray(x, o + j);
        for (; j < n; j++) x[o + j] *= inv;
    }
}
