package dev.peft4j.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * A row-major 2-D matrix [rows, cols] of weights: either memory-mapped in its file dtype (F32, BF16, F16, or llama.cpp's
 * block-quantized {@link DType#Q8_0}; never copied to the heap) or a float[] on the heap (trainable or merged weights).
 * PyTorch's nn.Linear layout: rows = out_features, cols = in_features. Every dtype converts to float32 exactly (bf16 and f16
 * widen; a Q8_0 weight d·q is exact in float32), so the products of {@link MatMul} give the same result for a weight whatever
 * path converted it.
 */
public final class Matrix {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    static final VectorSpecies<Short> S_HALF = VectorSpecies.of(short.class, VectorShape.forBitSize(L * 16));
    static final VectorSpecies<Byte> B_QUARTER = VectorSpecies.of(byte.class, VectorShape.forBitSize(L * 8));
    static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    static final ValueLayout.OfFloat LE_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int QB = DType.Q8_BLOCK, QBB = DType.Q8_BLOCK_BYTES;

    public final int rows, cols;
    public final DType dtype;
    private final MemorySegment seg;   // when mapped
    private final float[] data;        // when on heap
    /** Bytes of one stored row (mapped matrices). */
    final long rowBytes;

    private Matrix(int rows, int cols, DType dtype, MemorySegment seg, float[] data) {
        this.rows = rows;
        this.cols = cols;
        this.dtype = dtype;
        this.seg = seg;
        this.data = data;
        this.rowBytes = dtype == DType.Q8_0 ? (long) cols / QB * QBB : (long) cols * dtype.bytes;
    }

    /**
     * A matrix over stored bytes: F32, BF16, F16 (little-endian, row-major) or Q8_0 (rows of cols/32 blocks of 34 bytes, rows
     * contiguous; cols must be a multiple of 32). The segment must hold exactly the matrix.
     */
    public static Matrix mapped(int rows, int cols, DType dtype, MemorySegment seg) {
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16 && dtype != DType.Q8_0) {
            throw new IllegalArgumentException("unsupported weight dtype " + dtype);
        }
        if (dtype == DType.Q8_0 && cols % QB != 0) {
            throw new IllegalArgumentException("Q8_0 matrix needs cols a multiple of " + QB + ", got " + cols);
        }
        long need = dtype.storageBytes((long) rows * cols);
        if (seg.byteSize() != need) throw new IllegalArgumentException("segment size mismatch: " + seg.byteSize() + " bytes for " + rows + "x" + cols + " " + dtype + " (" + need + ")");
        return new Matrix(rows, cols, dtype, seg, null);
    }

    /**
     * This heap float32 matrix copied off-heap (F32, as {@link #mapped} reads it), for a matrix that no longer changes and is
     * multiplied often with few rows: a product packs a heap matrix's panels on every call, an off-heap one once (an
     * adapter's LoRA factors while serving: one sequence's step against them had cost more in packing than in arithmetic).
     * The products are bitwise the same.
     */
    public Matrix offHeapCopy() {
        if (data == null) throw new IllegalStateException("offHeapCopy: not a heap matrix");
        MemorySegment s = NativeMemory.allocate(4L * rows * cols);
        MemorySegment.copy(data, 0, s, LE_FLOAT, 0, rows * cols);
        return mapped(rows, cols, DType.F32, s.asSlice(0, 4L * rows * cols));
    }

    public static Matrix heap(int rows, int cols, float[] data) {
        if (data.length != rows * cols) throw new IllegalArgumentException("data length " + data.length + " != " + rows + "x" + cols);
        return new Matrix(rows, cols, DType.F32, null, data);
    }

    /**
     * A float32 matrix over the first rows·cols values of {@code data}, which may be longer (a reused scratch buffer): for
     * the products only ({@link MatMul}); the array is not copied.
     */
    public static Matrix heapView(int rows, int cols, float[] data) {
        if (data.length < rows * cols) throw new IllegalArgumentException("data length " + data.length + " < " + rows + "x" + cols);
        return new Matrix(rows, cols, DType.F32, null, data);
    }

    public boolean onHeap() { return data != null; }

    /** The stored bytes (mapped matrices only). */
    MemorySegment segment() { return seg; }

    private volatile Packed packed;

    /** The panel-packed copy {@link MatMul} reads (mapped matrices only), built on first use. */
    Packed packed() {
        Packed p = packed;
        if (p == null) {
            synchronized (this) {
                if ((p = packed) == null) packed = p = Packed.of(this);
            }
        }
        return p;
    }

    /**
     * Builds now what the first product against this matrix would otherwise build: the off-heap panel-packed copy of a
     * mapped matrix that {@link MatMul} streams (same precision, about the stored size). No-op on the heap.
     */
    public void prepare() {
        if (data == null) packed();
    }

    /** Off-heap bytes of the packed copy (0 when not built or on the heap). */
    public long packedBytes() {
        Packed p = packed;
        return p == null ? 0 : p.bytes();
    }

    /** The heap array (only for heap matrices). */
    public float[] array() {
        if (data == null) throw new IllegalStateException("mapped matrix has no heap array");
        return data;
    }

    /** Bytes the weights take (as stored: float32 for heap matrices). */
    public long bytes() { return data != null ? 4L * rows * cols : rowBytes * rows; }

    public float get(int r, int c) {
        long i = (long) r * cols + c;
        if (data != null) return data[(int) i];
        return switch (dtype) {
            case F32 -> seg.get(LE_FLOAT, i * 4);
            case BF16 -> Float.intBitsToFloat(seg.get(LE_SHORT, i * 2) << 16);
            case F16 -> Float.float16ToFloat(seg.get(LE_SHORT, i * 2));
            case Q8_0 -> {
                long b = r * rowBytes + (long) (c / QB) * QBB;
                yield Float.float16ToFloat(seg.get(LE_SHORT, b)) * seg.get(ValueLayout.JAVA_BYTE, b + 2 + c % QB);
            }
            default -> throw new IllegalStateException();
        };
    }

    /** The fp16 scale d of block {@code block} (inputs [32·block, 32·block + 32)) of row r of a mapped Q8_0 matrix, widened. */
    float q8Scale(int r, int block) {
        if (dtype != DType.Q8_0 || data != null) throw new IllegalStateException("not a Q8_0 matrix");
        return Float.float16ToFloat(seg.get(LE_SHORT, r * rowBytes + (long) block * QBB));
    }

    /** The int8 value q of weight (r, c) of a mapped Q8_0 matrix (the weight is q times its block's scale). */
    float q8Value(int r, int c) {
        if (dtype != DType.Q8_0 || data != null) throw new IllegalStateException("not a Q8_0 matrix");
        return seg.get(ValueLayout.JAVA_BYTE, r * rowBytes + (long) (c / QB) * QBB + 2 + c % QB);
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
                long base = start * 2;
                for (; i <= len - L; i += L) bf16(seg, base + 2L * i).intoArray(dst, dstOff + i);
                for (; i < len; i++) dst[dstOff + i] = Float.intBitsToFloat(seg.get(LE_SHORT, base + 2L * i) << 16);
            }
            case F16 -> {
                long base = start * 2;
                for (int i = 0; i < len; i++) dst[dstOff + i] = Float.float16ToFloat(seg.get(LE_SHORT, base + 2L * i));
            }
            case Q8_0 -> {
                long b = r0 * rowBytes;
                int blocks = len / QB;
                for (int k = 0; k < blocks; k++, b += QBB) {
                    float d = Float.float16ToFloat(seg.get(LE_SHORT, b));
                    int o = dstOff + k * QB;
                    for (int j = 0; j < QB; j += L) q8(seg, b + 2 + j, d).intoArray(dst, o + j);
                }
            }
            default -> throw new IllegalStateException();
        }
    }

    /** L bf16 values at a byte offset, widened to float32 (exact). */
    static FloatVector bf16(MemorySegment s, long byteOffset) {
        ShortVector sv = ShortVector.fromMemorySegment(S_HALF, s, byteOffset, ByteOrder.LITTLE_ENDIAN);
        return ((IntVector) sv.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /** L int8 values at a byte offset times the block scale d (exact in float32: an 11-bit by 8-bit product). */
    static FloatVector q8(MemorySegment s, long byteOffset, float d) {
        ByteVector bv = ByteVector.fromMemorySegment(B_QUARTER, s, byteOffset, ByteOrder.LITTLE_ENDIAN);
        return ((FloatVector) bv.convertShape(VectorOperators.B2F, F, 0)).mul(d);
    }

    /** The whole matrix as a new float32 array. */
    public float[] toFloatArray() {
        float[] out = new float[rows * cols];
        rowsToFloat(0, rows, out, 0);
        return out;
    }

    /**
     * Quantizes any matrix (heap or mapped F32/BF16/F16/Q8_0) to llama.cpp's Q8_0 as llama.cpp does
     * ({@code quantize_row_q8_0_ref}): per block of 32 weights of a row, d = max|w|/127 stored as fp16, q = round(w/d) (half
     * away from zero; computed with 1/d of the float32 d). cols must be a multiple of 32. Returns the bytes, allocated in
     * {@code arena}, for {@link #mapped}(rows, cols, Q8_0, segment).
     */
    public static MemorySegment quantizeQ8(Matrix src, Arena arena) {
        if (src.cols % QB != 0) throw new IllegalArgumentException("Q8_0 needs cols a multiple of " + QB + ", got " + src.cols);
        MemorySegment out = NativeMemory.allocate(DType.Q8_0.storageBytes((long) src.rows * src.cols), arena);
        float[] row = new float[src.cols];
        long o = 0;
        for (int r = 0; r < src.rows; r++) {
            src.rowsToFloat(r, 1, row, 0);
            for (int k = 0; k < src.cols; k += QB, o += QBB) {
                float amax = 0;
                for (int j = 0; j < QB; j++) amax = Math.max(amax, Math.abs(row[k + j]));
                float d = amax / 127f;
                float id = d != 0f ? 1f / d : 0f;
                out.set(LE_SHORT, o, Float.floatToFloat16(d));
                for (int j = 0; j < QB; j++) {
                    float v = row[k + j] * id;
                    out.set(ValueLayout.JAVA_BYTE, o + 2 + j, (byte) (int) Math.copySign(Math.floor(Math.abs((double) v) + 0.5), v));
                }
            }
        }
        return out;
    }

    /** {@link #quantizeQ8} as a Matrix. */
    public static Matrix q8(Matrix src, Arena arena) {
        return mapped(src.rows, src.cols, DType.Q8_0, quantizeQ8(src, arena));
    }
}
