package dev.peft4j.tensor;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** Q8_0 (llama.cpp block_q8_0): the quantizer against llama.cpp's rule, and products against dequantize-then-float32. */
class Q8Test {
    @Test
    void quantizesLikeLlamaCpp() {
        int rows = 3, cols = 64;
        float[] w = new float[rows * cols];
        SplittableRandom r = new SplittableRandom(5);
        for (int i = 0; i < w.length; i++) w[i] = (float) r.nextGaussian();
        w[5] = 0.5f * 127 / 127;   // any value
        for (int j = 32; j < 64; j++) w[j] = 0f;   // an all-zero block: d = 0, q = 0
        MemorySegment q = Matrix.quantizeQ8(Matrix.heap(rows, cols, w), Arena.ofAuto());
        assertEquals(rows * cols / 32 * 34, q.byteSize());
        ValueLayout.OfShort le = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (int b = 0; b < rows * cols / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(w[b * 32 + j]));
            float d = amax / 127f, id = d == 0 ? 0 : 1f / d;
            assertEquals(Float.floatToFloat16(d), q.get(le, 34L * b), "scale of block " + b);
            for (int j = 0; j < 32; j++) {
                int e = Math.round(Math.abs(w[b * 32 + j] * id)) * (int) Math.signum(w[b * 32 + j] * id);
                assertEquals(e, q.get(ValueLayout.JAVA_BYTE, 34L * b + 2 + j), "q of block " + b + " lane " + j);
                assertTrue(Math.abs(e) <= 127);
            }
        }
        Matrix m = Matrix.mapped(rows, cols, DType.Q8_0, q);
        float[] deq = m.toFloatArray();
        for (int i = 0; i < w.length; i++) {
            assertEquals(w[i], deq[i], Math.abs(deq[i]) / 127 + 0.02, "dequantized " + i);
            assertEquals(deq[i], m.get(i / cols, i % cols));
        }
        assertThrows(IllegalArgumentException.class, () -> Matrix.quantizeQ8(Matrix.heap(1, 40, new float[40]), Arena.ofAuto()));
        assertThrows(IllegalArgumentException.class, () -> Matrix.mapped(2, 64, DType.Q8_0, Arena.ofAuto().allocate(100)));
    }

    @Test
    void productsAreBlockDotProducts() {
        SplittableRandom r = new SplittableRandom(9);
        int out = 72, in = 96;
        float[] w = new float[out * in];
        for (int i = 0; i < w.length; i++) w[i] = (float) r.nextGaussian();
        Matrix q = Matrix.q8(Matrix.heap(out, in, w), Arena.ofAuto());
        Matrix deq = Matrix.heap(out, in, q.toFloatArray());
        float[] e0 = new float[3 * in];
        q.rowsToFloat(1, 3, e0, 0);
        assertArrayEquals(java.util.Arrays.copyOfRange(deq.array(), in, 4 * in), e0);
        for (int n : new int[]{1, 2, 5, 40}) {
            float[] x = new float[n * in];
            for (int i = 0; i < x.length; i++) x[i] = (float) r.nextGaussian();
            float[] a = new float[n * out], b = new float[n * out];
            MatMul.xWt(x, 0, n, q, a, 0, false);
            MatMul.xWt(x, 0, n, deq, b, 0, false);
            for (int i = 0; i < n; i++) {
                for (int o = 0; o < out; o++) {
                    // bitwise the block dot product (the scale applied to each block's sum, as llama.cpp does)
                    assertEquals(Float.floatToRawIntBits(RowInvarianceTest.q8BlockDot(q, o, x, i * in)), Float.floatToRawIntBits(a[i * out + o]), "n=" + n + " row " + i + " out " + o);
                    // and the product of the dequantized weights up to float32 rounding of a 96-term sum
                    assertEquals(b[i * out + o], a[i * out + o], 1e-5 * (1 + Math.abs(b[i * out + o])), "n=" + n + " vs dequantized");
                }
            }
        }
    }

    /**
     * The kernels widen the fp16 block scales in registers: every kind of fp16 value (zeros, subnormals, the extremes, both
     * signs) must give bitwise the block dot product with the exact scale, on the one-row and the 8-row tiles.
     */
    @Test
    void everyKindOfScaleWidensExactly() {
        short[] kinds = {0x0000, (short) 0x8000, 0x0001, 0x0155, 0x03FF, 0x0400, 0x3C00, 0x2E66, 0x7BFF, (short) 0xBC00, (short) 0x83FF, (short) 0xFBFF, 0x1234};
        SplittableRandom r = new SplittableRandom(5);
        int out = 40, in = 64, blocks = out * in / DType.Q8_BLOCK;
        MemorySegment seg = Arena.ofAuto().allocate((long) blocks * DType.Q8_BLOCK_BYTES);
        for (int b = 0; b < blocks; b++) {
            long at = (long) b * DType.Q8_BLOCK_BYTES;
            short h = b < kinds.length ? kinds[b] : kinds[r.nextInt(kinds.length)];
            seg.set(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), at, h);
            for (int k = 0; k < DType.Q8_BLOCK; k++) seg.set(java.lang.foreign.ValueLayout.JAVA_BYTE, at + 2 + k, (byte) (r.nextInt(255) - 127));
        }
        Matrix q = Matrix.mapped(out, in, DType.Q8_0, seg);
        for (int n : new int[]{1, 8, 9}) {
            float[] x = new float[n * in];
            for (int i = 0; i < x.length; i++) x[i] = (float) r.nextGaussian();
            float[] a = new float[n * out];
            MatMul.xWt(x, 0, n, q, a, 0, false);
            for (int i = 0; i < n; i++)
                for (int o = 0; o < out; o++)
                    assertEquals(Float.floatToRawIntBits(RowInvarianceTest.q8BlockDot(q, o, x, i * in)), Float.floatToRawIntBits(a[i * out + o]), "n=" + n + " row " + i + " out " + o);
        }
    }
}
