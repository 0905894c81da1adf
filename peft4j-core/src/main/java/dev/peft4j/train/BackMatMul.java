package dev.peft4j.train;

import dev.peft4j.tensor.Matrix;
import dev.peft4j.tensor.Parallel;
import jdk.incubator.vector.FloatVector;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.VectorSpecies;

/**
 * The two matrix products of a linear layer's backward pass, register-tiled like the forward product
 * ({@link dev.peft4j.tensor.MatMul#xWt}): 4 rows x 4 vectors of accumulators kept in registers over the reduction.
 * <ul>
 *   <li>{@link #dx}: dx[n, in] += dy[n, out] · W[out, in] — weights converted to float32 a block of rows at a time into a
 *       per-thread buffer (so bf16 mapped weights work), reused by a chunk of dy rows;</li>
 *   <li>{@link #dW}: dW[out, in] += dy[n, out]ᵀ · x[n, in].</li>
 * </ul>
 */
public final class BackMatMul {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    private static final int RCHUNK = 64, OBLOCK = 64;
    private static final ThreadLocal<float[][]> SCRATCH = ThreadLocal.withInitial(() -> new float[1][0]);
    private static final ThreadLocal<MemorySegment[]> ALIGNED = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    private static final ValueLayout.OfFloat LE_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private BackMatMul() {}

    private static float[] scratch(int n) {
        float[][] h = SCRATCH.get();
        if (h[0].length < n) h[0] = new float[n];
        return h[0];
    }

    /** dx[n, in] += dy[n, out] · W (W [out, in], any dtype). Parallel over chunks of rows. */
    public static void dx(float[] dy, int n, Matrix w, float[] dx) {
        final int in = w.cols, out = w.rows;
        final int chunks = (n + RCHUNK - 1) / RCHUNK;
        Parallel.forRange(chunks, 1, (c0, c1) -> {
            float[] wb = scratch(OBLOCK * in);
            MemorySegment[] ws = ALIGNED.get();
            if (ws[0] == null || ws[0].byteSize() < 4L * OBLOCK * in) ws[0] = Arena.ofAuto().allocate(4L * OBLOCK * in, 64);
            MemorySegment wseg = ws[0];
            for (int ch = c0; ch < c1; ch++) {
                int r0 = ch * RCHUNK, r1 = Math.min(n, r0 + RCHUNK);
                for (int o0 = 0; o0 < out; o0 += OBLOCK) {
                    int ob = Math.min(OBLOCK, out - o0);
                    w.rowsToFloat(o0, ob, wb, 0);
                    MemorySegment.copy(wb, 0, wseg, LE_FLOAT, 0, ob * in);
                    int r = r0;
                    for (; r + 4 <= r1; r += 4) dxRows4(dy, out, o0, ob, wb, wseg, in, dx, r);
                    for (; r < r1; r++) dxRow1(dy, out, o0, ob, wb, in, dx, r);
                }
            }
        });
    }

    private static void dxRows4(float[] dy, int out, int o0, int ob, float[] wb, MemorySegment wseg, int in, float[] dx, int r) {
        int d0 = r * out + o0, d1 = d0 + out, d2 = d1 + out, d3 = d2 + out;
        int x0 = r * in, x1 = x0 + in, x2 = x1 + in, x3 = x2 + in;
        int i = 0;
        for (; i + 4 * L <= in; i += 4 * L) dxTile(dy, d0, out, ob, wseg, in, dx, x0, i);
        for (; i + L <= in; i += L) {
            FloatVector a0 = FloatVector.fromArray(F, dx, x0 + i), a1 = FloatVector.fromArray(F, dx, x1 + i);
            FloatVector a2 = FloatVector.fromArray(F, dx, x2 + i), a3 = FloatVector.fromArray(F, dx, x3 + i);
            for (int o = 0; o < ob; o++) {
                FloatVector w0 = FloatVector.fromArray(F, wb, o * in + i);
                a0 = FloatVector.broadcast(F, dy[d0 + o]).fma(w0, a0);
                a1 = FloatVector.broadcast(F, dy[d1 + o]).fma(w0, a1);
                a2 = FloatVector.broadcast(F, dy[d2 + o]).fma(w0, a2);
                a3 = FloatVector.broadcast(F, dy[d3 + o]).fma(w0, a3);
            }
            a0.intoArray(dx, x0 + i); a1.intoArray(dx, x1 + i); a2.intoArray(dx, x2 + i); a3.intoArray(dx, x3 + i);
        }
        for (; i < in; i++) {
            float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (int o = 0; o < ob; o++) {
                float wv = wb[o * in + i];
                s0 += dy[d0 + o] * wv; s1 += dy[d1 + o] * wv; s2 += dy[d2 + o] * wv; s3 += dy[d3 + o] * wv;
            }
            dx[x0 + i] += s0; dx[x1 + i] += s1; dx[x2 + i] += s2; dx[x3 + i] += s3;
        }
    }

    /**
     * dx rows x0.. (4 rows, stride in), columns [i, i+4L) += Σ_o dy[row, o] · W[o, i..]: a 4x4-vector register tile in a
     * method of its own (small enough that C2 always intrinsifies it), weights from a 64-byte-aligned block.
     */
    private static void dxTile(float[] dy, int d0, int out, int ob, MemorySegment w, int in, float[] dx, int x0, int i) {
        int d1 = d0 + out, d2 = d1 + out, d3 = d2 + out;
        int x1 = x0 + in, x2 = x1 + in, x3 = x2 + in;
        final ByteOrder bo = ByteOrder.LITTLE_ENDIAN;
        FloatVector a00 = FloatVector.fromArray(F, dx, x0 + i), a01 = FloatVector.fromArray(F, dx, x0 + i + L);
        FloatVector a02 = FloatVector.fromArray(F, dx, x0 + i + 2 * L), a03 = FloatVector.fromArray(F, dx, x0 + i + 3 * L);
        FloatVector a10 = FloatVector.fromArray(F, dx, x1 + i), a11 = FloatVector.fromArray(F, dx, x1 + i + L);
        FloatVector a12 = FloatVector.fromArray(F, dx, x1 + i + 2 * L), a13 = FloatVector.fromArray(F, dx, x1 + i + 3 * L);
        FloatVector a20 = FloatVector.fromArray(F, dx, x2 + i), a21 = FloatVector.fromArray(F, dx, x2 + i + L);
        FloatVector a22 = FloatVector.fromArray(F, dx, x2 + i + 2 * L), a23 = FloatVector.fromArray(F, dx, x2 + i + 3 * L);
        FloatVector a30 = FloatVector.fromArray(F, dx, x3 + i), a31 = FloatVector.fromArray(F, dx, x3 + i + L);
        FloatVector a32 = FloatVector.fromArray(F, dx, x3 + i + 2 * L), a33 = FloatVector.fromArray(F, dx, x3 + i + 3 * L);
        for (int o = 0; o < ob; o++) {
            long wo = 4L * (o * in + i);
            FloatVector w0 = FloatVector.fromMemorySegment(F, w, wo, bo), w1 = FloatVector.fromMemorySegment(F, w, wo + 4L * L, bo);
            FloatVector w2 = FloatVector.fromMemorySegment(F, w, wo + 8L * L, bo), w3 = FloatVector.fromMemorySegment(F, w, wo + 12L * L, bo);
            FloatVector b = FloatVector.broadcast(F, dy[d0 + o]);
            a00 = b.fma(w0, a00); a01 = b.fma(w1, a01); a02 = b.fma(w2, a02); a03 = b.fma(w3, a03);
            b = FloatVector.broadcast(F, dy[d1 + o]);
            a10 = b.fma(w0, a10); a11 = b.fma(w1, a11); a12 = b.fma(w2, a12); a13 = b.fma(w3, a13);
            b = FloatVector.broadcast(F, dy[d2 + o]);
            a20 = b.fma(w0, a20); a21 = b.fma(w1, a21); a22 = b.fma(w2, a22); a23 = b.fma(w3, a23);
            b = FloatVector.broadcast(F, dy[d3 + o]);
            a30 = b.fma(w0, a30); a31 = b.fma(w1, a31); a32 = b.fma(w2, a32); a33 = b.fma(w3, a33);
        }
        a00.intoArray(dx, x0 + i); a01.intoArray(dx, x0 + i + L); a02.intoArray(dx, x0 + i + 2 * L); a03.intoArray(dx, x0 + i + 3 * L);
        a10.intoArray(dx, x1 + i); a11.intoArray(dx, x1 + i + L); a12.intoArray(dx, x1 + i + 2 * L); a13.intoArray(dx, x1 + i + 3 * L);
        a20.intoArray(dx, x2 + i); a21.intoArray(dx, x2 + i + L); a22.intoArray(dx, x2 + i + 2 * L); a23.intoArray(dx, x2 + i + 3 * L);
        a30.intoArray(dx, x3 + i); a31.intoArray(dx, x3 + i + L); a32.intoArray(dx, x3 + i + 2 * L); a33.intoArray(dx, x3 + i + 3 * L);
    }

    private static void dxRow1(float[] dy, int out, int o0, int ob, float[] wb, int in, float[] dx, int r) {
        int d0 = r * out + o0, x0 = r * in;
        int i = 0;
        for (; i + L <= in; i += L) {
            FloatVector a0 = FloatVector.fromArray(F, dx, x0 + i);
            for (int o = 0; o < ob; o++) a0 = FloatVector.broadcast(F, dy[d0 + o]).fma(FloatVector.fromArray(F, wb, o * in + i), a0);
            a0.intoArray(dx, x0 + i);
        }
        for (; i < in; i++) {
            float s = 0;
            for (int o = 0; o < ob; o++) s += dy[d0 + o] * wb[o * in + i];
            dx[x0 + i] += s;
        }
    }

    /** dW[out, in] += dyᵀ · x (dy [n, out], x [n, in]). Parallel over blocks of 4 output rows. */
    public static void dW(float[] dy, float[] x, int n, int out, int in, float[] dW) {
        final int quads = (out + 3) / 4;
        Parallel.forRange(quads, 1, (q0, q1) -> {
            int i = 0;
            while (i < in) {   // column blocks outside, so a block of x is reused from cache by every output row
                int width = i + 4 * L <= in ? 4 * L : (i + L <= in ? L : in - i);
                for (int q = q0; q < q1; q++) {
                    int o = q * 4, no = Math.min(4, out - o);
                    if (width == 4 * L && no == 4) dwTile(dy, x, n, out, in, dW, o, i);
                    else dwSmall(dy, x, n, out, in, dW, o, no, i, width);
                }
                i += width;
            }
        });
    }

    private static void dwTile(float[] dy, float[] x, int n, int out, int in, float[] dW, int o, int i) {
        int w0 = o * in + i, w1 = w0 + in, w2 = w1 + in, w3 = w2 + in;
        FloatVector a00 = FloatVector.fromArray(F, dW, w0), a01 = FloatVector.fromArray(F, dW, w0 + L);
        FloatVector a02 = FloatVector.fromArray(F, dW, w0 + 2 * L), a03 = FloatVector.fromArray(F, dW, w0 + 3 * L);
        FloatVector a10 = FloatVector.fromArray(F, dW, w1), a11 = FloatVector.fromArray(F, dW, w1 + L);
        FloatVector a12 = FloatVector.fromArray(F, dW, w1 + 2 * L), a13 = FloatVector.fromArray(F, dW, w1 + 3 * L);
        FloatVector a20 = FloatVector.fromArray(F, dW, w2), a21 = FloatVector.fromArray(F, dW, w2 + L);
        FloatVector a22 = FloatVector.fromArray(F, dW, w2 + 2 * L), a23 = FloatVector.fromArray(F, dW, w2 + 3 * L);
        FloatVector a30 = FloatVector.fromArray(F, dW, w3), a31 = FloatVector.fromArray(F, dW, w3 + L);
        FloatVector a32 = FloatVector.fromArray(F, dW, w3 + 2 * L), a33 = FloatVector.fromArray(F, dW, w3 + 3 * L);
        for (int r = 0; r < n; r++) {
            int xo = r * in + i, d = r * out + o;
            FloatVector x0 = FloatVector.fromArray(F, x, xo), x1 = FloatVector.fromArray(F, x, xo + L);
            FloatVector x2 = FloatVector.fromArray(F, x, xo + 2 * L), x3 = FloatVector.fromArray(F, x, xo + 3 * L);
            FloatVector b = FloatVector.broadcast(F, dy[d]);
            a00 = b.fma(x0, a00); a01 = b.fma(x1, a01); a02 = b.fma(x2, a02); a03 = b.fma(x3, a03);
            b = FloatVector.broadcast(F, dy[d + 1]);
            a10 = b.fma(x0, a10); a11 = b.fma(x1, a11); a12 = b.fma(x2, a12); a13 = b.fma(x3, a13);
            b = FloatVector.broadcast(F, dy[d + 2]);
            a20 = b.fma(x0, a20); a21 = b.fma(x1, a21); a22 = b.fma(x2, a22); a23 = b.fma(x3, a23);
            b = FloatVector.broadcast(F, dy[d + 3]);
            a30 = b.fma(x0, a30); a31 = b.fma(x1, a31); a32 = b.fma(x2, a32); a33 = b.fma(x3, a33);
        }
        a00.intoArray(dW, w0); a01.intoArray(dW, w0 + L); a02.intoArray(dW, w0 + 2 * L); a03.intoArray(dW, w0 + 3 * L);
        a10.intoArray(dW, w1); a11.intoArray(dW, w1 + L); a12.intoArray(dW, w1 + 2 * L); a13.intoArray(dW, w1 + 3 * L);
        a20.intoArray(dW, w2); a21.intoArray(dW, w2 + L); a22.intoArray(dW, w2 + 2 * L); a23.intoArray(dW, w2 + 3 * L);
        a30.intoArray(dW, w3); a31.intoArray(dW, w3 + L); a32.intoArray(dW, w3 + 2 * L); a33.intoArray(dW, w3 + 3 * L);
    }

    private static void dwSmall(float[] dy, float[] x, int n, int out, int in, float[] dW, int o, int no, int i, int width) {
        for (int k = 0; k < no; k++) {
            int wo = (o + k) * in + i;
            if (width % L == 0) {
                for (int v = 0; v < width; v += L) {
                    FloatVector a = FloatVector.fromArray(F, dW, wo + v);
                    for (int r = 0; r < n; r++) a = FloatVector.broadcast(F, dy[r * out + o + k]).fma(FloatVector.fromArray(F, x, r * in + i + v), a);
                    a.intoArray(dW, wo + v);
                }
            } else {
                for (int j = 0; j < width; j++) {
                    float s = 0;
                    for (int r = 0; r < n; r++) s += dy[r * out + o + k] * x[r * in + i + j];
                    dW[wo + j] += s;
                }
            }
        }
    }
}
