package dev.peft4j.tensor;

import java.nio.ByteOrder;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorSpecies;

/**
 * The one accumulation order of every forward product y = x·Wᵀ ({@link MatMul}), shared by all its tile shapes so that a row's
 * result never depends on the rows computed with it (batch 1, batched decoding, prefill, any thread count):
 * <ol>
 *   <li>one L-lane accumulator per (row, output), starting at zero, {@code acc = fma(x[k..k+L), w[k..k+L), acc)} for k = 0, L,
 *       2L, ... up to the last whole vector of the input (weights converted to float32 exactly first, in registers or in a
 *       panel: the same values);</li>
 *   <li>the lanes summed by recursive halving (lane i += lane i + L/2, then L/4, ..., 1), done here by {@link #reduce4} and
 *       {@link #reduce16} for 4 or 16 accumulators at once; both give each accumulator the same tree;</li>
 *   <li>the input's tail past the last whole vector (none for the model's shapes) added in order, {@code s += x[k]·w[k]}
 *       (done where the tiles are run);</li>
 *   <li>then stored, or added to y when accumulating.</li>
 * </ol>
 * Tile kernels leave their accumulators in a float[] (the reductions load them again) so that no vector crosses a method
 * boundary: C2 compiles each kernel on its own and never has to box a vector.
 */
final class Dot {
    static final VectorSpecies<Float> F = Matrix.F;
    static final int L = F.length();
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final boolean VEC = L == 16;
    /** Two-vector lane selections, as index vectors (lanes 16..31 pick from the second vector): level l's LO and HI halves. */
    private static final FloatVector I1LO, I1HI, I2LO, I2HI, I3LO, I3HI, I4LO, I4HI;

    static {
        if (VEC) {
            float[][] s = new float[8][16];
            for (int i = 0; i < 16; i++) {
                // level 1: [a0..7 b0..7] + [a8..15 b8..15]
                s[0][i] = i < 8 ? i : 16 + (i - 8);
                s[1][i] = s[0][i] + 8;
                // level 2: [t0..3 t8..11 u0..3 u8..11] + [t4..7 t12..15 u4..7 u12..15]
                int g = i / 4, j = i % 4;
                s[2][i] = (g < 2 ? 0 : 16) + (g % 2) * 8 + j;
                s[3][i] = s[2][i] + 4;
                // level 3: pairs (0,1),(4,5),... of both inputs + pairs (2,3),(6,7),...
                int p = i / 2, q = i % 2;
                s[4][i] = (p < 4 ? 0 : 16) + (p % 4) * 4 + q;
                s[5][i] = s[4][i] + 2;
                // level 4: even lanes of both + odd lanes of both
                s[6][i] = 2 * i;
                s[7][i] = 2 * i + 1;
            }
            I1LO = FloatVector.fromArray(F, s[0], 0); I1HI = FloatVector.fromArray(F, s[1], 0);
            I2LO = FloatVector.fromArray(F, s[2], 0); I2HI = FloatVector.fromArray(F, s[3], 0);
            I3LO = FloatVector.fromArray(F, s[4], 0); I3HI = FloatVector.fromArray(F, s[5], 0);
            I4LO = FloatVector.fromArray(F, s[6], 0); I4HI = FloatVector.fromArray(F, s[7], 0);
        } else {
            I1LO = I1HI = I2LO = I2HI = I3LO = I3HI = I4LO = I4HI = null;
        }
    }

    private Dot() {}

    /** One level of the tree for two vectors: selected lanes of (a, b) plus the other selected lanes (two vpermt2ps + add). */
    private static FloatVector comb(FloatVector a, FloatVector b, FloatVector lo, FloatVector hi) {
        return lo.selectFrom(a, b).add(hi.selectFrom(a, b));
    }

    /** out[o + j] = lane sum of acc[a + j·L, a + (j+1)·L) for j < 4. */
    static void reduce4(float[] acc, int a, float[] out, int o) {
        if (!VEC) { scalar(acc, a, 4, out, o); return; }
        FloatVector t0 = comb(FloatVector.fromArray(F, acc, a), FloatVector.fromArray(F, acc, a + L), I1LO, I1HI);
        FloatVector t1 = comb(FloatVector.fromArray(F, acc, a + 2 * L), FloatVector.fromArray(F, acc, a + 3 * L), I1LO, I1HI);
        FloatVector u = comb(t0, t1, I2LO, I2HI);
        FloatVector w = comb(u, u, I3LO, I3HI);
        comb(w, w, I4LO, I4HI).intoArray(out, o, M4);
    }

    private static final VectorMask<Float> M4 = F.indexInRange(0, 4);

    /**
     * out[o + j] = lane sum of acc[j·L, (j+1)·L) for j < 16: a transposing tree, fifteen two-vector steps for sixteen sums.
     * Written out in one method: a helper returning vectors that C2 did not inline would box them.
     */
    static void reduce16(float[] acc, float[] out, int o) {
        if (!VEC) { scalar(acc, 0, 16, out, o); return; }
        FloatVector t0 = comb(FloatVector.fromArray(F, acc, 0), FloatVector.fromArray(F, acc, L), I1LO, I1HI);
        FloatVector t1 = comb(FloatVector.fromArray(F, acc, 2 * L), FloatVector.fromArray(F, acc, 3 * L), I1LO, I1HI);
        FloatVector t2 = comb(FloatVector.fromArray(F, acc, 4 * L), FloatVector.fromArray(F, acc, 5 * L), I1LO, I1HI);
        FloatVector t3 = comb(FloatVector.fromArray(F, acc, 6 * L), FloatVector.fromArray(F, acc, 7 * L), I1LO, I1HI);
        FloatVector t4 = comb(FloatVector.fromArray(F, acc, 8 * L), FloatVector.fromArray(F, acc, 9 * L), I1LO, I1HI);
        FloatVector t5 = comb(FloatVector.fromArray(F, acc, 10 * L), FloatVector.fromArray(F, acc, 11 * L), I1LO, I1HI);
        FloatVector t6 = comb(FloatVector.fromArray(F, acc, 12 * L), FloatVector.fromArray(F, acc, 13 * L), I1LO, I1HI);
        FloatVector t7 = comb(FloatVector.fromArray(F, acc, 14 * L), FloatVector.fromArray(F, acc, 15 * L), I1LO, I1HI);
        FloatVector u0 = comb(t0, t1, I2LO, I2HI), u1 = comb(t2, t3, I2LO, I2HI), u2 = comb(t4, t5, I2LO, I2HI), u3 = comb(t6, t7, I2LO, I2HI);
        FloatVector w0 = comb(u0, u1, I3LO, I3HI), w1 = comb(u2, u3, I3LO, I3HI);
        comb(w0, w1, I4LO, I4HI).intoArray(out, o);
    }

    /** The reference recursive-halving sum (and the reduction where vectors are not 16 lanes). */
    static void scalar(float[] acc, int a, int count, float[] out, int o) {
        float[] t = new float[L];
        for (int j = 0; j < count; j++) {
            System.arraycopy(acc, a + j * L, t, 0, L);
            for (int h = L / 2; h >= 1; h /= 2) for (int i = 0; i < h; i++) t[i] = t[i] + t[i + h];
            out[o + j] = t[0];
        }
    }
}
