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
        MemorySegment xs = MemorySegment.NULL;
        final float[] acc = new float[16 * L], res = new float[16];
        float[] row = new float[0];

        float[] row(int n) {
            if (row.length < n) row = new float[n];
            return row;
        }

        MemorySegment xs(long bytes) {
            if (xs.byteSize() < bytes) xs = Arena.ofAuto().allocate(Math.max(bytes, 2 * xs.byteSize()), 64);
            return xs;
        }

        float[] xp = new float[0], pp = new float[0];

        float[] xp(int n) {
            if (xp.length < n) xp = new float[Math.max(n, 2 * xp.length)];
            return xp;
        }

        float[] pp(int n) {
            if (pp.length < n) pp = new float[n];
            return pp;
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
        if (in == 0) {
            if (!acc) java.util.Arrays.fill(y, yOff, yOff + n * out, 0f);
            return;
        }
        final int xst = stride(in);
        Scratch sc = SCRATCH.get();
        boolean direct = n <= DIRECT_MAX_ROWS && !w.onHeap() && (w.dtype == DType.BF16 || w.dtype == DType.Q8_0) && in % L == 0 && out % 4 == 0;
        if (direct) {
            float[] xs = sc.xp(n * xst);
            for (int r = 0; r < n; r++) System.arraycopy(x, xOff + r * in, xs, r * xst, in);
            int quads = out / 4;
            Parallel.RangeBody body = (q0, q1) -> directRange(xs, xst, n, w, y, yOff, acc, q0, q1);
            if (parallel) Parallel.forRange(quads, Math.max(1, 4096 / Math.max(1, in)), body);
            else body.run(0, quads);
            return;
        }
        int quadsX = (n + 3) / 4;
        float[] xs = sc.xp(16 * quadsX * xst);
        pack(x, xOff, n, in, xs);
        int blocks = (out + NB - 1) / NB;
        Parallel.RangeBody body = (b0, b1) -> panelRange(xs, x, xOff, n, w, y, yOff, acc, b0, b1);
        if (parallel) Parallel.forRange(blocks, 1, body);
        else body.run(0, blocks);
    }

    /**
     * Packs rows [0, n) of width in, four rows to a quad: quad q, chunk s (L floats), row c of the quad at float
     * ((q·chunks + s)·4 + c)·L, chunks = stride(in)/L, zero past the input's end and in the missing rows of the last quad. A
     * 4x4 tile then reads two sequential streams (input quad, weight quad).
     */
    static void pack(float[] src, int off, int n, int in, float[] dst) {
        int chunks = stride(in) / L, full = in / L;
        int quads = (n + 3) / 4;
        for (int q = 0; q < quads; q++) {
            for (int c = 0; c < 4; c++) {
                int r = 4 * q + c;
                int d = (q * chunks * 4 + c) * L;
                if (r >= n) {
                    for (int s = 0; s < chunks; s++) java.util.Arrays.fill(dst, d + 4 * L * s, d + 4 * L * s + L, 0f);
                    continue;
                }
                packRow(src, off + r * in, in, chunks, dst, d);
            }
        }
    }

    /**
     * Rows [0, n) against weight quads [q0, q1) of a mapped BF16 / Q8_0 matrix, converted in registers: groups of eight rows
     * through 8-row x 2-output tiles (each weight vector converted once for the eight rows), the other rows one at a time
     * through 1-row x 4-output tiles (the quad then comes from the L1 cache).
     */
    private static void directRange(float[] xs, int xst, int n, Matrix w, float[] y, int yOff, boolean acc, int q0, int q1) {
        Scratch s = SCRATCH.get();
        float[] a = s.acc, res = s.res;
        MemorySegment ws = w.segment();
        int in = w.cols, out = w.rows;
        long rb = w.rowBytes;
        boolean q8 = w.dtype == DType.Q8_0;
        for (int q = q0; q < q1; q++) {
            int r = 0;
            for (; r + 8 <= n; r += 8) {
                for (int h = 0; h < 2; h++) {
                    long wo = (4L * q + 2 * h) * rb;
                    if (q8) Tiles.q8x8x2(xs, r * xst, xst, ws, wo, rb, in, a);
                    else Tiles.bf16x8x2(xs, r * xst, xst, ws, wo, rb, in, a);
                    Dot.reduce16(a, res, 0);
                    for (int i = 0; i < 8; i++) {
                        int yo = yOff + (r + i) * out + 4 * q + 2 * h;
                        y[yo] = acc ? y[yo] + res[2 * i] : res[2 * i];
                        y[yo + 1] = acc ? y[yo + 1] + res[2 * i + 1] : res[2 * i + 1];
                    }
                }
            }
            for (; r < n; r++) {
                if (q8) Tiles.q8x4(xs, r * xst, ws, 4L * q * rb, rb, in, a);
                else Tiles.bf16x4(xs, r * xst, ws, 4L * q * rb, rb, in, a);
                Dot.reduce4(a, 0, res, 0);
                int yo = yOff + r * out + 4 * q;
                if (acc) for (int c = 0; c < 4; c++) y[yo + c] += res[c];
                else System.arraycopy(res, 0, y, yo, 4);
            }
        }
    }

    /**
     * All n rows (packed) against weight blocks [b0, b1) of {@value #NB} rows, each converted once to a packed float32 panel;
     * every (input quad, weight quad) pair through one 4x4 tile (rows past n are zeros and not stored).
     */
    private static void panelRange(float[] xs, float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean acc, int b0, int b1) {
        Scratch s = SCRATCH.get();
        final int in = w.cols, out = w.rows, chunks = stride(in) / L, full = in / L;
        final int quadFloats = 4 * L * chunks;
        float[] p = s.pp(quadFloats * (NB / 4));
        float[] a = s.acc, res = s.res, row = s.row(in);
        int quadsX = (n + 3) / 4;
        for (int b = b0; b < b1; b++) {
            int o0 = b * NB, nb = Math.min(NB, out - o0);
            for (int r = 0; r < nb; r += 4) {
                int nr = Math.min(4, nb - r);
                for (int c = 0; c < 4; c++) {
                    if (c < nr) w.rowsToFloat(o0 + r + c, 1, row, 0);
                    else java.util.Arrays.fill(row, 0, in, 0f);
                    packRow(row, 0, in, chunks, p, (r / 4) * quadFloats + c * L);
                }
            }
            for (int qc = 0; qc < quadsX; qc += RC / 4) {
                int qe = Math.min(quadsX, qc + RC / 4);
                for (int oq = 0; oq < nb; oq += 4) {
                    int no = Math.min(4, nb - oq);
                    int po = (oq / 4) * quadFloats;
                    for (int xq = qc; xq < qe; xq++) {
                        int rows = Math.min(4, n - 4 * xq);
                        if (rows == 1) {
                            Tiles.packed1x4(xs, xq * quadFloats, p, po, full, a);
                            Dot.reduce4(a, 0, res, 0);
                        } else {
                            Tiles.packed4x4(xs, xq * quadFloats, p, po, full, a);
                            Dot.reduce16(a, res, 0);
                        }
                        if (full < in) tails(res, rows, no, x, xOff + 4 * xq * in, in, p, po, full);
                        int yo = yOff + 4 * xq * out + o0 + oq;
                        for (int i = 0; i < rows; i++) {
                            int yi = yo + i * out;
                            if (acc) for (int c = 0; c < no; c++) y[yi + c] += res[4 * i + c];
                            else System.arraycopy(res, 4 * i, y, yi, no);
                        }
                    }
                }
            }
        }
    }

    /** Writes one float32 row src[so, so+in) to a packed quad's row starting at float d (chunk s at d + 4·L·s; zeros past in). */
    private static void packRow(float[] src, int so, int in, int chunks, float[] p, int d) {
        int full = in / L;
        for (int s = 0; s < full; s++) FloatVector.fromArray(F, src, so + s * L).intoArray(p, d + 4 * L * s);
        if (full < chunks) {
            int t = d + 4 * L * full, rest = in - full * L;
            System.arraycopy(src, so + full * L, p, t, rest);
            java.util.Arrays.fill(p, t + rest, t + L, 0f);
        }
    }

    /** Adds the input's tail [full·L, in) to the lane sums res[4·row + c], in order: {@code v += x[k]·w[k]}. */
    private static void tails(float[] res, int rows, int no, float[] x, int xo, int in, float[] p, int po, int full) {
        int k0 = full * L;
        for (int i = 0; i < rows; i++) {
            for (int c = 0; c < no; c++) {
                float v = res[4 * i + c];
                int wo = po + (full * 4 + c) * L;
                for (int k = k0; k < in; k++) v += x[xo + i * in + k] * p[wo + k - k0];
                res[4 * i + c] = v;
            }
        }
    }

    /** The tile kernels; each keeps its accumulators in registers over the whole input and leaves them in acc[j·L ...]. */
    static final class Tiles {
        private Tiles() {}

        /**
         * 4 packed input rows x 4 packed weight rows over {@code chunks} whole vectors: acc[(4r + c)·L ...]. Each step reads
         * four consecutive vectors of each quad (two sequential streams).
         */
        static void packed4x4(float[] x, int xo, float[] w, int wo, int chunks, float[] acc) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00;
            FloatVector a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00;
            FloatVector a30 = a00, a31 = a00, a32 = a00, a33 = a00;
            final int end = 4 * L * chunks;
            for (int k = 0; k < end; k += 4 * L) {
                int wk = wo + k, xk = xo + k;
                FloatVector w0 = FloatVector.fromArray(F, w, wk);
                FloatVector w1 = FloatVector.fromArray(F, w, wk + L);
                FloatVector w2 = FloatVector.fromArray(F, w, wk + 2 * L);
                FloatVector w3 = FloatVector.fromArray(F, w, wk + 3 * L);
                FloatVector x0 = FloatVector.fromArray(F, x, xk);
                a00 = x0.fma(w0, a00); a01 = x0.fma(w1, a01); a02 = x0.fma(w2, a02); a03 = x0.fma(w3, a03);
                FloatVector x1 = FloatVector.fromArray(F, x, xk + L);
                a10 = x1.fma(w0, a10); a11 = x1.fma(w1, a11); a12 = x1.fma(w2, a12); a13 = x1.fma(w3, a13);
                FloatVector x2 = FloatVector.fromArray(F, x, xk + 2 * L);
                a20 = x2.fma(w0, a20); a21 = x2.fma(w1, a21); a22 = x2.fma(w2, a22); a23 = x2.fma(w3, a23);
                FloatVector x3 = FloatVector.fromArray(F, x, xk + 3 * L);
                a30 = x3.fma(w0, a30); a31 = x3.fma(w1, a31); a32 = x3.fma(w2, a32); a33 = x3.fma(w3, a33);
            }
            a00.intoArray(acc, 0); a01.intoArray(acc, L); a02.intoArray(acc, 2 * L); a03.intoArray(acc, 3 * L);
            a10.intoArray(acc, 4 * L); a11.intoArray(acc, 5 * L); a12.intoArray(acc, 6 * L); a13.intoArray(acc, 7 * L);
            a20.intoArray(acc, 8 * L); a21.intoArray(acc, 9 * L); a22.intoArray(acc, 10 * L); a23.intoArray(acc, 11 * L);
            a30.intoArray(acc, 12 * L); a31.intoArray(acc, 13 * L); a32.intoArray(acc, 14 * L); a33.intoArray(acc, 15 * L);
        }

        /** Row 0 of a packed input quad x 4 packed weight rows (a single row: decoding against heap weights): acc[c·L ...]. */
        static void packed1x4(float[] x, int xo, float[] w, int wo, int chunks, float[] acc) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            final int end = 4 * L * chunks;
            for (int k = 0; k < end; k += 4 * L) {
                int wk = wo + k;
                FloatVector x0 = FloatVector.fromArray(F, x, xo + k);
                a0 = x0.fma(FloatVector.fromArray(F, w, wk), a0);
                a1 = x0.fma(FloatVector.fromArray(F, w, wk + L), a1);
                a2 = x0.fma(FloatVector.fromArray(F, w, wk + 2 * L), a2);
                a3 = x0.fma(FloatVector.fromArray(F, w, wk + 3 * L), a3);
            }
            a0.intoArray(acc, 0); a1.intoArray(acc, L); a2.intoArray(acc, 2 * L); a3.intoArray(acc, 3 * L);
        }

        /** 1 row (aligned float32 at x[0..in)) x 4 mapped BF16 rows from byte wo (row stride rb), widened in registers. */
        static void bf16x4(float[] x, int xo, MemorySegment w, long wo, long rb, int in, float[] acc) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            long w1 = wo + rb, w2 = w1 + rb, w3 = w2 + rb;
            for (int k = 0; k < in; k += L) {
                FloatVector xv = FloatVector.fromArray(F, x, xo + k);
                long kb = 2L * k;
                a0 = xv.fma(Matrix.bf16(w, wo + kb), a0);
                a1 = xv.fma(Matrix.bf16(w, w1 + kb), a1);
                a2 = xv.fma(Matrix.bf16(w, w2 + kb), a2);
                a3 = xv.fma(Matrix.bf16(w, w3 + kb), a3);
            }
            a0.intoArray(acc, 0); a1.intoArray(acc, L); a2.intoArray(acc, 2 * L); a3.intoArray(acc, 3 * L);
        }

        /**
         * 1 row x 4 mapped Q8_0 rows from byte wo (row stride rb), each weight d·q formed exactly in registers. The four rows
         * are read one after the other: interleaving two or four streams of 34-byte blocks defeated the hardware prefetcher
         * (2.4-2.9 against 1.3 ns per 16 weights from memory, one thread).
         */
        static void q8x4(float[] x, int xo, MemorySegment w, long wo, long rb, int in, float[] acc) {
            for (int c = 0; c < 4; c++) q8x1(x, xo, w, wo + c * rb, in, acc, c * L);
        }

        private static void q8x1(float[] x, int xo, MemorySegment w, long wo, int in, float[] acc, int ao) {
            FloatVector a0 = FloatVector.zero(F);
            for (int k = 0; k < in; k += DType.Q8_BLOCK) {
                long kb = wo + (long) (k / DType.Q8_BLOCK) * DType.Q8_BLOCK_BYTES;
                float d = Float.float16ToFloat(w.get(Matrix.LE_SHORT, kb));
                for (int j = 0; j < DType.Q8_BLOCK; j += L) {
                    a0 = FloatVector.fromArray(F, x, xo + k + j).fma(Matrix.q8(w, kb + 2 + j, d), a0);
                }
            }
            a0.intoArray(acc, ao);
        }

        /**
         * 8 rows (aligned float32, row stride xs bytes) x 2 mapped BF16 rows from byte wo (stride rb): acc[(2r + c)·L ...].
         * Each weight vector is widened once and feeds eight FMAs.
         */
        static void bf16x8x2(float[] x, int xo, int xs, MemorySegment w, long wo, long rb, int in, float[] acc) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            FloatVector a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
            long w1 = wo + rb;
            for (int k = 0; k < in; k += L) {
                long kb = 2L * k; int kx = xo + k;
                FloatVector v0 = Matrix.bf16(w, wo + kb), v1 = Matrix.bf16(w, w1 + kb);
                FloatVector xv = FloatVector.fromArray(F, x, kx);
                a00 = xv.fma(v0, a00); a01 = xv.fma(v1, a01);
                xv = FloatVector.fromArray(F, x, kx + xs);
                a10 = xv.fma(v0, a10); a11 = xv.fma(v1, a11);
                xv = FloatVector.fromArray(F, x, kx + 2 * xs);
                a20 = xv.fma(v0, a20); a21 = xv.fma(v1, a21);
                xv = FloatVector.fromArray(F, x, kx + 3 * xs);
                a30 = xv.fma(v0, a30); a31 = xv.fma(v1, a31);
                xv = FloatVector.fromArray(F, x, kx + 4 * xs);
                a40 = xv.fma(v0, a40); a41 = xv.fma(v1, a41);
                xv = FloatVector.fromArray(F, x, kx + 5 * xs);
                a50 = xv.fma(v0, a50); a51 = xv.fma(v1, a51);
                xv = FloatVector.fromArray(F, x, kx + 6 * xs);
                a60 = xv.fma(v0, a60); a61 = xv.fma(v1, a61);
                xv = FloatVector.fromArray(F, x, kx + 7 * xs);
                a70 = xv.fma(v0, a70); a71 = xv.fma(v1, a71);
            }
            a00.intoArray(acc, 0); a01.intoArray(acc, L); a10.intoArray(acc, 2 * L); a11.intoArray(acc, 3 * L);
            a20.intoArray(acc, 4 * L); a21.intoArray(acc, 5 * L); a30.intoArray(acc, 6 * L); a31.intoArray(acc, 7 * L);
            a40.intoArray(acc, 8 * L); a41.intoArray(acc, 9 * L); a50.intoArray(acc, 10 * L); a51.intoArray(acc, 11 * L);
            a60.intoArray(acc, 12 * L); a61.intoArray(acc, 13 * L); a70.intoArray(acc, 14 * L); a71.intoArray(acc, 15 * L);
        }

        /** {@link #bf16x8x2} for Q8_0 rows: each weight d·q formed once in registers for the eight rows. */
        static void q8x8x2(float[] x, int xo, int xs, MemorySegment w, long wo, long rb, int in, float[] acc) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            FloatVector a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
            long w1 = wo + rb;
            for (int k = 0; k < in; k += DType.Q8_BLOCK) {
                long kb = (long) (k / DType.Q8_BLOCK) * DType.Q8_BLOCK_BYTES;
                float d0 = Float.float16ToFloat(w.get(Matrix.LE_SHORT, wo + kb)), d1 = Float.float16ToFloat(w.get(Matrix.LE_SHORT, w1 + kb));
                for (int j = 0; j < DType.Q8_BLOCK; j += L) {
                    long qb = kb + 2 + j; int kx = xo + k + j;
                    FloatVector v0 = Matrix.q8(w, wo + qb, d0), v1 = Matrix.q8(w, w1 + qb, d1);
                    FloatVector xv = FloatVector.fromArray(F, x, kx);
                    a00 = xv.fma(v0, a00); a01 = xv.fma(v1, a01);
                    xv = FloatVector.fromArray(F, x, kx + xs);
                    a10 = xv.fma(v0, a10); a11 = xv.fma(v1, a11);
                    xv = FloatVector.fromArray(F, x, kx + 2 * xs);
                    a20 = xv.fma(v0, a20); a21 = xv.fma(v1, a21);
                    xv = FloatVector.fromArray(F, x, kx + 3 * xs);
                    a30 = xv.fma(v0, a30); a31 = xv.fma(v1, a31);
                    xv = FloatVector.fromArray(F, x, kx + 4 * xs);
                    a40 = xv.fma(v0, a40); a41 = xv.fma(v1, a41);
                    xv = FloatVector.fromArray(F, x, kx + 5 * xs);
                    a50 = xv.fma(v0, a50); a51 = xv.fma(v1, a51);
                    xv = FloatVector.fromArray(F, x, kx + 6 * xs);
                    a60 = xv.fma(v0, a60); a61 = xv.fma(v1, a61);
                    xv = FloatVector.fromArray(F, x, kx + 7 * xs);
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
