package dev.peft4j.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * A row-major 2-D matrix [rows, cols] of weights: either memory-mapped in its file dtype (F32, BF16, F16; never copied to the
 * heap) or a float[] on the heap (trainable or merged weights). PyTorch's nn.Linear layout: rows = out_features, cols = in_features.
 */
public final class Matrix {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Short> S_HALF = F.length() == 16 ? ShortVector.SPECIES_256 : ShortVector.SPECIES_128;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    private static final ValueLayout.OfFloat LE_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    public final int rows, cols;
    public final DType dtype;
    private final MemorySegment seg;   // when mapped
    private final float[] data;        // when on heap

    private Matrix(int rows, int cols, DType dtype, MemorySegment seg, float[] data) {
        this.rows = rows;
        this.cols = cols;
        this.dtype = dtype;
        this.seg = seg;
        this.data = data;
    }

    public static Matrix mapped(int rows, int cols, DType dtype, MemorySegment seg) {
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16) {
            throw new IllegalArgumentException("unsupported weight dtype " + dtype);
        }
        if (seg.byteSize() != (long) rows * cols * dtype.bytes) throw new IllegalArgumentException("segment size mismatch");
        return new Matrix(rows, cols, dtype, seg, null);
    }

    public static Matrix heap(int rows, int cols, float[] data) {
        if (data.length != rows * cols) throw new IllegalArgumentException("data length " + data.length + " != " + rows + "x" + cols);
        return new Matrix(rows, cols, DType.F32, null, data);
    }

    public boolean onHeap() { return data != null; }

    /**
     * Dot products of one float32 vector x[xo..xo+cols) with rows [r0, r0+4) of a mapped BF16 matrix, converting in registers
     * (no float32 copy of the rows): the batch-1 decoding path, which only streams weights. Returns false (doing nothing) for
     * other layouts. Lane sums are in a fixed order, as everywhere.
     */
    boolean dot4Bf16(float[] x, int xo, int r0, float[] out) {
        if (data != null || dtype != DType.BF16 || cols % F.length() != 0) return false;
        long b0 = 2L * r0 * cols, b1 = b0 + 2L * cols, b2 = b1 + 2L * cols, b3 = b2 + 2L * cols;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < cols; i += F.length()) {
            FloatVector xv = FloatVector.fromArray(F, x, xo + i);
            a0 = xv.fma(bf16(b0 + 2L * i), a0);
            a1 = xv.fma(bf16(b1 + 2L * i), a1);
            a2 = xv.fma(bf16(b2 + 2L * i), a2);
            a3 = xv.fma(bf16(b3 + 2L * i), a3);
        }
        out[0] = Ops.hsum(a0);
        out[1] = Ops.hsum(a1);
        out[2] = Ops.hsum(a2);
        out[3] = Ops.hsum(a3);
        return true;
    }

    private FloatVector bf16(long byteOffset) {
        ShortVector sv = ShortVector.fromMemorySegment(S_HALF, seg, byteOffset, ByteOrder.LITTLE_ENDIAN);
        return ((IntVector) sv.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /** The heap array (only for heap matrices). */
    public float[] array() {
        if (data == null) throw new IllegalStateException("mapped matrix has no heap array");
        return data;
    }

    public long bytes() { return (long) rows * cols * dtype.bytes; }

    public float get(int r, int c) {
        long i = (long) r * cols + c;
        if (data != null) return data[(int) i];
        return switch (dtype) {
            case F32 -> seg.get(LE_FLOAT, i * 4);
            case BF16 -> Float.intBitsToFloat(seg.get(LE_SHORT, i * 2) << 16);
            case F16 -> Float.float16ToFloat(seg.get(LE_SHORT, i * 2));
            default -> throw new IllegalStateException();
        };
    }

    /** Copies rows [r0, r0+n) as float32 into dst[dstOff ...]. */
    public void rowsToFloat(int r0, int n, float[] dst, int dstOff) {
        int len = n * cols;
        long start = (long) r0 * cols;
        if (data != null) {
            System.arraycopy(data, (int) start, dst, dstOff, len);
            return;
        }
        switch (dtype) {
            case F32 -> MemorySegment.copy(seg, LE_FLOAT, start * 4, dst, dstOff, len);
            case BF16 -> {
                int i = 0;
                int step = F.length();
                long base = start * 2;
                for (; i <= len - step; i += step) {
                    ShortVector sv = ShortVector.fromMemorySegment(S_HALF, seg, base + 2L * i, ByteOrder.LITTLE_ENDIAN);
                    IntVector iv = (IntVector) sv.convertShape(VectorOperators.S2I, I, 0);
                    iv.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(dst, dstOff + i);
                }
                for (; i < len; i++) dst[dstOff + i] = Float.intBitsToFloat(seg.get(LE_SHORT, base + 2L * i) << 16);
            }
            case F16 -> {
                long base = start * 2;
                for (int i = 0; i < len; i++) dst[dstOff + i] = Float.float16ToFloat(seg.get(LE_SHORT, base + 2L * i));
            }
            default -> throw new IllegalStateException();
        }
    }

    /** The whole matrix as a new float32 array. */
    public float[] toFloatArray() {
        float[] out = new float[rows * cols];
        rowsToFloat(0, rows, out, 0);
        return out;
    }
}
