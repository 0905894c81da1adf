package dev.peft4j.tensor;

import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class OpsTest {
    @Test
    void tanhAndExpMatchTheLibraryAndTheVectorPathEqualsTheScalarPath() {
        var sp = FloatVector.SPECIES_PREFERRED;
        float[] xs = new float[sp.length() * 4001];
        for (int i = 0; i < xs.length; i++) xs[i] = -20f + 40f * i / xs.length;
        float[] vt = new float[xs.length], ve = new float[xs.length];
        for (int i = 0; i < xs.length; i += sp.length()) {
            Ops.tanh(FloatVector.fromArray(sp, xs, i)).intoArray(vt, i);
            Ops.exp(FloatVector.fromArray(sp, xs, i)).intoArray(ve, i);
        }
        for (int i = 0; i < xs.length; i++) {
            float x = xs[i];
            assertEquals(Math.tanh(x), Ops.tanh(x), 4e-7, "tanh " + x);
            assertEquals(Ops.tanh(x), vt[i], 0f, "vector tanh " + x);
            double e = Math.exp(x);
            assertEquals(e, Ops.exp(x), 3e-7 * e, "exp " + x);
            assertEquals(Ops.exp(x), ve[i], 0f, "vector exp " + x);
        }
        assertEquals(0.0004f * 0.5f, Ops.tanh(0.0002f), 0f);
        assertTrue(Ops.exp(-200f) >= 0 && Ops.exp(-200f) < 1e-37);
    }

    @Test
    void geluMatchesTheTanhFormula() {
        for (float x = -8f; x <= 8f; x += 0.01f) {
            double ref = 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
            assertEquals(ref, Ops.geluTanh(x), 1e-6 + 1e-6 * Math.abs(ref), "gelu " + x);
        }
        float[] g = new float[37], u = new float[37], out = new float[37];
        for (int i = 0; i < 37; i++) { g[i] = (i - 18) * 0.3f; u[i] = 1f + i; }
        Ops.geluMul(g, u, out, 0, 37);
        for (int i = 0; i < 37; i++) assertEquals(Ops.geluTanh(g[i]) * u[i], out[i], 0f);
    }

    /** Scores of a head group against one key, four at a time, equal dot() of each head bit for bit. */
    @org.junit.jupiter.api.Test
    void groupedDotsEqualDotBitForBit() {
        java.util.SplittableRandom r = new java.util.SplittableRandom(4);
        for (int len : new int[]{256, 40, 7}) {
            int m = 5;
            float[] a = new float[m * len + 3], b = new float[len + 2];
            for (int i = 0; i < a.length; i++) a[i] = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(5) - 2));
            for (int i = 0; i < b.length; i++) b[i] = (float) r.nextGaussian();
            float[] out = new float[2 * m], tmp = new float[64];
            Ops.dots(m, a, 3, len, b, 2, len, out, 1, 2, tmp);
            for (int h = 0; h < m; h++) {
                org.junit.jupiter.api.Assertions.assertEquals(Float.floatToRawIntBits(Ops.dot(a, 3 + h * len, b, 2, len)),
                        Float.floatToRawIntBits(out[1 + 2 * h]), "len " + len + " head " + h);
            }
        }
    }

    /**
     * Scores of a head group against a range of keys (four heads against four keys at a time, the rest one by one) equal
     * dot() of each head and key bit for bit, and nothing outside the range is written.
     */
    @org.junit.jupiter.api.Test
    void scoresOverKeysEqualDotBitForBit() {
        java.util.SplittableRandom r = new java.util.SplittableRandom(6);
        for (int len : new int[]{256, 48, 40, 7}) {
            for (int m : new int[]{4, 1, 6, 8}) {
                int nk = 23, bs = len + 5, os = nk + 2, oo = 1;
                float[] a = new float[m * len + 3], b = new float[nk * bs + 2];
                for (int i = 0; i < a.length; i++) a[i] = (float) (r.nextGaussian() * Math.pow(10, r.nextInt(5) - 2));
                for (int i = 0; i < b.length; i++) b[i] = (float) r.nextGaussian();
                for (int[] range : new int[][]{{0, 23}, {3, 21}, {5, 7}}) {
                    float[] out = new float[oo + m * os];
                    java.util.Arrays.fill(out, Float.NaN);
                    Ops.scores(m, a, 3, len, b, 2, bs, len, range[0], range[1], out, oo, os, new float[256]);
                    for (int h = 0; h < m; h++) {
                        for (int j = 0; j < os; j++) {
                            float got = out[oo + h * os + j];
                            if (j < range[0] || j >= range[1]) {
                                org.junit.jupiter.api.Assertions.assertTrue(Float.isNaN(got), "written outside the range: head " + h + " key " + j);
                                continue;
                            }
                            org.junit.jupiter.api.Assertions.assertEquals(Float.floatToRawIntBits(Ops.dot(a, 3 + h * len, b, 2 + j * bs, len)),
                                    Float.floatToRawIntBits(got), "len " + len + ", " + m + " heads: head " + h + " key " + j + " of " + java.util.Arrays.toString(range));
                        }
                    }
                }
            }
        }
    }

    /**
     * Attention's weighted sum of values (heads in fours, 64 then 16 dimensions at a time, then the rest): every output is
     * the plain loop over the keys in order, fused multiply-adds on the vector part and a plain sum past it, bit for bit.
     */
    @org.junit.jupiter.api.Test
    void weightedRowsIsTheOrderedSumOverKeys() {
        java.util.SplittableRandom r = new java.util.SplittableRandom(9);
        int lanes = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.length();
        for (int len : new int[]{256, 80, 40, 7}) {
            for (int m : new int[]{4, 5, 1}) {
                int nk = 1 + r.nextInt(40), vs = len + 3, ps = nk + 2, ys = len + 1;
                float[] p = new float[m * ps + 1], v = new float[nk * vs + 2], y = new float[m * ys + 5];
                for (int i = 0; i < p.length; i++) p[i] = (float) r.nextDouble();
                for (int i = 0; i < v.length; i++) v[i] = (float) r.nextGaussian();
                Ops.weightedRows(m, p, 1, ps, nk, v, 2, vs, len, y, 3, ys);
                int bound = len / lanes * lanes;
                for (int h = 0; h < m; h++) {
                    for (int d = 0; d < len; d++) {
                        float want = 0f;
                        for (int j = 0; j < nk; j++) {
                            float pj = p[1 + h * ps + j], vj = v[2 + j * vs + d];
                            want = d < bound ? Math.fma(pj, vj, want) : want + pj * vj;
                        }
                        assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(y[3 + h * ys + d]), "len " + len + " m " + m + " head " + h + " dim " + d);
                    }
                }
            }
        }
    }
}
