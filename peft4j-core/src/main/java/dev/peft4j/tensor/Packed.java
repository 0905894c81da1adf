package dev.peft4j.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A weight matrix W [out, in] repacked for the products of {@link MatMul}: panels of {@value #P} output rows, each stored
 * input-major (for every input index k, the {@value #P} weights W[o0..o0+31, k] side by side), so that a product streams one
 * panel sequentially and every output lane accumulates its own sequential chain over k (no horizontal sums). Rows past
 * {@code out} in the last panel are zeros. Built once per mapped matrix, off-heap (64-byte aligned), in the matrix's own
 * precision:
 * <ul>
 *   <li>{@link Kind#BF16}: 64 bytes per k (bf16, widened exactly in registers; outputs j and 16 + j share a 32-bit lane,
 *       see {@link #bf16Slot});</li>
 *   <li>{@link Kind#F32}: 128 bytes per k (F32 and F16 weights; F16 widens exactly);</li>
 *   <li>{@link Kind#Q8}: per block of 32 inputs, the 32 outputs' fp16 block scales (64 bytes), then 32 x 32 int8
 *       (input-major): 1088 bytes per block, as many as the Q8_0 rows. The kernels widen the scales exactly in registers
 *       ({@code MatMul.Tiles}: a few integer and float operations per 16 scales, none with a subnormal operand). An
 *       earlier layout held them widened to float32 (1152 bytes per block): 6% more bytes to stream per decoded token.</li>
 * </ul>
 */
final class Packed {
    /** Output rows per panel. */
    static final int P = 32;
    static final long Q8_BLOCK_BYTES = 2L * P + (long) P * DType.Q8_BLOCK;

    enum Kind { F32, BF16, Q8 }

    final Kind kind;
    final MemorySegment seg;
    final int rows, cols, panels;
    /** Bytes of one panel. */
    final long panelBytes;

    private Packed(Kind kind, MemorySegment seg, int rows, int cols, long panelBytes) {
        this.kind = kind;
        this.seg = seg;
        this.rows = rows;
        this.cols = cols;
        this.panels = (rows + P - 1) / P;
        this.panelBytes = panelBytes;
    }

    static long panelBytes(Kind kind, int cols) {
        return switch (kind) {
            case F32 -> 4L * P * cols;
            case BF16 -> 2L * P * cols;
            case Q8 -> (long) cols / DType.Q8_BLOCK * Q8_BLOCK_BYTES;
        };
    }

    /** Packs a mapped matrix (parallel over panels). */
    static Packed of(Matrix m) {
        Kind kind = switch (m.dtype) {
            case BF16 -> Kind.BF16;
            case Q8_0 -> Kind.Q8;
            default -> Kind.F32;
        };
        long pb = panelBytes(kind, m.cols);
        int panels = (m.rows + P - 1) / P;
        MemorySegment seg = NativeMemory.allocate(pb * panels);   // zeroed
        Packed p = new Packed(kind, seg, m.rows, m.cols, pb);
        Parallel.forRange(panels, 8, (a, b) -> {
            float[] row = kind == Kind.F32 ? new float[m.cols] : null;
            for (int q = a; q < b; q++) p.fill(m, q, row);
        });
        return p;
    }

    private void fill(Matrix m, int panel, float[] row) {
        MemorySegment src = m.segment();
        long base = panel * panelBytes;
        int o0 = panel * P, no = Math.min(P, rows - o0);
        switch (kind) {
            case BF16 -> {   // transpose through heap arrays, then one bulk copy
                short[] r = new short[cols], t = new short[P * cols];
                for (int j = 0; j < no; j++) {
                    MemorySegment.copy(src, Matrix.LE_SHORT, (o0 + j) * m.rowBytes, r, 0, cols);
                    int at = bf16Slot(j);
                    for (int k = 0; k < cols; k++) t[k * P + at] = r[k];
                }
                MemorySegment.copy(t, 0, seg, Matrix.LE_SHORT, base, P * cols);
            }
            case F32 -> {
                float[] t = new float[P * cols];
                for (int j = 0; j < no; j++) {
                    m.rowsToFloat(o0 + j, 1, row, 0);
                    for (int k = 0; k < cols; k++) t[k * P + j] = row[k];
                }
                MemorySegment.copy(t, 0, seg, Matrix.LE_FLOAT, base, P * cols);
            }
            case Q8 -> {
                int blocks = cols / DType.Q8_BLOCK;
                byte[] r = new byte[(int) m.rowBytes], t = new byte[(int) panelBytes];
                for (int j = 0; j < no; j++) {
                    MemorySegment.copy(src, ValueLayout.JAVA_BYTE, (o0 + j) * m.rowBytes, r, 0, r.length);
                    for (int b = 0; b < blocks; b++) {
                        int s = b * DType.Q8_BLOCK_BYTES, d = (int) (b * Q8_BLOCK_BYTES);
                        t[d + 2 * j] = r[s];   // the fp16 scale, little-endian
                        t[d + 2 * j + 1] = r[s + 1];
                        for (int k = 0; k < DType.Q8_BLOCK; k++) t[d + 2 * P + P * k + j] = r[s + 2 + k];
                    }
                }
                MemorySegment.copy(t, 0, seg, ValueLayout.JAVA_BYTE, base, t.length);
            }
        }
    }

    /**
     * Packs rows [o0, o0 + no) of a heap (or any) matrix into a float32 panel at {@code dst} (at least {@link #panelBytes}
     * (F32, cols) bytes; rows past no are zeros), through {@code tmp} (at least P·cols floats).
     */
    static void heapPanel(Matrix m, int o0, int no, float[] tmp, MemorySegment dst) {
        int cols = m.cols;
        if (m.onHeap()) {
            float[] w = m.array();
            for (int j = 0; j < no; j++) {
                int s = (o0 + j) * cols;
                for (int k = 0; k < cols; k++) tmp[k * P + j] = w[s + k];
            }
        } else {
            float[] row = new float[cols];
            for (int j = 0; j < no; j++) {
                m.rowsToFloat(o0 + j, 1, row, 0);
                for (int k = 0; k < cols; k++) tmp[k * P + j] = row[k];
            }
        }
        if (no < P) for (int k = 0; k < cols; k++) java.util.Arrays.fill(tmp, k * P + no, k * P + P, 0f);
        MemorySegment.copy(tmp, 0, dst, Matrix.LE_FLOAT, 0, P * cols);
    }

    /**
     * Where output j of a panel sits among a bf16 panel's 32 values of one input: outputs j and 16 + j share the 32-bit
     * lane j (low and high half), so one 64-byte load yields both halves of the panel's outputs with a shift and a mask.
     */
    static int bf16Slot(int j) {
        return j < P / 2 ? 2 * j : 2 * (j - P / 2) + 1;
    }

    long bytes() { return seg.byteSize(); }
}
