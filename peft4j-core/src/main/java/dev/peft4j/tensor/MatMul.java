package dev.peft4j.tensor;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Forward matrix products y = x·Wᵀ against a {@link Matrix} W [out, in] (nn.Linear layout), float32 compute, all cores, Vector API (the backward products are in {@code dev.peft4j.train.BackMatMul}).
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
        if (n >= GEMM_MIN_ROWS) {
            gemm(x, xOff, n, w, y, yOff, accumulate);
            return;
        }
        int grain = Math.max(4, (int) Math.min(out, 65536L / Math.max(1, in)));
        if (n == 1 && w.dtype == DType.BF16 && !w.onHeap() && in % L == 0 && out % 4 == 0) {
            // batch-1 decoding: stream the bf16 rows and convert in registers
            Parallel.forRange(out / 4, Math.max(1, grain / 4), (b0, b1) -> {
                float[] s = new float[4];
                for (int b = b0; b < b1; b++) {
                    w.dot4Bf16(x, xOff, 4 * b, s);
                    int yo = yOff + 4 * b;
                    for (int c = 0; c < 4; c++) y[yo + c] = accumulate ? y[yo + c] + s[c] : s[c];
                }
            });
            return;
        }
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

    /** From this many rows on, products use the outer-product kernel (no horizontal sums; weights transposed per block). */
    static final int GEMM_MIN_ROWS = 24;
    /** Output columns per block of the outer-product kernel: four vectors. */
    private static final int NB = 4 * L;
    private static final java.lang.foreign.ValueLayout.OfFloat LE_FLOAT = java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);
    private static final ThreadLocal<float[][]> GEMM_SCRATCH = ThreadLocal.withInitial(() -> new float[2][0]);
    private static final ThreadLocal<java.lang.foreign.MemorySegment[]> GEMM_WT = ThreadLocal.withInitial(() -> new java.lang.foreign.MemorySegment[1]);

    /**
     * y = x·Wᵀ for many rows: each thread takes blocks of {@value #NB}-ish output columns, converts that block of W to float32
     * once and transposes it to [in][NB], then runs every row through a 4-row x 4-vector register tile: per input element,
     * four broadcasts of x and four weight vectors feed sixteen FMAs. Sums run over the input index in order, so results do
     * not depend on the thread count.
     */
    private static void gemm(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean accumulate) {
        final int blocks = (w.rows + NB - 1) / NB;
        Parallel.forRange(blocks, 1, (b0, b1) -> gemmBlocks(x, xOff, n, w, y, yOff, accumulate, b0, b1));
    }

    /** y = x·Wᵀ (or +=) on the calling thread only: for use inside an already parallel loop. */
    public static void xWtSerial(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean accumulate) {
        gemmBlocks(x, xOff, n, w, y, yOff, accumulate, 0, (w.rows + NB - 1) / NB);
    }

    private static void gemmBlocks(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean accumulate, int b0, int b1) {
        final int in = w.cols, out = w.rows;
        float[][] sc = GEMM_SCRATCH.get();
        if (sc[0].length < NB * in) { sc[0] = new float[NB * in]; sc[1] = new float[NB * in]; }
        float[] rowsBuf = sc[0], wt = sc[1];
        java.lang.foreign.MemorySegment[] ws = GEMM_WT.get();
        if (ws[0] == null || ws[0].byteSize() < 4L * NB * in) ws[0] = java.lang.foreign.Arena.ofAuto().allocate(4L * NB * in, 64);
        java.lang.foreign.MemorySegment wseg = ws[0];
        float[] tmp = new float[NB];
        float[] acc4 = new float[4 * NB];
        for (int b = b0; b < b1; b++) {
            int o0 = b * NB, nb = Math.min(NB, out - o0);
            w.rowsToFloat(o0, nb, rowsBuf, 0);
            for (int j = 0; j < NB; j++) {
                if (j < nb) {
                    int src = j * in;
                    for (int k = 0; k < in; k++) wt[k * NB + j] = rowsBuf[src + k];
                } else {
                    for (int k = 0; k < in; k++) wt[k * NB + j] = 0f;
                }
            }
            java.lang.foreign.MemorySegment.copy(wt, 0, wseg, LE_FLOAT, 0, NB * in);
            int r = 0;
            for (; r + 4 <= n; r += 4) {
                gemmTile4(x, xOff + r * in, in, wseg, acc4);
                flush(acc4, 4, y, yOff + r * out + o0, out, nb, accumulate);
            }
            for (; r < n; r++) gemmTile1(x, xOff + r * in, in, wt, y, yOff + r * out + o0, nb, accumulate, tmp);
        }
    }

    /**
     * The 4-row x 4-vector register tile: writes the 16 accumulators to {@code acc} [4][NB]; the caller adds them to y. The
     * epilogue is kept out of this method on purpose: a smaller method keeps C2 within its inlining budget, so every vector
     * operation here is intrinsified (a larger one sometimes fell back to boxed vectors, 8x slower).
     */
    private static void gemmTile4(float[] x, int xo, int in, java.lang.foreign.MemorySegment wt, float[] acc) {
        FloatVector c00 = FloatVector.zero(F), c01 = c00, c02 = c00, c03 = c00;
        FloatVector c10 = c00, c11 = c00, c12 = c00, c13 = c00;
        FloatVector c20 = c00, c21 = c00, c22 = c00, c23 = c00;
        FloatVector c30 = c00, c31 = c00, c32 = c00, c33 = c00;
        final java.nio.ByteOrder bo = java.nio.ByteOrder.LITTLE_ENDIAN;
        for (int k = 0; k < in; k++) {
            long wo = 4L * k * NB;
            FloatVector w0 = FloatVector.fromMemorySegment(F, wt, wo, bo), w1 = FloatVector.fromMemorySegment(F, wt, wo + 4L * L, bo);
            FloatVector w2 = FloatVector.fromMemorySegment(F, wt, wo + 8L * L, bo), w3 = FloatVector.fromMemorySegment(F, wt, wo + 12L * L, bo);
            FloatVector x0 = FloatVector.broadcast(F, x[xo + k]);
            c00 = x0.fma(w0, c00); c01 = x0.fma(w1, c01); c02 = x0.fma(w2, c02); c03 = x0.fma(w3, c03);
            FloatVector x1 = FloatVector.broadcast(F, x[xo + in + k]);
            c10 = x1.fma(w0, c10); c11 = x1.fma(w1, c11); c12 = x1.fma(w2, c12); c13 = x1.fma(w3, c13);
            FloatVector x2 = FloatVector.broadcast(F, x[xo + 2 * in + k]);
            c20 = x2.fma(w0, c20); c21 = x2.fma(w1, c21); c22 = x2.fma(w2, c22); c23 = x2.fma(w3, c23);
            FloatVector x3 = FloatVector.broadcast(F, x[xo + 3 * in + k]);
            c30 = x3.fma(w0, c30); c31 = x3.fma(w1, c31); c32 = x3.fma(w2, c32); c33 = x3.fma(w3, c33);
        }
        c00.intoArray(acc, 0); c01.intoArray(acc, L); c02.intoArray(acc, 2 * L); c03.intoArray(acc, 3 * L);
        c10.intoArray(acc, NB); c11.intoArray(acc, NB + L); c12.intoArray(acc, NB + 2 * L); c13.intoArray(acc, NB + 3 * L);
        c20.intoArray(acc, 2 * NB); c21.intoArray(acc, 2 * NB + L); c22.intoArray(acc, 2 * NB + 2 * L); c23.intoArray(acc, 2 * NB + 3 * L);
        c30.intoArray(acc, 3 * NB); c31.intoArray(acc, 3 * NB + L); c32.intoArray(acc, 3 * NB + 2 * L); c33.intoArray(acc, 3 * NB + 3 * L);
    }

    /** y rows [yo + i*out, +nb) (=|+=) acc rows i, for i in [0, rows). */
    private static void flush(float[] acc, int rows, float[] y, int yo, int out, int nb, boolean add) {
        for (int i = 0; i < rows; i++) {
            int a = i * NB, b = yo + i * out;
            if (add) for (int j = 0; j < nb; j++) y[b + j] += acc[a + j];
            else System.arraycopy(acc, a, y, b, nb);
        }
    }

    private static void gemmTile1(float[] x, int xo, int in, float[] wt, float[] y, int yo, int nb, boolean acc, float[] tmp) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0;
        for (int k = 0; k < in; k++) {
            int wo = k * NB;
            FloatVector x0 = FloatVector.broadcast(F, x[xo + k]);
            c0 = x0.fma(FloatVector.fromArray(F, wt, wo), c0);
            c1 = x0.fma(FloatVector.fromArray(F, wt, wo + L), c1);
            c2 = x0.fma(FloatVector.fromArray(F, wt, wo + 2 * L), c2);
            c3 = x0.fma(FloatVector.fromArray(F, wt, wo + 3 * L), c3);
        }
        storeRow(c0, c1, c2, c3, y, yo, nb, acc, tmp);
    }

    private static void storeRow(FloatVector a, FloatVector b, FloatVector c, FloatVector d, float[] y, int yo, int nb, boolean acc, float[] tmp) {
        if (nb == NB) {
            if (acc) {
                a = a.add(FloatVector.fromArray(F, y, yo));
                b = b.add(FloatVector.fromArray(F, y, yo + L));
                c = c.add(FloatVector.fromArray(F, y, yo + 2 * L));
                d = d.add(FloatVector.fromArray(F, y, yo + 3 * L));
            }
            a.intoArray(y, yo);
            b.intoArray(y, yo + L);
            c.intoArray(y, yo + 2 * L);
            d.intoArray(y, yo + 3 * L);
            return;
        }
        a.intoArray(tmp, 0);
        b.intoArray(tmp, L);
        c.intoArray(tmp, 2 * L);
        d.intoArray(tmp, 3 * L);
        for (int j = 0; j < nb; j++) y[yo + j] = acc ? y[yo + j] + tmp[j] : tmp[j];
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
                Ops.hsum(a00), Ops.hsum(a01), Ops.hsum(a02), Ops.hsum(a03),
                Ops.hsum(a10), Ops.hsum(a11), Ops.hsum(a12), Ops.hsum(a13),
                Ops.hsum(a20), Ops.hsum(a21), Ops.hsum(a22), Ops.hsum(a23),
                Ops.hsum(a30), Ops.hsum(a31), Ops.hsum(a32), Ops.hsum(a33)};
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
        float[] s = {Ops.hsum(a0), Ops.hsum(a1), Ops.hsum(a2), Ops.hsum(a3)};
        for (; i < in; i++) {
            float xv = x[xo + i];
            for (int c = 0; c < 4; c++) s[c] += xv * wb[c * in + i];
        }
        for (int c = 0; c < no; c++) {
            if (acc) y[yo + c] += s[c];
            else y[yo + c] = s[c];
        }
    }
}
