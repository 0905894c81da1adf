package dev.peft4j.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import static dev.peft4j.tensor.Packed.P;

/**
 * Forward matrix products y = x·Wᵀ against a {@link Matrix} W [out, in] (nn.Linear layout), float32 compute, all cores, Vector
 * API (the backward products are in {@code dev.peft4j.train.BackMatMul}).
 *
 * <p><b>One order.</b> Every output is one sequential chain of fused multiply-adds over the input, in order:
 * {@code s = 0; for k in 0..in-1: s = fma(x[k], w[o][k], s)} (then stored, or added to y when accumulating), with the weight
 * converted to float32 exactly first (bf16 and f16 widen). Q8_0 weights (q int8, one scale d per block of 32 inputs) follow
 * llama.cpp's block dot product: per block, {@code t = 0; for k in block: t = fma(x[k], q[o][k], t)}, then
 * {@code s = fma(t, d[o][block], s)} (the scale multiplies a block's sum, not each weight). That is the whole definition: every path
 * (one row, eight sequences, a prefill, any thread count, any dtype's layout, the scalar fallback) computes exactly it, so a
 * row's result is bitwise the same whatever rows it is computed with: decoding one token, a batch of sequences and a prefill
 * of the same text agree exactly, which serving relies on.
 *
 * <p><b>How.</b> The weights are read as {@link Packed} panels of 32 output rows stored input-major (built once, off-heap, for
 * mapped weights; per call for heap weights), so one vector of 16 lanes holds 16 outputs' weights at one k and each lane's
 * chain is an ordinary vector FMA with the broadcast input value: an outer-product register tile of up to 8 rows x 32 outputs
 * (16 accumulators), no horizontal sums. The input rows are packed once per call, groups of 8 rows input-major. Work is split
 * over chunks of panels that the threads claim, so every panel is streamed once per call, whatever the number of rows.
 */
public final class MatMul {
    static final VectorSpecies<Float> F = Matrix.F;
    static final int L = F.length();
    private static final VectorSpecies<Byte> BQ = Matrix.B_QUARTER;
    private static final VectorSpecies<Integer> I = Matrix.I;
    private static final VectorSpecies<Short> S = ShortVector.SPECIES_256;
    /**
     * Widening fp16 scales h exactly, with no subnormal float ever an operand (this CPU takes a microcode assist on one: a
     * q8 tile ran at half speed over blocks with subnormal scales when they were widened by multiplying by 2¹¹²): with e =
     * h's exponent and mantissa bits shifted left by 13, the float with bits e + {@code F16_NORMAL} is |h| when h is normal;
     * when it is subnormal or zero, the float with bits e + {@code F16_SUBNORMAL} is 2⁻¹⁴ + |h|, and subtracting 2⁻¹⁴ leaves
     * |h| exactly. The sign bit is put back last.
     */
    private static final int F16_NORMAL = 112 << 23, F16_SUBNORMAL = 113 << 23;
    /** Rows per register tile. */
    static final int R = 8;
    private static final boolean VEC = L == 16;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** Per-thread buffers: the packed input (owned by the calling thread), a heap weight panel, accumulators. */
    static final class Scratch {
        final float[] acc = new float[Math.max(R * P, 2 * P)];
        float[] xp = new float[0], tmp = new float[0];
        MemorySegment panel = MemorySegment.NULL;

        float[] xp(int n) {
            if (xp.length < n) xp = new float[Math.max(n, 2 * xp.length)];
            return xp;
        }

        float[] tmp(int n) {
            if (tmp.length < n) tmp = new float[n];
            return tmp;
        }

        MemorySegment panel(long bytes) {
            if (panel.byteSize() < bytes) panel = Arena.ofAuto().allocate(Math.max(bytes, 2 * panel.byteSize()), 64);
            return panel;
        }
    }

    private MatMul() {}

    /** y[n, out] = x[n, in] · Wᵀ (overwrites y). */
    public static void xWt(float[] x, int n, Matrix w, float[] y) {
        xWt(x, 0, n, w, y, 0, false);
    }

    /** y[yOff + r*out + o] (=|+=) Σ_i x[xOff + r*in + i] · W[o, i], for r in [0,n). Parallel over output panels. */
    public static void xWt(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean accumulate) {
        run(x, xOff, n, w, y, yOff, accumulate, true);
    }

    /** y = x·Wᵀ (or +=) on the calling thread only: for use inside an already parallel loop. Same results as {@link #xWt}. */
    public static void xWtSerial(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean accumulate) {
        run(x, xOff, n, w, y, yOff, accumulate, false);
    }

    /**
     * Several products of the same input in one parallel pass (a layer's q/k/v or gate/up projections): ys[i][n, out_i] =
     * x[n, in] · ws[i]ᵀ, each bitwise equal to its own {@link #xWt}. One dispatch instead of one per matrix.
     */
    public static void xWtMany(float[] x, int n, Matrix[] ws, float[][] ys) {
        int in = ws[0].cols;
        for (Matrix w : ws) if (w.cols != in) throw new IllegalArgumentException("xWtMany: matrices of different input sizes");
        if (n <= 0) return;
        if (!VEC || in == 0) {
            for (int i = 0; i < ws.length; i++) run(x, 0, n, ws[i], ys[i], 0, false, true);
            return;
        }
        if (Parallel.inKernelThread()) {
            many(x, n, ws, ys, in);
            return;
        }
        long t0 = System.nanoTime();
        try {
            many(x, n, ws, ys, in);
        } finally {
            long outs = 0;
            for (Matrix w : ws) outs += w.rows;
            ProductStats.FORWARD.add(System.nanoTime() - t0, 2L * n * in * outs);
        }
    }

    private static void many(float[] x, int n, Matrix[] ws, float[][] ys, int in) {
        int m = ws.length;
        Packed[] pk = new Packed[m];
        int[] start = new int[m + 1];
        for (int i = 0; i < m; i++) {
            if (x.length < (long) n * in || ys[i].length < (long) n * ws[i].rows) throw new IllegalArgumentException("x or y too short for " + n + " rows of " + ws[i].rows + "x" + in);
            pk[i] = ws[i].onHeap() ? null : ws[i].packed();
            start[i + 1] = start[i] + (ws[i].rows + P - 1) / P;
        }
        float[] xp = SCRATCH.get().xp(n * in);
        packAll(x, 0, n, in, xp);
        int panels = start[m];
        Parallel.forChunks(panels, chunk(panels, pk[0] != null ? pk[0].panelBytes : 4L * P * in, n), (g0, g1) -> {
            for (int i = 0; i < m; i++) {
                int a = Math.max(g0, start[i]), b = Math.min(g1, start[i + 1]);
                if (a < b) panelRange(xp, n, ws[i], pk[i], ys[i], 0, false, a - start[i], b - start[i], ws[i].rows, 0, ws[i].rows);
            }
        });
    }

    /**
     * y[n, out] = x[n, in]·Wᵀ on the calling thread, for a float32 W given directly as its panels in native memory: panel p
     * (outputs 32p..32p+31) at byte {@code offset + p·stride} holds, for every input k in order, the 32 outputs' weights
     * (float32, little-endian: W[32p + j, k] at {@code (k·32 + j)·4}; zeros past the last output). For operands a kernel lays
     * out once and reads many times (attention's keys, and its values, per query block): bitwise {@link #xWtSerial} of the
     * same matrix, without packing it per call. {@code stride} lets a product use a window of longer panels (the same
     * inputs of each). Rows of x and of y may be spaced: row r is x[xOff + r·xs ..] and y[yOff + r·ys ..] (xs ≥ in, ys ≥
     * out), so a product can read and write one head's rows of a wider matrix in place.
     */
    public static void xWtPanelsSerial(float[] x, int xOff, int xs, int n, int in, MemorySegment panels, long offset, long stride, int out, float[] y, int yOff, int ys) {
        int nPanels = (out + P - 1) / P;
        if (n > 0 && (xs < in || ys < out || xOff < 0 || yOff < 0 || x.length < xOff + (long) (n - 1) * xs + in || y.length < yOff + (long) (n - 1) * ys + out)) {
            throw new IllegalArgumentException("xWtPanelsSerial: arrays too short for " + n + " rows of " + in + " -> " + out);
        }
        if (nPanels > 0 && (offset < 0 || stride < 4L * P * in || offset + (nPanels - 1) * stride + 4L * P * in > panels.byteSize())) {
            throw new IllegalArgumentException("xWtPanelsSerial: " + nPanels + " panels of " + in + " inputs at " + offset + " (stride " + stride + ") outside " + panels.byteSize() + " bytes");
        }
        if (n <= 0 || out == 0) return;
        if (!VEC || in == 0) {
            float[] w = new float[out * in], xr = new float[n * in], yr = new float[n * out];
            for (int o = 0; o < out; o++) for (int k = 0; k < in; k++) w[o * in + k] = panels.get(Matrix.LE_FLOAT, offset + (o / P) * stride + 4L * (k * P + o % P));
            for (int r = 0; r < n; r++) System.arraycopy(x, xOff + r * xs, xr, r * in, in);
            scalar(xr, 0, n, Matrix.heap(out, in, w), yr, 0, false, 0, out);
            for (int r = 0; r < n; r++) System.arraycopy(yr, r * out, y, yOff + r * ys, out);
            return;
        }
        Scratch s = SCRATCH.get();
        float[] xp = s.xp(n * in);
        pack(x, xOff, xs, n, in, xp, 0);
        for (int p = 0; p < nPanels; p++) rows(xp, 0, n, Packed.Kind.F32, panels, offset + p * stride, in, y, yOff, false, p * P, s.acc, ys, 0, out);
    }

    /**
     * Outputs [o0, o1) only: y[yOff + r·(o1 − o0) + (o − o0)] = Σ_i x[xOff + r·in + i] · W[o, i] (a block of the output head,
     * without copying its rows); o0 must be a multiple of 32. Each value is bitwise the one {@link #xWt} computes.
     */
    public static void xWtRange(float[] x, int xOff, int n, Matrix w, int o0, int o1, float[] y, int yOff) {
        if (o0 % P != 0 || o0 < 0 || o1 > w.rows || o1 < o0) throw new IllegalArgumentException("xWtRange: outputs [" + o0 + ", " + o1 + ") of " + w.rows + " (start a multiple of " + P + ")");
        run(x, xOff, n, w, y, yOff, false, true, o0, o1);
    }

    private static void run(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean acc, boolean parallel) {
        run(x, xOff, n, w, y, yOff, acc, parallel, 0, w.rows);
    }

    private static void run(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean acc, boolean parallel, int oLo, int oHi) {
        final int in = w.cols, out = oHi - oLo, ys = out;
        if (n <= 0 || out == 0) return;
        if (x.length < xOff + (long) n * in || y.length < yOff + (long) n * out) throw new IllegalArgumentException("x or y too short for " + n + " rows of " + w.rows + "x" + w.cols);
        if (in == 0) {
            if (!acc) java.util.Arrays.fill(y, yOff, yOff + n * out, 0f);
            return;
        }
        if (!VEC) {
            scalar(x, xOff, n, w, y, yOff, acc, oLo, oHi);
            return;
        }
        if (!parallel || Parallel.inKernelThread()) {
            run0(x, xOff, n, w, y, yOff, acc, parallel, oLo, oHi);
            return;
        }
        long t0 = System.nanoTime();
        try {
            run0(x, xOff, n, w, y, yOff, acc, true, oLo, oHi);
        } finally {
            ProductStats.FORWARD.add(System.nanoTime() - t0, 2L * n * in * (oHi - oLo));
        }
    }

    private static void run0(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean acc, boolean parallel, int oLo, int oHi) {
        final int in = w.cols, out = oHi - oLo, ys = out;
        Packed pk = w.onHeap() ? null : w.packed();
        float[] xp = SCRATCH.get().xp(n * in);
        if (parallel) packAll(x, xOff, n, in, xp);
        else pack(x, xOff, n, in, xp);
        int pFirst = oLo / P, panels = (oHi + P - 1) / P - pFirst;
        Parallel.RangeBody body = (p0, p1) -> panelRange(xp, n, w, pk, y, yOff, acc, p0 + pFirst, p1 + pFirst, ys, oLo, oHi);
        if (parallel) Parallel.forChunks(panels, chunk(panels, pk != null ? pk.panelBytes : 4L * P * in, n), body);
        else body.run(0, panels);
    }

    /**
     * Panels per claimed chunk: about {@value #CHUNK_BYTES} bytes of weights (counting up to 8 rows of input), and at least
     * four chunks per thread. Each thread claims the chunks of its own contiguous region first (one sequential stream, as
     * a static split reads; measured 7% faster decoding than threads taking turns), then what is left of the others': a
     * thread the system keeps off its core for a while then delays the call by one chunk, not by its share of the matrix.
     */
    static int chunk(int panels, long panelBytes, int rows) {
        long work = Math.max(1, panelBytes * Math.max(1, Math.min(rows, 8)));
        int bySize = (int) Math.max(1, CHUNK_BYTES / work);
        int byCount = Math.max(1, panels / (4 * Parallel.threads()));
        return Math.min(bySize, byCount);
    }

    static final long CHUNK_BYTES = 4L << 20;

    /**
     * Packs the input rows: each whole group of {@value #R} rows input-major (row i of the group, input k at
     * {@code g·R·in + k·R + i}), the remaining rows as they are (row r at {@code r·in}).
     */
    static void pack(float[] x, int xOff, int n, int in, float[] xp) {
        pack(x, xOff, n, in, xp, 0);
    }

    /** {@link #pack} into xp from {@code xpOff} on (rows [0, n) of x from xOff; a whole number of groups before them). */
    static void pack(float[] x, int xOff, int n, int in, float[] xp, int xpOff) {
        pack(x, xOff, in, n, in, xp, xpOff);
    }

    /** {@link #pack} of rows that are {@code xs} values apart in x (row r at {@code xOff + r·xs}; xs ≥ in). */
    static void pack(float[] x, int xOff, int xs, int n, int in, float[] xp, int xpOff) {
        int full = n / R * R;
        for (int g = 0; g < full; g += R) {
            int d = xpOff + g * in, k0 = 0;
            if (VEC) k0 = transpose8(x, xOff + g * xs, xs, in, xp, d);
            for (int i = 0; i < R; i++) {
                int s = xOff + (g + i) * xs;
                for (int k = k0; k < in; k++) xp[d + k * R + i] = x[s + k];
            }
        }
        if (xs == in) {
            if (full < n) System.arraycopy(x, xOff + full * in, xp, xpOff + full * in, (n - full) * in);
        } else {
            for (int r = full; r < n; r++) System.arraycopy(x, xOff + r * xs, xp, xpOff + r * in, in);
        }
    }

    /**
     * The vector part of {@link #pack} for one group of 8 rows (row i at {@code s + i·xs}): per 16 inputs, the 8 rows' 16
     * values are transposed in three rounds of two-vector permutes (pairs of rows, then pairs of pairs, then halves), giving
     * the 8 vectors of the packed layout (inputs k, k+1 of rows 0..7 each). Returns the first input left to the scalar loop.
     * Plain copies: the same packed values, 2-3x faster than element by element (a prefill packed ~40 M values).
     */
    private static int transpose8(float[] x, int s, int xs, int in, float[] xp, int d) {
        int k = 0;
        for (; k + L <= in; k += L) {
            FloatVector r0 = FloatVector.fromArray(F, x, s + k), r1 = FloatVector.fromArray(F, x, s + xs + k);
            FloatVector r2 = FloatVector.fromArray(F, x, s + 2 * xs + k), r3 = FloatVector.fromArray(F, x, s + 3 * xs + k);
            FloatVector r4 = FloatVector.fromArray(F, x, s + 4 * xs + k), r5 = FloatVector.fromArray(F, x, s + 5 * xs + k);
            FloatVector r6 = FloatVector.fromArray(F, x, s + 6 * xs + k), r7 = FloatVector.fromArray(F, x, s + 7 * xs + k);
            // rows (0,1), (2,3), (4,5), (6,7) interleaved: inputs 0..7 (lo) and 8..15 (hi), two rows per input
            FloatVector a0 = T1_LO.selectFrom(r0, r1), a1 = T1_HI.selectFrom(r0, r1), a2 = T1_LO.selectFrom(r2, r3), a3 = T1_HI.selectFrom(r2, r3);
            FloatVector a4 = T1_LO.selectFrom(r4, r5), a5 = T1_HI.selectFrom(r4, r5), a6 = T1_LO.selectFrom(r6, r7), a7 = T1_HI.selectFrom(r6, r7);
            // rows 0..3 and 4..7 per input: inputs 0..3, 4..7, 8..11, 12..15
            FloatVector b0 = T2_LO.selectFrom(a0, a2), b1 = T2_HI.selectFrom(a0, a2), b2 = T2_LO.selectFrom(a1, a3), b3 = T2_HI.selectFrom(a1, a3);
            FloatVector b4 = T2_LO.selectFrom(a4, a6), b5 = T2_HI.selectFrom(a4, a6), b6 = T2_LO.selectFrom(a5, a7), b7 = T2_HI.selectFrom(a5, a7);
            // rows 0..7 per input, two inputs per vector
            int o = d + k * R;
            T3_LO.selectFrom(b0, b4).intoArray(xp, o);
            T3_HI.selectFrom(b0, b4).intoArray(xp, o + L);
            T3_LO.selectFrom(b1, b5).intoArray(xp, o + 2 * L);
            T3_HI.selectFrom(b1, b5).intoArray(xp, o + 3 * L);
            T3_LO.selectFrom(b2, b6).intoArray(xp, o + 4 * L);
            T3_HI.selectFrom(b2, b6).intoArray(xp, o + 5 * L);
            T3_LO.selectFrom(b3, b7).intoArray(xp, o + 6 * L);
            T3_HI.selectFrom(b3, b7).intoArray(xp, o + 7 * L);
        }
        return k;
    }

    /**
     * The permutes of {@link #transpose8} (lane j takes lane idx[j] of the concatenation of two vectors: 0..15 the first,
     * 16..31 the second): round r interleaves units of 2^(r-1) values of the two, from their low (LO) or high (HI) halves.
     */
    private static final FloatVector T1_LO = interleave(1, 0), T1_HI = interleave(1, 8), T2_LO = interleave(2, 0), T2_HI = interleave(2, 8),
            T3_LO = interleave(4, 0), T3_HI = interleave(4, 8);

    private static FloatVector interleave(int unit, int from) {
        float[] idx = new float[L];
        for (int j = 0; j < L; j++) {
            int u = j / unit;
            idx[j] = (u % 2 == 0 ? 0 : L) + from + unit * (u / 2) + j % unit;
        }
        return FloatVector.fromArray(F, idx, 0);
    }

    /**
     * {@link #pack} over the threads when the rows are many (a prefill's: the other threads would otherwise wait while the
     * caller alone transposes a few megabytes), on the calling thread otherwise. The same packed rows either way.
     */
    static void packAll(float[] x, int xOff, int n, int in, float[] xp) {
        int groups = n / R;
        if ((long) groups * R * in < PACK_PARALLEL || Parallel.inKernelThread()) {
            pack(x, xOff, n, in, xp);
            return;
        }
        Parallel.forRange(groups + 1, 1, (g0, g1) -> {
            int r0 = g0 * R, r1 = Math.min(n, g1 * R);
            if (r0 < r1) pack(x, xOff + r0 * in, r1 - r0, in, xp, r0 * in);
        });
    }

    /** Values packed per call from which {@link #packAll} splits the work (about 50 rows of 640): below it a dispatch costs more. */
    static final int PACK_PARALLEL = 1 << 15;

    /** Outputs [oLo, oHi) of panels [p0, p1) go to y[yOff + r·ys + o − oLo]. */
    private static void panelRange(float[] xp, int n, Matrix w, Packed pk, float[] y, int yOff, boolean acc, int p0, int p1, int ys, int oLo, int oHi) {
        Scratch s = SCRATCH.get();
        final int in = w.cols;
        if (pk == null) {   // heap weights: each panel packed once, all rows through it
            long pb = Packed.panelBytes(Packed.Kind.F32, in);
            MemorySegment ws = s.panel(pb);
            for (int p = p0; p < p1; p++) {
                int o0 = p * P;
                Packed.heapPanel(w, o0, Math.min(P, w.rows - o0), s.tmp(P * in), ws);
                rows(xp, 0, n, Packed.Kind.F32, ws, 0, in, y, yOff, acc, o0, s.acc, ys, oLo, oHi);
            }
            return;
        }
        // packed weights: a group of panels (read from memory once, then from the L2 cache) against blocks of rows (their
        // packed input read from the L2 cache too)
        int rb = Math.max(R, BLOCK_BYTES / (4 * in) / R * R);
        int pg = (int) Math.max(2, BLOCK_BYTES / pk.panelBytes / 2 * 2);
        for (int g0 = p0; g0 < p1; g0 += pg) {
            int g1 = Math.min(p1, g0 + pg);
            for (int r0 = 0; r0 < n; r0 += rb) {
                int r1 = Math.min(n, r0 + rb);
                for (int p = g0; p < g1; p++) {
                    rows(xp, r0, r1, pk.kind, pk.seg, p * pk.panelBytes, in, y, yOff, acc, p * P, s.acc, ys, oLo, oHi);
                }
            }
        }
    }

    /** Bytes of a block of packed input rows, and of a group of panels: together well inside the L2 cache. */
    static final int BLOCK_BYTES = 384 * 1024;

    /** Rows [r0, r1) (r0 a multiple of R) against the panel at wo. */
    private static void rows(float[] xp, int r0, int r1, Packed.Kind kind, MemorySegment ws, long wo, int in,
                             float[] y, int yOff, boolean acc, int o0, float[] a, int ys, int oLo, int oHi) {
        final int no = Math.min(P, oHi - o0), col = o0 - oLo;
        // a whole panel's results go straight to y (row i at yo + i·ys); a partial one, or one added to y, through a and store()
        final boolean direct = !acc && no == P;
        final float[] out = direct ? y : a;
        int r = r0;
        for (; r + R <= r1; r += R) {
            int yo = yOff + r * ys + col, oo = direct ? yo : 0, os = direct ? ys : P;
            switch (kind) {
                case BF16 -> Tiles.bf16x8(xp, r * in, ws, wo, in, out, oo, os);
                case F32 -> Tiles.f32x8(xp, r * in, ws, wo, in, out, oo, os);
                case Q8 -> Tiles.q8x8(xp, r * in, ws, wo, in, out, oo, os);
            }
            if (!direct) store(a, R, y, yo, ys, no, acc);
        }
        for (; r < r1; r++) {
            int yo = yOff + r * ys + col, oo = direct ? yo : 0;
            switch (kind) {
                case BF16 -> Tiles.bf16x1(xp, r * in, ws, wo, in, out, oo);
                case F32 -> Tiles.f32x1(xp, r * in, ws, wo, in, out, oo);
                case Q8 -> Tiles.q8x1(xp, r * in, ws, wo, in, out, oo);
            }
            if (!direct) store(a, 1, y, yo, ys, no, acc);
        }
    }

    private static void store(float[] a, int rows, float[] y, int yo, int out, int no, boolean acc) {
        for (int i = 0; i < rows; i++, yo += out) {
            if (acc) for (int j = 0; j < no; j++) y[yo + j] += a[i * P + j];
            else System.arraycopy(a, i * P, y, yo, no);
        }
    }

    /** The definition itself, one scalar fma at a time (used where vectors are not 16 lanes; the tests' reference). */
    static void scalar(float[] x, int xOff, int n, Matrix w, float[] y, int yOff, boolean acc, int oLo, int oHi) {
        int in = w.cols, out = oHi - oLo;
        float[] row = new float[in];
        boolean q8 = w.dtype == DType.Q8_0 && !w.onHeap();
        for (int o = oLo; o < oHi; o++) {
            w.rowsToFloat(o, 1, row, 0);
            for (int r = 0; r < n; r++) {
                float s = 0f;
                if (q8) {
                    for (int kb = 0; kb < in; kb += DType.Q8_BLOCK) {
                        float d = w.q8Scale(o, kb / DType.Q8_BLOCK), t = 0f;
                        for (int k = kb; k < kb + DType.Q8_BLOCK; k++) t = Math.fma(x[xOff + r * in + k], w.q8Value(o, k), t);
                        s = Math.fma(t, d, s);
                    }
                } else {
                    for (int k = 0; k < in; k++) s = Math.fma(x[xOff + r * in + k], row[k], s);
                }
                int yi = yOff + r * out + o - oLo;
                y[yi] = acc ? y[yi] + s : s;
            }
        }
    }

    /**
     * The register tiles: {@code x8} kernels take a packed group of 8 rows (input-major) and write out[oo + i·os + j] for
     * row i, output j of the panel; {@code x1} kernels take one row and write out[oo + j]. {@code out} is the product's own
     * output where the panel's 32 outputs are all wanted and nothing is added to them: the results go from the registers
     * straight there (storing them in a scratch row first and copying it cost 8-10% of a batched decode step). Vectors never
     * leave a kernel (C2 compiles each on its own), and the weight conversions are written out in each kernel rather than
     * called: a call C2 declines to inline in a large kernel ("callee uses too much stack") would box a vector per weight
     * load, 6x slower. Q8 kernels widen the block scales from fp16 in registers (see {@link #F16_NORMAL}).
     */
    static final class Tiles {
        private Tiles() {}

        /**
         * Unrolled by two inputs by hand (C2 does not unroll a body this large), with the addresses stepped rather than
         * recomputed: 29 instead of 35 instructions per 64-byte line of weights, so more lines fit in the core's window
         * while a batch of sequences streams the weights (5-8% faster in a 2-thread streaming microbenchmark). Each
         * accumulator still takes its inputs in order.
         */
        static void bf16x8(float[] x, int xo, MemorySegment w, long wo, int in, float[] out, int oo, int os) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            FloatVector a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
            int k = 0, xk = xo;
            long wp = wo;
            for (; k + 1 < in; k += 2, wp += 128, xk += 2 * R) {
                IntVector wv = IntVector.fromMemorySegment(I, w, wp, LE);   // lane i: outputs i (low half), 16 + i (high)
                FloatVector w0 = wv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), w1 = wv.and(0xFFFF0000).reinterpretAsFloats();
                FloatVector v = FloatVector.broadcast(F, x[xk]); a00 = v.fma(w0, a00); a01 = v.fma(w1, a01);
                v = FloatVector.broadcast(F, x[xk + 1]); a10 = v.fma(w0, a10); a11 = v.fma(w1, a11);
                v = FloatVector.broadcast(F, x[xk + 2]); a20 = v.fma(w0, a20); a21 = v.fma(w1, a21);
                v = FloatVector.broadcast(F, x[xk + 3]); a30 = v.fma(w0, a30); a31 = v.fma(w1, a31);
                v = FloatVector.broadcast(F, x[xk + 4]); a40 = v.fma(w0, a40); a41 = v.fma(w1, a41);
                v = FloatVector.broadcast(F, x[xk + 5]); a50 = v.fma(w0, a50); a51 = v.fma(w1, a51);
                v = FloatVector.broadcast(F, x[xk + 6]); a60 = v.fma(w0, a60); a61 = v.fma(w1, a61);
                v = FloatVector.broadcast(F, x[xk + 7]); a70 = v.fma(w0, a70); a71 = v.fma(w1, a71);
                wv = IntVector.fromMemorySegment(I, w, wp + 64, LE);
                w0 = wv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(); w1 = wv.and(0xFFFF0000).reinterpretAsFloats();
                v = FloatVector.broadcast(F, x[xk + 8]); a00 = v.fma(w0, a00); a01 = v.fma(w1, a01);
                v = FloatVector.broadcast(F, x[xk + 9]); a10 = v.fma(w0, a10); a11 = v.fma(w1, a11);
                v = FloatVector.broadcast(F, x[xk + 10]); a20 = v.fma(w0, a20); a21 = v.fma(w1, a21);
                v = FloatVector.broadcast(F, x[xk + 11]); a30 = v.fma(w0, a30); a31 = v.fma(w1, a31);
                v = FloatVector.broadcast(F, x[xk + 12]); a40 = v.fma(w0, a40); a41 = v.fma(w1, a41);
                v = FloatVector.broadcast(F, x[xk + 13]); a50 = v.fma(w0, a50); a51 = v.fma(w1, a51);
                v = FloatVector.broadcast(F, x[xk + 14]); a60 = v.fma(w0, a60); a61 = v.fma(w1, a61);
                v = FloatVector.broadcast(F, x[xk + 15]); a70 = v.fma(w0, a70); a71 = v.fma(w1, a71);
            }
            if (k < in) {   // an odd input count: the last input
                IntVector wv = IntVector.fromMemorySegment(I, w, wp, LE);
                FloatVector w0 = wv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), w1 = wv.and(0xFFFF0000).reinterpretAsFloats();
                FloatVector v = FloatVector.broadcast(F, x[xk]); a00 = v.fma(w0, a00); a01 = v.fma(w1, a01);
                v = FloatVector.broadcast(F, x[xk + 1]); a10 = v.fma(w0, a10); a11 = v.fma(w1, a11);
                v = FloatVector.broadcast(F, x[xk + 2]); a20 = v.fma(w0, a20); a21 = v.fma(w1, a21);
                v = FloatVector.broadcast(F, x[xk + 3]); a30 = v.fma(w0, a30); a31 = v.fma(w1, a31);
                v = FloatVector.broadcast(F, x[xk + 4]); a40 = v.fma(w0, a40); a41 = v.fma(w1, a41);
                v = FloatVector.broadcast(F, x[xk + 5]); a50 = v.fma(w0, a50); a51 = v.fma(w1, a51);
                v = FloatVector.broadcast(F, x[xk + 6]); a60 = v.fma(w0, a60); a61 = v.fma(w1, a61);
                v = FloatVector.broadcast(F, x[xk + 7]); a70 = v.fma(w0, a70); a71 = v.fma(w1, a71);
            }
            a00.intoArray(out, oo); a01.intoArray(out, oo + 16); oo += os; a10.intoArray(out, oo); a11.intoArray(out, oo + 16); oo += os;
            a20.intoArray(out, oo); a21.intoArray(out, oo + 16); oo += os; a30.intoArray(out, oo); a31.intoArray(out, oo + 16); oo += os;
            a40.intoArray(out, oo); a41.intoArray(out, oo + 16); oo += os; a50.intoArray(out, oo); a51.intoArray(out, oo + 16); oo += os;
            a60.intoArray(out, oo); a61.intoArray(out, oo + 16); oo += os; a70.intoArray(out, oo); a71.intoArray(out, oo + 16);
        }

        static void f32x8(float[] x, int xo, MemorySegment w, long wo, int in, float[] out, int oo, int os) {
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            FloatVector a40 = a00, a41 = a00, a50 = a00, a51 = a00, a60 = a00, a61 = a00, a70 = a00, a71 = a00;
            for (int k = 0; k < in; k++) {
                long b = wo + 128L * k;
                FloatVector w0 = FloatVector.fromMemorySegment(F, w, b, LE), w1 = FloatVector.fromMemorySegment(F, w, b + 64, LE);
                int xk = xo + R * k;
                FloatVector v = FloatVector.broadcast(F, x[xk]);
                a00 = v.fma(w0, a00); a01 = v.fma(w1, a01);
                v = FloatVector.broadcast(F, x[xk + 1]);
                a10 = v.fma(w0, a10); a11 = v.fma(w1, a11);
                v = FloatVector.broadcast(F, x[xk + 2]);
                a20 = v.fma(w0, a20); a21 = v.fma(w1, a21);
                v = FloatVector.broadcast(F, x[xk + 3]);
                a30 = v.fma(w0, a30); a31 = v.fma(w1, a31);
                v = FloatVector.broadcast(F, x[xk + 4]);
                a40 = v.fma(w0, a40); a41 = v.fma(w1, a41);
                v = FloatVector.broadcast(F, x[xk + 5]);
                a50 = v.fma(w0, a50); a51 = v.fma(w1, a51);
                v = FloatVector.broadcast(F, x[xk + 6]);
                a60 = v.fma(w0, a60); a61 = v.fma(w1, a61);
                v = FloatVector.broadcast(F, x[xk + 7]);
                a70 = v.fma(w0, a70); a71 = v.fma(w1, a71);
            }
            a00.intoArray(out, oo); a01.intoArray(out, oo + 16); oo += os; a10.intoArray(out, oo); a11.intoArray(out, oo + 16); oo += os;
            a20.intoArray(out, oo); a21.intoArray(out, oo + 16); oo += os; a30.intoArray(out, oo); a31.intoArray(out, oo + 16); oo += os;
            a40.intoArray(out, oo); a41.intoArray(out, oo + 16); oo += os; a50.intoArray(out, oo); a51.intoArray(out, oo + 16); oo += os;
            a60.intoArray(out, oo); a61.intoArray(out, oo + 16); oo += os; a70.intoArray(out, oo); a71.intoArray(out, oo + 16);
        }

        /**
         * Q8 against 8 rows: per block of 32 inputs, the 8 rows' block sums t = Σ x·q for both halves of the panel (16
         * registers, each broadcast input feeding both halves), then a += t·d for each. The 8 x 32 results a accumulate in
         * {@code out} itself, read and written once per block. Kept in registers, results and block sums of both halves
         * would need 32 registers besides the weights and the input, more than the CPU has; the tile then went over each
         * block's inputs twice, once per half, broadcasting every input twice (2.4 instructions per FMA against 2.0 now).
         */
        static void q8x8(float[] x, int xo, MemorySegment w, long wo, int in, float[] out, int oo, int os) {
            FloatVector z = FloatVector.zero(F);
            for (int r = 0, o = oo; r < R; r++, o += os) { z.intoArray(out, o); z.intoArray(out, o + 16); }
            for (int kb = 0; kb < in; kb += 32) {
                long b = wo + (kb >> 5) * Packed.Q8_BLOCK_BYTES;
                FloatVector t00 = z, t01 = z, t10 = z, t11 = z, t20 = z, t21 = z, t30 = z, t31 = z;
                FloatVector t40 = z, t41 = z, t50 = z, t51 = z, t60 = z, t61 = z, t70 = z, t71 = z;
                for (int j = 0, xk = xo + R * kb; j < 32; j++, xk += R) {
                    long q = b + 64 + 32L * j;
                    FloatVector w0 = (FloatVector) ByteVector.fromMemorySegment(BQ, w, q, LE).convertShape(VectorOperators.B2F, F, 0);
                    FloatVector w1 = (FloatVector) ByteVector.fromMemorySegment(BQ, w, q + 16, LE).convertShape(VectorOperators.B2F, F, 0);
                    FloatVector v = FloatVector.broadcast(F, x[xk]); t00 = v.fma(w0, t00); t01 = v.fma(w1, t01);
                    v = FloatVector.broadcast(F, x[xk + 1]); t10 = v.fma(w0, t10); t11 = v.fma(w1, t11);
                    v = FloatVector.broadcast(F, x[xk + 2]); t20 = v.fma(w0, t20); t21 = v.fma(w1, t21);
                    v = FloatVector.broadcast(F, x[xk + 3]); t30 = v.fma(w0, t30); t31 = v.fma(w1, t31);
                    v = FloatVector.broadcast(F, x[xk + 4]); t40 = v.fma(w0, t40); t41 = v.fma(w1, t41);
                    v = FloatVector.broadcast(F, x[xk + 5]); t50 = v.fma(w0, t50); t51 = v.fma(w1, t51);
                    v = FloatVector.broadcast(F, x[xk + 6]); t60 = v.fma(w0, t60); t61 = v.fma(w1, t61);
                    v = FloatVector.broadcast(F, x[xk + 7]); t70 = v.fma(w0, t70); t71 = v.fma(w1, t71);
                }
                FloatVector d0, d1;
                {   // the 16 fp16 scales at b, widened exactly (see F16_NORMAL)
                    IntVector m = ((IntVector) ShortVector.fromMemorySegment(S, w, b, LE).convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 13), e = m.and(0x0FFFE000);
                    d0 = e.add(F16_NORMAL).reinterpretAsFloats().blend(e.add(F16_SUBNORMAL).reinterpretAsFloats().sub(0x1p-14f), e.compare(VectorOperators.LT, 0x00800000).cast(F))
                            .reinterpretAsInts().or(m.and(0x80000000)).reinterpretAsFloats();
                }
                {   // the 16 fp16 scales at b + 32, widened exactly (see F16_NORMAL)
                    IntVector m = ((IntVector) ShortVector.fromMemorySegment(S, w, b + 32, LE).convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 13), e = m.and(0x0FFFE000);
                    d1 = e.add(F16_NORMAL).reinterpretAsFloats().blend(e.add(F16_SUBNORMAL).reinterpretAsFloats().sub(0x1p-14f), e.compare(VectorOperators.LT, 0x00800000).cast(F))
                            .reinterpretAsInts().or(m.and(0x80000000)).reinterpretAsFloats();
                }
                int o = oo;
                t00.fma(d0, FloatVector.fromArray(F, out, o)).intoArray(out, o); t01.fma(d1, FloatVector.fromArray(F, out, o + 16)).intoArray(out, o + 16); o += os;
                t10.fma(d0, FloatVector.fromArray(F, out, o)).intoArray(out, o); t11.fma(d1, FloatVector.fromArray(F, out, o + 16)).intoArray(out, o + 16); o += os;
                t20.fma(d0, FloatVector.fromArray(F, out, o)).intoArray(out, o); t21.fma(d1, FloatVector.fromArray(F, out, o + 16)).intoArray(out, o + 16); o += os;
                t30.fma(d0, FloatVector.fromArray(F, out, o)).intoArray(out, o); t31.fma(d1, FloatVector.fromArray(F, out, o + 16)).intoArray(out, o + 16); o += os;
                t40.fma(d0, FloatVector.fromArray(F, out, o)).intoArray(out, o); t41.fma(d1, FloatVector.fromArray(F, out, o + 16)).intoArray(out, o + 16); o += os;
                t50.fma(d0, FloatVector.fromArray(F, out, o)).intoArray(out, o); t51.fma(d1, FloatVector.fromArray(F, out, o + 16)).intoArray(out, o + 16); o += os;
                t60.fma(d0, FloatVector.fromArray(F, out, o)).intoArray(out, o); t61.fma(d1, FloatVector.fromArray(F, out, o + 16)).intoArray(out, o + 16); o += os;
                t70.fma(d0, FloatVector.fromArray(F, out, o)).intoArray(out, o); t71.fma(d1, FloatVector.fromArray(F, out, o + 16)).intoArray(out, o + 16);
            }
        }

        /**
         * Unrolled by hand by four inputs. Besides saving loop overhead, this keeps the kernel too large for C2 to inline into
         * its caller: inlined into {@code rows} (which happens when decoding runs before any long prefill has shaped the
         * profile) the same loop ran 20-25% slower, and batch-1 decoding with it.
         */
        static void bf16x1(float[] x, int xo, MemorySegment w, long wo, int in, float[] out, int oo) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0;
            int k = 0, xk = xo;
            long wp = wo;
            for (; k + 3 < in; k += 4, xk += 4, wp += 256) {
                IntVector wv = IntVector.fromMemorySegment(I, w, wp, LE);   // lane i: outputs i (low half), 16 + i (high)
                FloatVector v = FloatVector.broadcast(F, x[xk]);
                a0 = v.fma(wv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
                a1 = v.fma(wv.and(0xFFFF0000).reinterpretAsFloats(), a1);
                wv = IntVector.fromMemorySegment(I, w, wp + 64, LE);
                v = FloatVector.broadcast(F, x[xk + 1]);
                a0 = v.fma(wv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
                a1 = v.fma(wv.and(0xFFFF0000).reinterpretAsFloats(), a1);
                wv = IntVector.fromMemorySegment(I, w, wp + 128, LE);
                v = FloatVector.broadcast(F, x[xk + 2]);
                a0 = v.fma(wv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
                a1 = v.fma(wv.and(0xFFFF0000).reinterpretAsFloats(), a1);
                wv = IntVector.fromMemorySegment(I, w, wp + 192, LE);
                v = FloatVector.broadcast(F, x[xk + 3]);
                a0 = v.fma(wv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
                a1 = v.fma(wv.and(0xFFFF0000).reinterpretAsFloats(), a1);
            }
            for (; k < in; k++, xk++, wp += 64) {
                IntVector wv = IntVector.fromMemorySegment(I, w, wp, LE);
                FloatVector v = FloatVector.broadcast(F, x[xk]);
                a0 = v.fma(wv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
                a1 = v.fma(wv.and(0xFFFF0000).reinterpretAsFloats(), a1);
            }
            a0.intoArray(out, oo); a1.intoArray(out, oo + 16);
        }

        /** Unrolled by hand by four inputs, as {@link #bf16x1} (and too large to be inlined, for the same reason). */
        static void f32x1(float[] x, int xo, MemorySegment w, long wo, int in, float[] out, int oo) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0;
            int k = 0, xk = xo;
            long b = wo;
            for (; k + 3 < in; k += 4, xk += 4, b += 512) {
                FloatVector v = FloatVector.broadcast(F, x[xk]);
                a0 = v.fma(FloatVector.fromMemorySegment(F, w, b, LE), a0);
                a1 = v.fma(FloatVector.fromMemorySegment(F, w, b + 64, LE), a1);
                v = FloatVector.broadcast(F, x[xk + 1]);
                a0 = v.fma(FloatVector.fromMemorySegment(F, w, b + 128, LE), a0);
                a1 = v.fma(FloatVector.fromMemorySegment(F, w, b + 192, LE), a1);
                v = FloatVector.broadcast(F, x[xk + 2]);
                a0 = v.fma(FloatVector.fromMemorySegment(F, w, b + 256, LE), a0);
                a1 = v.fma(FloatVector.fromMemorySegment(F, w, b + 320, LE), a1);
                v = FloatVector.broadcast(F, x[xk + 3]);
                a0 = v.fma(FloatVector.fromMemorySegment(F, w, b + 384, LE), a0);
                a1 = v.fma(FloatVector.fromMemorySegment(F, w, b + 448, LE), a1);
            }
            for (; k < in; k++, xk++, b += 128) {
                FloatVector v = FloatVector.broadcast(F, x[xk]);
                a0 = v.fma(FloatVector.fromMemorySegment(F, w, b, LE), a0);
                a1 = v.fma(FloatVector.fromMemorySegment(F, w, b + 64, LE), a1);
            }
            a0.intoArray(out, oo); a1.intoArray(out, oo + 16);
        }

        static void q8x1(float[] x, int xo, MemorySegment w, long wo, int in, float[] out, int oo) {
            FloatVector a0 = FloatVector.zero(F), a1 = a0;
            for (int kb = 0; kb < in; kb += 32) {
                long b = wo + (kb >> 5) * Packed.Q8_BLOCK_BYTES;
                FloatVector t0 = FloatVector.zero(F), t1 = t0;
                for (int j = 0; j < 32; j += 2) {   // unrolled by two by hand: too large to be inlined (see bf16x1)
                    long q = b + 64 + 32L * j;
                    FloatVector v = FloatVector.broadcast(F, x[xo + kb + j]);
                    t0 = v.fma((FloatVector) ByteVector.fromMemorySegment(BQ, w, q, LE).convertShape(VectorOperators.B2F, F, 0), t0);
                    t1 = v.fma((FloatVector) ByteVector.fromMemorySegment(BQ, w, q + 16, LE).convertShape(VectorOperators.B2F, F, 0), t1);
                    v = FloatVector.broadcast(F, x[xo + kb + j + 1]);
                    t0 = v.fma((FloatVector) ByteVector.fromMemorySegment(BQ, w, q + 32, LE).convertShape(VectorOperators.B2F, F, 0), t0);
                    t1 = v.fma((FloatVector) ByteVector.fromMemorySegment(BQ, w, q + 48, LE).convertShape(VectorOperators.B2F, F, 0), t1);
                }
                FloatVector d0; {   // the 16 fp16 scales at b, widened exactly (see F16_NORMAL)
                    IntVector m = ((IntVector) ShortVector.fromMemorySegment(S, w, b, LE).convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 13), e = m.and(0x0FFFE000);
                    d0 = e.add(F16_NORMAL).reinterpretAsFloats().blend(e.add(F16_SUBNORMAL).reinterpretAsFloats().sub(0x1p-14f), e.compare(VectorOperators.LT, 0x00800000).cast(F))
                            .reinterpretAsInts().or(m.and(0x80000000)).reinterpretAsFloats();
                }
                FloatVector d1; {   // the 16 fp16 scales at b + 32, widened exactly (see F16_NORMAL)
                    IntVector m = ((IntVector) ShortVector.fromMemorySegment(S, w, b + 32, LE).convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 13), e = m.and(0x0FFFE000);
                    d1 = e.add(F16_NORMAL).reinterpretAsFloats().blend(e.add(F16_SUBNORMAL).reinterpretAsFloats().sub(0x1p-14f), e.compare(VectorOperators.LT, 0x00800000).cast(F))
                            .reinterpretAsInts().or(m.and(0x80000000)).reinterpretAsFloats();
                }
                a0 = t0.fma(d0, a0);
                a1 = t1.fma(d1, a1);
            }
            a0.intoArray(out, oo); a1.intoArray(out, oo + 16);
        }
    }
}
