package dev.peft4j.tensor;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** The matrix products against a plain double-precision loop, over shapes that exercise every tile and tail path. */
class MatMulTest {
    static float[] rand(int n, SplittableRandom r) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
        return v;
    }

    /** A BF16 matrix in off-heap memory holding bf16-rounded values of w (returned rounded in place). */
    static Matrix bf16(float[] w, int rows, int cols) {
        MemorySegment seg = Arena.ofAuto().allocate(2L * w.length);
        for (int i = 0; i < w.length; i++) {
            short b = dev.peft4j.io.SafeTensors.toBf16(w[i]);
            seg.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 2L * i, b);
            w[i] = Float.intBitsToFloat(b << 16);
        }
        return Matrix.mapped(rows, cols, DType.BF16, seg);
    }

    @Test
    void xWtMatchesNaiveForAllPaths() {
        SplittableRandom r = new SplittableRandom(1);
        int[][] shapes = {{1, 7, 5}, {1, 64, 32}, {1, 128, 8}, {3, 64, 32}, {5, 33, 70}, {23, 40, 17}, {24, 64, 64}, {30, 100, 130}, {64, 48, 200}, {97, 33, 65}};
        for (int[] sh : shapes) {
            int n = sh[0], in = sh[1], out = sh[2];
            for (boolean useBf16 : new boolean[]{false, true}) {
                float[] x = rand(n * in, r), w = rand(out * in, r), y0 = rand(n * out, r);
                Matrix m = useBf16 ? bf16(w, out, in) : Matrix.heap(out, in, w);
                for (boolean acc : new boolean[]{false, true}) {
                    float[] y = y0.clone();
                    MatMul.xWt(x, 0, n, m, y, 0, acc);
                    for (int i = 0; i < n; i++) {
                        for (int o = 0; o < out; o++) {
                            double s = acc ? y0[i * out + o] : 0;
                            for (int k = 0; k < in; k++) s += (double) x[i * in + k] * w[o * in + k];
                            assertEquals(s, y[i * out + o], 1e-4 * (1 + Math.abs(s)), "n=" + n + " in=" + in + " out=" + out + " acc=" + acc + " bf16=" + useBf16);
                        }
                    }
                }
            }
        }
    }

    /**
     * The packed input rows are the layout the tiles read: whole groups of 8 rows input-major (row i, input k of group g at
     * g·8·in + 8k + i), the rest as they are; widths with and without a vector tail, a partial last group, an offset.
     */
    @Test
    void packLaysOutGroupsOfEightRowsInputMajor() {
        SplittableRandom r = new SplittableRandom(5);
        for (int in : new int[]{1, 15, 16, 48, 100, 640}) {
            for (int n : new int[]{7, 8, 19, 64}) {
                int off = 3;
                float[] x = rand(off + n * in, r), xp = new float[n * in + 5];
                MatMul.pack(x, off, n, in, xp, 0);
                int full = n / 8 * 8;
                for (int row = 0; row < n; row++) {
                    for (int k = 0; k < in; k++) {
                        int at = row < full ? (row / 8) * 8 * in + 8 * k + row % 8 : row * in + k;
                        assertEquals(x[off + row * in + k], xp[at], "in=" + in + " n=" + n + " row " + row + " input " + k);
                    }
                }
            }
        }
    }

    /**
     * Weights given as their panels in native memory give bitwise the product of the same matrix (every tile and a partial
     * last panel), also as a window of longer panels (an offset and a stride, as attention reads its keys and values), with rows of x and
     * y spaced (one head's rows of a wider matrix, read and written in place).
     */
    @Test
    void panelsGiveTheProductOfTheMatrix() {
        SplittableRandom r = new SplittableRandom(12);
        int[][] shapes = {{1, 40, 16}, {7, 33, 50}, {8, 64, 32}, {19, 100, 256}, {256, 512, 96}};
        for (int[] sh : shapes) {
            int n = sh[0], in = sh[1], out = sh[2];
            float[] x = rand(n * in, r), w = rand(out * in, r);
            int np = (out + 31) / 32, skip = 3, longer = in + skip + 2;   // each panel holds longer inputs; the product uses [skip, skip + in)
            MemorySegment panels = Arena.ofAuto().allocate(4L * np * 32 * longer + 64, 64);
            var le = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
            for (int o = 0; o < np * 32; o++)
                for (int k = 0; k < longer; k++) {
                    int kk = k - skip;
                    float v = o < out && kk >= 0 && kk < in ? w[o * in + kk] : (o < out ? 1e30f : 0f);   // outside the window: values that would show
                    panels.set(le, 64 + 4L * ((o / 32) * 32 * longer + k * 32 + o % 32), v);
                }
            float[] want = new float[n * out];
            MatMul.xWtSerial(x, 0, n, Matrix.heap(out, in, w), want, 0, false);
            // x's rows spaced by in + 5 (from value 2 on), y's by out + 3 (from value 1 on): gaps keep their values
            float[] xs = new float[2 + n * (in + 5)], got = new float[1 + n * (out + 3)];
            for (int i = 0; i < n; i++) System.arraycopy(x, i * in, xs, 2 + i * (in + 5), in);
            java.util.Arrays.fill(got, -7f);
            MatMul.xWtPanelsSerial(xs, 2, in + 5, n, in, panels, 64 + 4L * skip * 32, 4L * 32 * longer, out, got, 1, out + 3);
            for (int i = 0; i < n; i++) {
                for (int o = 0; o < out; o++) assertEquals(Float.floatToRawIntBits(want[i * out + o]), Float.floatToRawIntBits(got[1 + i * (out + 3) + o]), "n=" + n + " in=" + in + " out=" + out + " row " + i + " output " + o);
                if (i < n - 1) for (int o = out; o < out + 3; o++) assertEquals(-7f, got[1 + i * (out + 3) + o], "gap after row " + i);
            }
            assertEquals(-7f, got[0]);
        }
    }

    /**
     * Every register tile stays larger than C2's inlining limit for hot methods (FreqInlineSize, 325 bytes of bytecode on
     * x86-64), so it is always compiled on its own: inlined into its caller (as C2 did with the 126-byte one-row tile when
     * decoding ran before any long prefill) the same loop ran 20-25% slower, and batch-1 decoding with it.
     */
    @Test
    void registerTilesAreTooLargeToBeInlined() throws Exception {
        byte[] bytes;
        try (var in = MatMul.class.getResourceAsStream("MatMul$Tiles.class")) { bytes = in.readAllBytes(); }
        var cm = java.lang.classfile.ClassFile.of().parse(bytes);
        int tiles = 0;
        for (var m : cm.methods()) {
            String name = m.methodName().stringValue();
            if (!name.matches("(bf16|f32|q8)x\\d+")) continue;
            tiles++;
            int size = m.code().map(c -> ((java.lang.classfile.attribute.CodeAttribute) c).codeLength()).orElse(0);
            assertTrue(size > 325, name + " has " + size + " bytes of bytecode: at most 325 lets C2 inline it into its caller");
        }
        assertEquals(6, tiles, "tiles found");
    }
}
