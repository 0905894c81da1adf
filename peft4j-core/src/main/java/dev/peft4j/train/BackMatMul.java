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
 * The two matrix products of a linear layer's backward pass, register-tiled: accumulators kept in registers over the
 * whole reduction.
 * <ul>
 *   <li>{@link #dx}: dx[n, in] += dy[n, out] · W[out, in] — weights converted to float32 once per call (so bf16 mapped weights work) and packed
 *       into column panels read sequentially by a 6-row x 4-vector tile;</li>
 *   <li>{@link #dW}: dW[out, in] += dy[n, out]ᵀ · x[n, in] — x packed into column panels the same way.</li>
 * </ul>
 */
public final class BackMatMul {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    /** Panel width (columns of W per packed panel), rows of dy per work item, rows of W per packing block, outputs per slice. */
    private static final int PW = 4 * L, RCH = 192, OBLOCK = 64, OK = 256;
    private static final ThreadLocal<float[][]> SCRATCH = ThreadLocal.withInitial(() -> new float[1][0]);
    private static final ThreadLocal<MemorySegment[]> ALIGNED = ThreadLocal.withInitial(() -> new MemorySegment[1]);
    private static final ValueLayout.OfFloat LE_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private BackMatMul() {}

    private static float[] scratch(int n) {
        float[][] h = SCRATCH.get();
        if (h[0].length < n) h[0] = new float[n];
        return h[0];
    }

    /**
     * dx[n, in] += dy[n, out] · W (W [out, in], any dtype). W is first converted to float32 once and packed into panels of
     * 4 vectors of columns ([out, 4L] each, contiguous, 64-byte aligned), in parallel over blocks of rows of W; then the
     * product runs in parallel over (panel, chunk of rows) items: for each slice of 256 outputs of the panel (small
     * enough to stay in L1/L2), every row of the chunk goes through it in 6-row x 4-vector register tiles (24 accumulators,
     * 4 panel loads and 6 broadcasts per 24 FMAs, the panel read sequentially).
     */
    public static void dx(float[] dy, int n, Matrix w, float[] dx) {
        dx(dy, n, w, 0, w.rows, dx);
    }

    /** {@link #dx} against rows [wr0, wr0+out) of W only (dy [n, out]): a block of an output head, read in place. */
    public static void dx(float[] dy, int n, Matrix w, int wr0, int out, float[] dx) {
        long t0 = System.nanoTime();
        dx0(dy, n, w, wr0, out, dx);
        if (!Parallel.inKernelThread()) dev.peft4j.tensor.ProductStats.BACKWARD.add(System.nanoTime() - t0, 2L * n * out * w.cols);
    }

    private static void dx0(float[] dy, int n, Matrix w, int wr0, int out, float[] dx) {
        final int in = w.cols;
        if (wr0 < 0 || out < 0 || wr0 + out > w.rows) throw new IllegalArgumentException("dx: rows [" + wr0 + ", " + (wr0 + out) + ") of " + w.rows);
        if (n == 0 || in == 0 || out == 0) return;
        final int full = in / PW, tw = in - full * PW;
        final long panelBytes = 4L * out * PW;
        final MemorySegment wp = packed(4L * out * in);
        final int oblocks = (out + OBLOCK - 1) / OBLOCK;
        Parallel.forRange(oblocks, 1, (b0, b1) -> {
            float[] t = scratch(OBLOCK * in);
            for (int b = b0; b < b1; b++) {
                int o0 = b * OBLOCK, ob = Math.min(OBLOCK, out - o0);
                w.rowsToFloat(wr0 + o0, ob, t, 0);
                for (int o = 0; o < ob; o++) {
                    for (int p = 0; p < full; p++) MemorySegment.copy(t, o * in + p * PW, wp, LE_FLOAT, p * panelBytes + 4L * (o0 + o) * PW, PW);
                    if (tw > 0) MemorySegment.copy(t, o * in + full * PW, wp, LE_FLOAT, full * panelBytes + 4L * (o0 + o) * tw, tw);
                }
            }
        });
        final int chunks = (n + RCH - 1) / RCH, panels = full + (tw > 0 ? 1 : 0);
        Parallel.forChunks(panels * chunks, 1, (a, b) -> {
            for (int item = a; item < b; item++) {
                int p = item / chunks, ch = item % chunks;   // panel-major: consecutive items reuse the panel from cache
                int r0 = ch * RCH, r1 = Math.min(n, r0 + RCH), i0 = p * PW;
                long wo = p * panelBytes;
                if (p < full) {
                    for (int o0 = 0; o0 < out; o0 += OK) {   // a slice of the panel small enough for L1 / L2, all rows through it
                        int ok = Math.min(OK, out - o0);
                        long ws = wo + 16L * L * o0;
                        int r = r0;
                        for (; r + 6 <= r1; r += 6) dxTile6(dy, r * out + o0, out, ok, wp, ws, dx, r * in + i0, in);
                        for (; r < r1; r++) dxTile1(dy, r * out + o0, ok, wp, ws, dx, r * in + i0);
                    }
                } else {
                    for (int r = r0; r < r1; r++) dxTail(dy, r * out, out, wp, wo, tw, dx, r * in + i0);
                }
            }
        });
    }

    /** The packing buffer of the calling thread, at least {@code bytes} long. */
    private static MemorySegment packed(long bytes) {
        MemorySegment[] ws = ALIGNED.get();
        if (ws[0] == null || ws[0].byteSize() < bytes) ws[0] = Arena.ofAuto().allocate(Math.max(bytes, ws[0] == null ? 0 : 2 * ws[0].byteSize()), 64);
        return ws[0];
    }

    /**
     * dx[x0 .. x0+4L) of 6 rows (stride in) += Σ_{o<ok} dy[row, d0+o] · panel[o, 0..4L): 24 accumulators in registers over the
     * slice, the panel read sequentially (4 vectors per o), one broadcast per row.
     */
    private static void dxTile6(float[] dy, int d0, int out, int ok, MemorySegment w, long wo, float[] dx, int x0, int in) {
        final ByteOrder bo = ByteOrder.LITTLE_ENDIAN;
        int d1 = d0 + out, d2 = d1 + out, d3 = d2 + out, d4 = d3 + out, d5 = d4 + out;
        FloatVector a00 = FloatVector.zero(F), a01 = FloatVector.zero(F), a02 = FloatVector.zero(F), a03 = FloatVector.zero(F);
        FloatVector a10 = FloatVector.zero(F), a11 = FloatVector.zero(F), a12 = FloatVector.zero(F), a13 = FloatVector.zero(F);
        FloatVector a20 = FloatVector.zero(F), a21 = FloatVector.zero(F), a22 = FloatVector.zero(F), a23 = FloatVector.zero(F);
        FloatVector a30 = FloatVector.zero(F), a31 = FloatVector.zero(F), a32 = FloatVector.zero(F), a33 = FloatVector.zero(F);
        FloatVector a40 = FloatVector.zero(F), a41 = FloatVector.zero(F), a42 = FloatVector.zero(F), a43 = FloatVector.zero(F);
        FloatVector a50 = FloatVector.zero(F), a51 = FloatVector.zero(F), a52 = FloatVector.zero(F), a53 = FloatVector.zero(F);
        for (int o = 0; o < ok; o++) {
            long p = wo + 16L * L * o;
            FloatVector w0 = FloatVector.fromMemorySegment(F, w, p, bo), w1 = FloatVector.fromMemorySegment(F, w, p + 4L * L, bo);
            FloatVector w2 = FloatVector.fromMemorySegment(F, w, p + 8L * L, bo), w3 = FloatVector.fromMemorySegment(F, w, p + 12L * L, bo);
            FloatVector b = FloatVector.broadcast(F, dy[d0 + o]);
            a00 = b.fma(w0, a00); a01 = b.fma(w1, a01); a02 = b.fma(w2, a02); a03 = b.fma(w3, a03);
            b = FloatVector.broadcast(F, dy[d1 + o]);
            a10 = b.fma(w0, a10); a11 = b.fma(w1, a11); a12 = b.fma(w2, a12); a13 = b.fma(w3, a13);
            b = FloatVector.broadcast(F, dy[d2 + o]);
            a20 = b.fma(w0, a20); a21 = b.fma(w1, a21); a22 = b.fma(w2, a22); a23 = b.fma(w3, a23);
            b = FloatVector.broadcast(F, dy[d3 + o]);
            a30 = b.fma(w0, a30); a31 = b.fma(w1, a31); a32 = b.fma(w2, a32); a33 = b.fma(w3, a33);
            b = FloatVector.broadcast(F, dy[d4 + o]);
            a40 = b.fma(w0, a40); a41 = b.fma(w1, a41); a42 = b.fma(w2, a42); a43 = b.fma(w3, a43);
            b = FloatVector.broadcast(F, dy[d5 + o]);
            a50 = b.fma(w0, a50); a51 = b.fma(w1, a51); a52 = b.fma(w2, a52); a53 = b.fma(w3, a53);
        }
        int x1 = x0 + in, x2 = x1 + in, x3 = x2 + in, x4 = x3 + in, x5 = x4 + in;
        a00.add(FloatVector.fromArray(F, dx, x0)).intoArray(dx, x0); a01.add(FloatVector.fromArray(F, dx, x0 + L)).intoArray(dx, x0 + L);
        a02.add(FloatVector.fromArray(F, dx, x0 + 2 * L)).intoArray(dx, x0 + 2 * L); a03.add(FloatVector.fromArray(F, dx, x0 + 3 * L)).intoArray(dx, x0 + 3 * L);
        a10.add(FloatVector.fromArray(F, dx, x1)).intoArray(dx, x1); a11.add(FloatVector.fromArray(F, dx, x1 + L)).intoArray(dx, x1 + L);
        a12.add(FloatVector.fromArray(F, dx, x1 + 2 * L)).intoArray(dx, x1 + 2 * L); a13.add(FloatVector.fromArray(F, dx, x1 + 3 * L)).intoArray(dx, x1 + 3 * L);
        a20.add(FloatVector.fromArray(F, dx, x2)).intoArray(dx, x2); a21.add(FloatVector.fromArray(F, dx, x2 + L)).intoArray(dx, x2 + L);
        a22.add(FloatVector.fromArray(F, dx, x2 + 2 * L)).intoArray(dx, x2 + 2 * L); a23.add(FloatVector.fromArray(F, dx, x2 + 3 * L)).intoArray(dx, x2 + 3 * L);
        a30.add(FloatVector.fromArray(F, dx, x3)).intoArray(dx, x3); a31.add(FloatVector.fromArray(F, dx, x3 + L)).intoArray(dx, x3 + L);
        a32.add(FloatVector.fromArray(F, dx, x3 + 2 * L)).intoArray(dx, x3 + 2 * L); a33.add(FloatVector.fromArray(F, dx, x3 + 3 * L)).intoArray(dx, x3 + 3 * L);
        a40.add(FloatVector.fromArray(F, dx, x4)).intoArray(dx, x4); a41.add(FloatVector.fromArray(F, dx, x4 + L)).intoArray(dx, x4 + L);
        a42.add(FloatVector.fromArray(F, dx, x4 + 2 * L)).intoArray(dx, x4 + 2 * L); a43.add(FloatVector.fromArray(F, dx, x4 + 3 * L)).intoArray(dx, x4 + 3 * L);
        a50.add(FloatVector.fromArray(F, dx, x5)).intoArray(dx, x5); a51.add(FloatVector.fromArray(F, dx, x5 + L)).intoArray(dx, x5 + L);
        a52.add(FloatVector.fromArray(F, dx, x5 + 2 * L)).intoArray(dx, x5 + 2 * L); a53.add(FloatVector.fromArray(F, dx, x5 + 3 * L)).intoArray(dx, x5 + 3 * L);
    }

    /** One row of {@link #dxTile6} (the rows left over by the 6-row tiles). */
    private static void dxTile1(float[] dy, int d0, int ok, MemorySegment w, long wo, float[] dx, int x0) {
        final ByteOrder bo = ByteOrder.LITTLE_ENDIAN;
        FloatVector a0 = FloatVector.zero(F), a1 = FloatVector.zero(F), a2 = FloatVector.zero(F), a3 = FloatVector.zero(F);
        for (int o = 0; o < ok; o++) {
            long p = wo + 16L * L * o;
            FloatVector b = FloatVector.broadcast(F, dy[d0 + o]);
            a0 = b.fma(FloatVector.fromMemorySegment(F, w, p, bo), a0);
            a1 = b.fma(FloatVector.fromMemorySegment(F, w, p + 4L * L, bo), a1);
            a2 = b.fma(FloatVector.fromMemorySegment(F, w, p + 8L * L, bo), a2);
            a3 = b.fma(FloatVector.fromMemorySegment(F, w, p + 12L * L, bo), a3);
        }
        a0.add(FloatVector.fromArray(F, dx, x0)).intoArray(dx, x0); a1.add(FloatVector.fromArray(F, dx, x0 + L)).intoArray(dx, x0 + L);
        a2.add(FloatVector.fromArray(F, dx, x0 + 2 * L)).intoArray(dx, x0 + 2 * L); a3.add(FloatVector.fromArray(F, dx, x0 + 3 * L)).intoArray(dx, x0 + 3 * L);
    }

    /** One row against the last, narrower panel ({@code tw} < 4L columns, row stride tw). */
    private static void dxTail(float[] dy, int d0, int out, MemorySegment w, long wo, int tw, float[] dx, int x0) {
        float[] acc = new float[tw];
        for (int o = 0; o < out; o++) {
            float c = dy[d0 + o];
            long p = wo + 4L * tw * o;
            for (int j = 0; j < tw; j++) acc[j] += c * w.get(LE_FLOAT, p + 4L * j);
        }
        for (int j = 0; j < tw; j++) dx[x0 + j] += acc[j];
    }

    /**
     * dW[out, in] += dyᵀ · x (dy [n, out], x [n, in]). x is first packed into panels of 4 vectors of columns ([n, 4L] each,
     * contiguous, 64-byte aligned); then the product runs in parallel over (panel, chunk of output rows) items: for each
     * slice of 256 rows of the panel, the chunk's output rows go through it in 6-row x 4-vector register tiles
     * (the transposed dy read by broadcasts).
     */
    public static void dW(float[] dy, float[] x, int n, int out, int in, float[] dW) {
        long t0 = System.nanoTime();
        dW0(dy, x, n, out, in, dW);
        if (!Parallel.inKernelThread()) dev.peft4j.tensor.ProductStats.BACKWARD.add(System.nanoTime() - t0, 2L * n * out * in);
    }

    private static void dW0(float[] dy, float[] x, int n, int out, int in, float[] dW) {
        if (n == 0 || in == 0 || out == 0) return;
        final int full = in / PW, tw = in - full * PW;
        final long panelBytes = 4L * n * PW;
        final MemorySegment xp = packed(4L * n * in);
        Parallel.forRange((n + OBLOCK - 1) / OBLOCK, 1, (b0, b1) -> {
            for (int r = b0 * OBLOCK; r < Math.min(n, b1 * OBLOCK); r++) {
                for (int p = 0; p < full; p++) MemorySegment.copy(x, r * in + p * PW, xp, LE_FLOAT, p * panelBytes + 4L * r * PW, PW);
                if (tw > 0) MemorySegment.copy(x, r * in + full * PW, xp, LE_FLOAT, full * panelBytes + 4L * r * tw, tw);
            }
        });
        final int chunks = (out + RCH - 1) / RCH, panels = full + (tw > 0 ? 1 : 0);
        Parallel.forChunks(panels * chunks, 1, (a, b) -> {
            for (int item = a; item < b; item++) {
                int p = item / chunks, ch = item % chunks;   // panel-major: consecutive items reuse the panel from cache
                int o0 = ch * RCH, o1 = Math.min(out, o0 + RCH), i0 = p * PW;
                long xo = p * panelBytes;
                if (p < full) {
                    for (int r0 = 0; r0 < n; r0 += OK) {
                        int rk = Math.min(OK, n - r0);
                        long xs = xo + 16L * L * r0;
                        int o = o0;
                        for (; o + 6 <= o1; o += 6) dwTile6(dy, r0 * out + o, out, rk, xp, xs, dW, o * in + i0, in);
                        for (; o < o1; o++) dwTile1(dy, r0 * out + o, out, rk, xp, xs, dW, o * in + i0);
                    }
                } else {
                    for (int o = o0; o < o1; o++) {
                        for (int j = 0; j < tw; j++) {
                            float acc = 0;
                            for (int r = 0; r < n; r++) acc += dy[r * out + o] * xp.get(LE_FLOAT, xo + 4L * (r * tw + j));
                            dW[o * in + i0 + j] += acc;
                        }
                    }
                }
            }
        });
    }

    /**
     * dW[w0 .. w0+4L) of 6 output rows (stride in) += Σ_{r<rk} dy[r, o..o+6) · panel[r, 0..4L) (dy from index d0 = r0·out + o,
     * row stride out): 24 accumulators over the slice.
     */
    private static void dwTile6(float[] dy, int d0, int out, int rk, MemorySegment x, long xo, float[] dW, int w0, int in) {
        final ByteOrder bo = ByteOrder.LITTLE_ENDIAN;
        FloatVector a00 = FloatVector.zero(F), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
        FloatVector a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
        FloatVector a40 = a00, a41 = a00, a42 = a00, a43 = a00, a50 = a00, a51 = a00, a52 = a00, a53 = a00;
        for (int r = 0; r < rk; r++) {
            long p = xo + 16L * L * r;
            int d = d0 + r * out;
            FloatVector x0 = FloatVector.fromMemorySegment(F, x, p, bo), x1 = FloatVector.fromMemorySegment(F, x, p + 4L * L, bo);
            FloatVector x2 = FloatVector.fromMemorySegment(F, x, p + 8L * L, bo), x3 = FloatVector.fromMemorySegment(F, x, p + 12L * L, bo);
            FloatVector b = FloatVector.broadcast(F, dy[d]);
            a00 = b.fma(x0, a00); a01 = b.fma(x1, a01); a02 = b.fma(x2, a02); a03 = b.fma(x3, a03);
            b = FloatVector.broadcast(F, dy[d + 1]);
            a10 = b.fma(x0, a10); a11 = b.fma(x1, a11); a12 = b.fma(x2, a12); a13 = b.fma(x3, a13);
            b = FloatVector.broadcast(F, dy[d + 2]);
            a20 = b.fma(x0, a20); a21 = b.fma(x1, a21); a22 = b.fma(x2, a22); a23 = b.fma(x3, a23);
            b = FloatVector.broadcast(F, dy[d + 3]);
            a30 = b.fma(x0, a30); a31 = b.fma(x1, a31); a32 = b.fma(x2, a32); a33 = b.fma(x3, a33);
            b = FloatVector.broadcast(F, dy[d + 4]);
            a40 = b.fma(x0, a40); a41 = b.fma(x1, a41); a42 = b.fma(x2, a42); a43 = b.fma(x3, a43);
            b = FloatVector.broadcast(F, dy[d + 5]);
            a50 = b.fma(x0, a50); a51 = b.fma(x1, a51); a52 = b.fma(x2, a52); a53 = b.fma(x3, a53);
        }
        int w1 = w0 + in, w2 = w1 + in, w3 = w2 + in, w4 = w3 + in, w5 = w4 + in;
        a00.add(FloatVector.fromArray(F, dW, w0)).intoArray(dW, w0); a01.add(FloatVector.fromArray(F, dW, w0 + L)).intoArray(dW, w0 + L);
        a02.add(FloatVector.fromArray(F, dW, w0 + 2 * L)).intoArray(dW, w0 + 2 * L); a03.add(FloatVector.fromArray(F, dW, w0 + 3 * L)).intoArray(dW, w0 + 3 * L);
        a10.add(FloatVector.fromArray(F, dW, w1)).intoArray(dW, w1); a11.add(FloatVector.fromArray(F, dW, w1 + L)).intoArray(dW, w1 + L);
        a12.add(FloatVector.fromArray(F, dW, w1 + 2 * L)).intoArray(dW, w1 + 2 * L); a13.add(FloatVector.fromArray(F, dW, w1 + 3 * L)).intoArray(dW, w1 + 3 * L);
        a20.add(FloatVector.fromArray(F, dW, w2)).intoArray(dW, w2); a21.add(FloatVector.fromArray(F, dW, w2 + L)).intoArray(dW, w2 + L);
        a22.add(FloatVector.fromArray(F, dW, w2 + 2 * L)).intoArray(dW, w2 + 2 * L); a23.add(FloatVector.fromArray(F, dW, w2 + 3 * L)).intoArray(dW, w2 + 3 * L);
        a30.add(FloatVector.fromArray(F, dW, w3)).intoArray(dW, w3); a31.add(FloatVector.fromArray(F, dW, w3 + L)).intoArray(dW, w3 + L);
        a32.add(FloatVector.fromArray(F, dW, w3 + 2 * L)).intoArray(dW, w3 + 2 * L); a33.add(FloatVector.fromArray(F, dW, w3 + 3 * L)).intoArray(dW, w3 + 3 * L);
        a40.add(FloatVector.fromArray(F, dW, w4)).intoArray(dW, w4); a41.add(FloatVector.fromArray(F, dW, w4 + L)).intoArray(dW, w4 + L);
        a42.add(FloatVector.fromArray(F, dW, w4 + 2 * L)).intoArray(dW, w4 + 2 * L); a43.add(FloatVector.fromArray(F, dW, w4 + 3 * L)).intoArray(dW, w4 + 3 * L);
        a50.add(FloatVector.fromArray(F, dW, w5)).intoArray(dW, w5); a51.add(FloatVector.fromArray(F, dW, w5 + L)).intoArray(dW, w5 + L);
        a52.add(FloatVector.fromArray(F, dW, w5 + 2 * L)).intoArray(dW, w5 + 2 * L); a53.add(FloatVector.fromArray(F, dW, w5 + 3 * L)).intoArray(dW, w5 + 3 * L);
    }

    /** One output row of {@link #dwTile6}. */
    private static void dwTile1(float[] dy, int d0, int out, int rk, MemorySegment x, long xo, float[] dW, int w0) {
        final ByteOrder bo = ByteOrder.LITTLE_ENDIAN;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int r = 0; r < rk; r++) {
            long p = xo + 16L * L * r;
            FloatVector b = FloatVector.broadcast(F, dy[d0 + r * out]);
            a0 = b.fma(FloatVector.fromMemorySegment(F, x, p, bo), a0);
            a1 = b.fma(FloatVector.fromMemorySegment(F, x, p + 4L * L, bo), a1);
            a2 = b.fma(FloatVector.fromMemorySegment(F, x, p + 8L * L, bo), a2);
            a3 = b.fma(FloatVector.fromMemorySegment(F, x, p + 12L * L, bo), a3);
        }
        a0.add(FloatVector.fromArray(F, dW, w0)).intoArray(dW, w0); a1.add(FloatVector.fromArray(F, dW, w0 + L)).intoArray(dW, w0 + L);
        a2.add(FloatVector.fromArray(F, dW, w0 + 2 * L)).intoArray(dW, w0 + 2 * L); a3.add(FloatVector.fromArray(F, dW, w0 + 3 * L)).intoArray(dW, w0 + 3 * L);
    }
}
