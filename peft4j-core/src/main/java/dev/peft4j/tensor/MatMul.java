package dev.peft4j.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import jdk.incubator.vector.FloatVector;

import static dev.peft4j.tensor.Dot.F;
import static dev.peft4j.tensor.Dot.L;
import static dev.peft4j.tensor.Dot.LE;

/**
 * Forward matrix products y = x·Wᵀ against a {@link Matrix} W [out, in] (nn.Linear layout), float32 compute, all cores, Vector
 * API (the backward products are in {@code dev.peft4j.train.BackMatMul}).
 *
 * <p><b>Row invariance.</b> Every path computes each (row, output) in the inner-product order fixed by {@link Dot} (one L-lane
 * accumulator over the input in order, the same lane-sum tree, the same tail), so a row's result is bitwise the same whatever
 * the number of rows, the other rows, the path or the thread count: decoding one token, eight sequences together and a
 * prefill of the same text agree exactly.
 *
 * <p><b>Paths.</b> One row against mapped BF16 or Q8_0 weights (decoding) streams the weights once and converts them in
 * registers, four weight rows at a time. Everything else converts a block of {@value #NB} weight rows to a float32 panel
 * once (64-byte aligned, off-heap) and runs every row through it, 4 rows x 4 outputs of accumulators per register tile; the
 * input rows are copied once to an aligned buffer too, so no vector load ever straddles a cache line whatever the heap did.
 */
public final class MatMul {
    /** Weight rows per panel block (the unit of work of a thread). */
    static final int NB = 64;
    /** Input rows per chunk: a chunk of rows is run through a panel's weight quad while that quad is in the L1 cache. */
    static final int RC = 64;
    /**
     * Up to this many rows, mapped BF16 / Q8_0 weights are read in place (converted in registers, streamed once from memory):
     * decoding, one sequence or a batch of sequences advancing together.
     */
    static final int DIRECT_MAX_ROWS = 16;
    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** Per-thread buffers: the aligned copy of x (owned by the calling thread), a weight panel, accumulators and sums. */
    static final class Scratch {
        MemorySegment xs = MemorySegment.NULL, panel = MemorySegment.NULL;
        final float[] acc = new float[16 * L], res = new float[16];

        MemorySegment xs(long bytes) {
            if (xs.byteSize() < bytes) xs = Arena.ofAuto().allocate(Math.max(bytes, 2 * xs.byteSize()), 64);
            return xs;
        }

        MemorySegment panel(long bytes) {
            if (panel.byteSize() < bytes) panel = Arena.ofAuto().allocate(bytes, 64);
            return panel;
        }
    }

    private MatMul() {}

    /** y[n, out] = x[n, in] · Wᵀ (overwrites y). */
    public static void xWt(float[] x, int n, Matrix w, float[] y) {
        xWt(x, 0, n, w, y, 0, false);
    }

    /** y[yOff + r*out + o] (=|+=) Σ_i x[xOff + r*in + i] · W[o, i], for r in [0,n). Parallel over output rows. */
    public static void xWt(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean accumulate) {
        run(x, xOff, n, w, y, yOff, accumulate, true);
    }

    /** y = x·Wᵀ (or +=) on the calling thread only: for use inside an already parallel loop. Same results as {@link #xWt}. */
    public static void xWtSerial(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean accumulate) {
        run(x, xOff, n, w, y, yOff, accumulate, false);
    }

    /** Input stride in floats of the aligned copy: whole vectors, so every row starts on a 64-byte line. */
    static int stride(int in) { return (in + L - 1) / L * L; }

    private static void run(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean acc, boolean parallel) {
        final int in = w.cols, out = w.rows;
        if (n <= 0 || out == 0) return;
        if (x.length < xOff + (long) n * in || y.length < yOff + (long) n * out) throw new IllegalArgumentException("x or y too short for " + n + " rows of " + w.rows + "x" + w.cols);
        final int xst = stride(in);
        MemorySegment xs = SCRATCH.get().xs(4L * n * xst);
        for (int r = 0; r < n; r++) MemorySegment.copy(x, xOff + r * in, xs, Matrix.LE_FLOAT, 4L * r * xst, in);
        if (in == 0) {
            for (int i = 0; i < n * out; i++) if (!acc) y[yOff + i] = 0f;
            return;
        }
        boolean direct = n <= DIRECT_MAX_ROWS && !w.onHeap() && (w.dtype == DType.BF16 || w.dtype == DType.Q8_0) && in % L == 0 && out % 4 == 0;
        if (direct) {
            int quads = out / 4;
            Parallel.RangeBody body = (q0, q1) -> directRange(xs, xst, n, w, y, yOff, acc, q0, q1);
            if (parallel) Parallel.forRange(quads, Math.max(1, 4096 / Math.max(1, in)), body);
            else body.run(0, quads);
            return;
        }
        int blocks = (out + NB - 1) / NB;
        Parallel.RangeBody body = (b0, b1) -> panelRange(xs, xst, n, w, y, yOff, acc, b0, b1);
        if (parallel) Parallel.forRange(blocks, 1, body);
        else body.run(0, blocks);
    }

    /**
     * Rows [0, n) against weight quads [q0, q1) of a mapped BF16 / Q8_0 matrix, converted in registers: groups of eight rows
     * through 8-row x 2-output tiles (each weight vector converted once for the eight rows), the other rows one at a time
     * through 1-row x 4-output tiles (the quad then comes from the L1 cache).
     */
    private static void directRange(MemorySegment xs, int xst, int n, Matrix w, float[] y, int yOff, boolean acc, int q0, int q1) {
        Scratch s = SCRATCH.get();
        float[] a = s.acc, res = s.res;
        MemorySegment ws = w.segment();
        int in = w.cols, out = w.rows;
        long rb = w.rowBytes, xsb = 4L * xst;
        boolean q8 = w.dtype == DType.Q8_0;
        for (int q = q0; q < q1; q++) {
            int r = 0;
            for (; r + 8 <= n; r += 8) {
                for (int h = 0; h < 2; h++) {
                    long wo = (4L * q + 2 * h) * rb;
                    if (q8) Tiles.q8x8x2(xs, r * xsb, xsb, ws, wo, rb, in, a);
                    else Tiles.bf16x8x2(xs, r * xsb, xsb, ws, wo, rb, in, a);
                    Dot.reduce16(a, res, 0);
                    for (int i = 0; i < 8; i++) {
                        int yo = yOff + (r + i) * out + 4 * q + 2 * h;
                        y[yo] = acc ? y[yo] + res[2 * i] : res[2 * i];
                        y[yo + 1] = acc ? y[yo + 1] + res[2 * i + 1] : res[2 * i + 1];
                    }
                }
            }
            for (; r < n; r++) {
                if (q8) Tiles.q8x4(xs, r * xsb, ws, 4L * q * rb, rb, in, a);
                else Tiles.bf16x4(xs, r * xsb, ws, 4L * q * rb, rb, in, a);
                Dot.reduce4(a, 0, res, 0);
                int yo = yOff + r * out + 4 * q;
                if (acc) for (int c = 0; c < 4; c++) y[yo + c] += res[c];
                else System.arraycopy(res, 0, y, yo, 4);
            }
        }
    }

    /** All n rows against weight blocks [b0, b1) of {@value #NB} rows, each converted once to a float32 panel. */
    private static void panelRange(MemorySegment xs, int xst, int n, Matrix w, float[] y, int yOff, boolean acc, int b0, int b1) {
        Scratch s = SCRATCH.get();
        final int in = w.cols, out = w.rows, pst = stride(in), bound = in / L * L;
        MemorySegment p = s.panel(4L * NB * pst);
        float[] a = s.acc, res = s.res;
        for (int b = b0; b < b1; b++) {
            int o0 = b * NB, nb = Math.min(NB, out - o0);
            w.rowsToSegment(o0, nb, p, 0, pst);
            for (int rc = 0; rc < n; rc += RC) {
                int re = Math.min(n, rc + RC);
                for (int oq = 0; oq < nb; oq += 4) {
                    int no = Math.min(4, nb - oq);
                    long po = 4L * oq * pst;
                    int r = rc;
                    for (; r + 4 <= re; r += 4) {
                        Tiles.f32x4x4(xs, 4L * r * xst, 4L * xst, p, po, 4L * pst, bound, a);
                        Dot.reduce16(a, res, 0);
                        store(res, 4, no, xs, 4L * r * xst, 4L * xst, p, po, 4L * pst, bound, in, y, yOff + r * out + o0 + oq, out, acc);
                    }
                    for (; r < re; r++) {
                        Tiles.f32x1x4(xs, 4L * r * xst, p, po, 4L * pst, bound, a);
                        Dot.reduce4(a, 0, res, 0);
                        store(res, 1, no, xs, 4L * r * xst, 4L * xst, p, po, 4L * pst, bound, in, y, yOff + r * out + o0 + oq, out, acc);
                    }
                }
            }
        }
    }

    /** Adds the tails to the lane sums res[4·row + c] and stores them to y (rows stride out). */
    private static void store(float[] res, int rows, int no, MemorySegment xs, long xo, long xstb, MemorySegment p, long po, long pstb,
                              int bound, int in, float[] y, int yo, int out, boolean acc) {
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < no; c++) {
                float v = res[4 * r + c];
                if (bound < in) v = Dot.tail(v, xs, xo + r * xstb, p, po + c * pstb, bound, in);
                int i = yo + r * out + c;
                y[i] = acc ? y[i] + v : v;
            }
        }
    }

    /** The tile kernels; each keeps its accumulators in registers over the whole input and leaves them in acc[j·L ...]. */
    static final class Tiles {
        private Tiles() {}

        /** 4 rows x 4 outputs over float32 [0, bound): acc[(4r + c)·L ...]. */
        static void f32x4x4(MemorySegment x, long xo, long xs, MemorySegment w, long wo, long ws, int bound, float[] acc) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00;
            FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
            FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
            long end = 4L * bound;
            for (long k = 0; k < end; k += 4L * L) {
                FloatVector w0 = FloatVector.fromMemorySegment(F, w, wo + k, LE);
                FloatVector w1 = FloatVector.fromMemorySegment(F, w, wo + ws + k, LE);
                FloatVector w2 = FloatVector.fromMemorySegment(F, w, wo + 2 * ws + k, LE);
                FloatVector w3 = FloatVector.fromMemorySegment(F, w, wo + 3 * ws + k, LE);
                FloatVector x0 = FloatVector.fromMemorySegment(F, x, xo + k, LE);
                a00 = x0.fma(w0, a00); a01 = x0.fma(w1, a01); a02 = x0.fma(w2, a02); a03 = x0.fma(w3, a03);
                FloatVector x1 = FloatVector.fromMemorySegment(F, x, xo + xs + k, LE);
                a10 = x1.fma(w0, a10); a11 = x1.fma(w1, a11); a12 = x1.fma(w2, a12); a13 = x1.fma(w3, a13);
                FloatVector x2 = FloatVector.fromMemorySegment(F, x, xo + 2 * xs + k, LE);
                a20 = x2.fma(w0, a20); a21 = x2.fma(w1, a21); a22 = x2.fma(w2, a22); a23 = x2.fma(w3, a23);
                FloatVector x3 = FloatVector.fromMemorySegment(F, x, xo + 3 * xs + k, LE);
                a30 = x3.fma(w0, a30); a31 = x3.fma(w1, a31); a32 = x3.fma(w2, a32); a33 = x3.fma(w3, a33);
            }
            a00.intoArray(acc, 0); a01.intoArray(acc, L); a02.intoArray(acc, 2 * L); a03.intoArray(acc, 3 * L);
            a10.intoArray(acc, 4 * L); a11.intoArray(acc, 5 * L); a12.intoArray(acc, 6 * L); a13.intoArray(acc, 7 * L);
            a20.intoArray(acc, 8 * L); a21.intoArray(acc, 9 * L); a22.intoArray(acc, 10 * L); a23.intoArray(acc, 11 * L);
            a30.intoArray(acc, 12 * L); a31.intoArray(acc, 13 * L); a32.intoArray(acc, 14 * L); a33.intoArray(acc, 15 * L);
        }

        /** 1 row x 4 outputs over float32 [0, bound): acc[c·L ...]. */
        static void f32x1x4(MemorySegment x, long xo, MemorySegment w, long wo, long ws, int bound, float[] acc) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            long end = 4L * bound;
            for (long k = 0; k < end; k += 4L * L) {
                FloatVector x0 = FloatVector.fromMemorySegment(F, x, xo + k, LE);
                a0 = x0.fma(FloatVector.fromMemorySegment(F, w, wo + k, LE), a0);
                a1 = x0.fma(FloatVector.fromMemorySegment(F, w, wo + ws + k, LE), a1);
                a2 = x0.fma(FloatVector.fromMemorySegment(F, w, wo + 2 * ws + k, LE), a2);
                a3 = x0.fma(FloatVector.fromMemorySegment(F, w, wo + 3 * ws + k, LE), a3);
            }
            a0.intoArray(acc, 0); a1.intoArray(acc, L); a2.intoArray(acc, 2 * L); a3.intoArray(acc, 3 * L);
        }

        /** 1 row (aligned float32 at x[0..in)) x 4 mapped BF16 rows from byte wo (row stride rb), widened in registers. */
        static void bf16x4(MemorySegment x, long xo, MemorySegment w, long wo, long rb, int in, float[] acc) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            long w1 = wo + rb, w2 = w1 + rb, w3 = w2 + rb;
            for (int k = 0; k < in; k += L) {
                FloatVector xv = FloatVector.fromMemorySegment(F, x, xo + 4L * k, LE);
                long kb = 2L * k;
                a0 = xv.fma(Matrix.bf16(w, wo + kb), a0);
                a1 = xv.fma(Matrix.bf16(w, w1 + kb), a1);
                a2 = xv.fma(Matrix.bf16(w, w2 + kb), a2);
                a3 = xv.fma(Matrix.bf16(w, w3 + kb), a3);
            }
            a0.intoArray(acc, 0); a1.intoArray(acc, L); a2.intoArray(acc, 2 * L); a3.intoArray(acc, 3 * L);
        }

        /** 1 row x 4 mapped Q8_0 rows from byte wo (row stride rb): each weight d·q formed exactly in registers. */
        static void q8x4(MemorySegment x, long xo, MemorySegment w, long wo, long rb, int in, float[] acc) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            long w1 = wo + rb, w2 = w1 + rb, w3 = w2 + rb;
            for (int k = 0; k < in; k += DType.Q8_BLOCK) {
                long kb = (long) (k / DType.Q8_BLOCK) * DType.Q8_BLOCK_BYTES;
                float d0 = Float.float16ToFloat(w.get(Matrix.LE_SHORT, wo + kb)), d1 = Float.float16ToFloat(w.get(Matrix.LE_SHORT, w1 + kb));
                float d2 = Float.float16ToFloat(w.get(Matrix.LE_SHORT, w2 + kb)), d3 = Float.float16ToFloat(w.get(Matrix.LE_SHORT, w3 + kb));
                for (int j = 0; j < DType.Q8_BLOCK; j += L) {
                    FloatVector xv = FloatVector.fromMemorySegment(F, x, xo + 4L * (k + j), LE);
                    long qb = kb + 2 + j;
                    a0 = xv.fma(Matrix.q8(w, wo + qb, d0), a0);
                    a1 = xv.fma(Matrix.q8(w, w1 + qb, d1), a1);
                    a2 = xv.fma(Matrix.q8(w, w2 + qb, d2), a2);
                    a3 = xv.fma(Matrix.q8(w, w3 + qb, d3), a3);
                }
            }
            a0.intoArray(acc, 0); a1.intoArray(acc, L); a2.intoArray(acc, 2 * L); a3.intoArray(acc, 3 * L);
        }

        /**
         * 8 rows (aligned float32, row stride xs bytes) x 2 mapped BF16 rows from byte wo (stride rb): acc[(2r + c)·L ...].
         * Each weight vector is widened once and feeds eight FMAs.
         */
        static void bf16x8x2(MemorySegment x, long xo, long xs, MemorySegment w, long wo, long rb, int in, float[] acc) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            FloatVector a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
            long w1 = wo + rb;
            for (int k = 0; k < in; k += L) {
                long kb = 2L * k, kx = xo + 4L * k;
                FloatVector v0 = Matrix.bf16(w, wo + kb), v1 = Matrix.bf16(w, w1 + kb);
                FloatVector xv = FloatVector.fromMemorySegment(F, x, kx, LE);
                a00 = xv.fma(v0, a00); a01 = xv.fma(v1, a01);
                xv = FloatVector.fromMemorySegment(F, x, kx + xs, LE);
                a10 = xv.fma(v0, a10); a11 = xv.fma(v1, a11);
                xv = FloatVector.fromMemorySegment(F, x, kx + 2 * xs, LE);
                a20 = xv.fma(v0, a20); a21 = xv.fma(v1, a21);
                xv = FloatVector.fromMemorySegment(F, x, kx + 3 * xs, LE);
                a30 = xv.fma(v0, a30); a31 = xv.fma(v1, a31);
                xv = FloatVector.fromMemorySegment(F, x, kx + 4 * xs, LE);
                a40 = xv.fma(v0, a40); a41 = xv.fma(v1, a41);
                xv = FloatVector.fromMemorySegment(F, x, kx + 5 * xs, LE);
                a50 = xv.fma(v0, a50); a51 = xv.fma(v1, a51);
                xv = FloatVector.fromMemorySegment(F, x, kx + 6 * xs, LE);
                a60 = xv.fma(v0, a60); a61 = xv.fma(v1, a61);
                xv = FloatVector.fromMemorySegment(F, x, kx + 7 * xs, LE);
                a70 = xv.fma(v0, a70); a71 = xv.fma(v1, a71);
            }
            a00.intoArray(acc, 0); a01.intoArray(acc, L); a10.intoArray(acc, 2 * L); a11.intoArray(acc, 3 * L);
            a20.intoArray(acc, 4 * L); a21.intoArray(acc, 5 * L); a30.intoArray(acc, 6 * L); a31.intoArray(acc, 7 * L);
            a40.intoArray(acc, 8 * L); a41.intoArray(acc, 9 * L); a50.intoArray(acc, 10 * L); a51.intoArray(acc, 11 * L);
            a60.intoArray(acc, 12 * L); a61.intoArray(acc, 13 * L); a70.intoArray(acc, 14 * L); a71.intoArray(acc, 15 * L);
        }

        /** {@link #bf16x8x2} for Q8_0 rows: each weight d·q formed once in registers for the eight rows. */
        static void q8x8x2(MemorySegment x, long xo, long xs, MemorySegment w, long wo, long rb, int in, float[] acc) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            FloatVector a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
            long w1 = wo + rb;
            for (int k = 0; k < in; k += DType.Q8_BLOCK) {
                long kb = (long) (k / DType.Q8_BLOCK) * DType.Q8_BLOCK_BYTES;
                float d0 = Float.float16ToFloat(w.get(Matrix.LE_SHORT, wo + kb)), d1 = Float.float16ToFloat(w.get(Matrix.LE_SHORT, w1 + kb));
                for (int j = 0; j < DType.Q8_BLOCK; j += L) {
                    long qb = kb + 2 + j, kx = xo + 4L * (k + j);
                    FloatVector v0 = Matrix.q8(w, wo + qb, d0), v1 = Matrix.q8(w, w1 + qb, d1);
                    FloatVector xv = FloatVector.fromMemorySegment(F, x, kx, LE);
                    a00 = xv.fma(v0, a00); a01 = xv.fma(v1, a01);
                    xv = FloatVector.fromMemorySegment(F, x, kx + xs, LE);
                    a10 = xv.fma(v0, a10); a11 = xv.fma(v1, a11);
                    xv = FloatVector.fromMemorySegment(F, x, kx + 2 * xs, LE);
                    a20 = xv.fma(v0, a20); a21 = xv.fma(v1, a21);
                    xv = FloatVector.fromMemorySegment(F, x, kx + 3 * xs, LE);
                    a30 = xv.fma(v0, a30); a31 = xv.fma(v1, a31);
                    xv = FloatVector.fromMemorySegment(F, x, kx + 4 * xs, LE);
                    a40 = xv.fma(v0, a40); a41 = xv.fma(v1, a41);
                    xv = FloatVector.fromMemorySegment(F, x, kx + 5 * xs, LE);
                    a50 = xv.fma(v0, a50); a51 = xv.fma(v1, a51);
                    xv = FloatVector.fromMemorySegment(F, x, kx + 6 * xs, LE);
                    a60 = xv.fma(v0, a60); a61 = xv.fma(v1, a61);
                    xv = FloatVector.fromMemorySegment(F, x, kx + 7 * xs, LE);
                    a70 = xv.fma(v0, a70); a71 = xv.fma(v1, a71);
                }
            }
            a00.intoArray(acc, 0); a01.intoArray(acc, L); a10.intoArray(acc, 2 * L); a11.intoArray(acc, 3 * L);
            a20.intoArray(acc, 4 * L); a21.intoArray(acc, 5 * L); a30.intoArray(acc, 6 * L); a31.intoArray(acc, 7 * L);
            a40.intoArray(acc, 8 * L); a41.intoArray(acc, 9 * L); a50.intoArray(acc, 10 * L); a51.intoArray(acc, 11 * L);
            a60.intoArray(acc, 12 * L); a61.intoArray(acc, 13 * L); a70.intoArray(acc, 14 * L); a71.intoArray(acc, 15 * L);
        }
    }
}
