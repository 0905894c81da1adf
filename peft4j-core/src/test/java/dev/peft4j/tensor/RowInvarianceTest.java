package dev.peft4j.tensor;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Every row of y = x·Wᵀ is bitwise the same whatever rows are computed with it (decoding one token, eight sequences, a
 * prefill), for every weight dtype, heap and mapped, and through the serial entry point.
 */
class RowInvarianceTest {
    private static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat LE_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    static float[] rand(int n, SplittableRandom r) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
        return v;
    }

    /** The matrices of one weight in every layout. */
    static Matrix[] layouts(float[] w, int out, int in) {
        Arena a = Arena.ofAuto();
        MemorySegment f32 = a.allocate(4L * w.length), bf = a.allocate(2L * w.length), f16 = a.allocate(2L * w.length);
        for (int i = 0; i < w.length; i++) {
            f32.set(LE_FLOAT, 4L * i, w[i]);
            bf.set(LE_SHORT, 2L * i, dev.peft4j.io.SafeTensors.toBf16(w[i]));
            f16.set(LE_SHORT, 2L * i, Float.floatToFloat16(w[i]));
        }
        Matrix heap = Matrix.heap(out, in, w.clone());
        Matrix[] m = {heap, Matrix.mapped(out, in, DType.F32, f32), Matrix.mapped(out, in, DType.BF16, bf), Matrix.mapped(out, in, DType.F16, f16), null};
        if (in % 32 == 0) m[4] = Matrix.q8(heap, a);
        return m;
    }

    @Test
    void eachRowIsTheSameAloneOrStacked() {
        SplittableRandom r = new SplittableRandom(11);
        int[][] shapes = {{64, 68}, {640, 36}, {96, 130}, {37, 12}, {256, 64}};
        int[] ns = {1, 2, 3, 7, 8, 16, 25, 300};
        for (int[] sh : shapes) {
            int in = sh[0], out = sh[1];
            for (Matrix m : layouts(rand(out * in, r), out, in)) {
                if (m == null) continue;
                for (int n : ns) {
                    float[] x = rand(n * in, r);
                    float[] y = new float[n * out];
                    MatMul.xWt(x, 0, n, m, y, 0, false);
                    float[] ys = new float[n * out];
                    MatMul.xWtSerial(x, 0, n, m, ys, 0, false);
                    for (int i = 0; i < n; i++) {
                        float[] xi = java.util.Arrays.copyOfRange(x, i * in, (i + 1) * in);
                        float[] yi = new float[out];
                        MatMul.xWt(xi, 0, 1, m, yi, 0, false);
                        for (int o = 0; o < out; o++) {
                            String what = m.dtype + (m.onHeap() ? " heap" : " mapped") + " in=" + in + " out=" + out + " n=" + n + " row " + i + " out " + o;
                            assertEquals(Float.floatToRawIntBits(yi[o]), Float.floatToRawIntBits(y[i * out + o]), what);
                            assertEquals(Float.floatToRawIntBits(yi[o]), Float.floatToRawIntBits(ys[i * out + o]), what + " (serial)");
                        }
                    }
                }
            }
        }
    }

    /**
     * The order is the documented one: each output is the sequential chain s = fma(x[k], w[o][k], s) over k, bit for bit, for
     * every layout and row count (checked against a plain scalar loop written here, not the kernel's own fallback).
     */
    @Test
    void everyOutputIsOneSequentialFmaChain() {
        SplittableRandom r = new SplittableRandom(3);
        int[][] shapes = {{64, 40}, {96, 33}, {640, 64}};
        for (int[] sh : shapes) {
            int in = sh[0], out = sh[1];
            float[] w = rand(out * in, r);
            for (int i = 0; i < w.length; i++) w[i] *= (float) Math.pow(10, r.nextInt(7) - 3);   // sums that depend on their order
            for (Matrix m : layouts(w, out, in)) {
                if (m == null) continue;
                float[] wf = m.toFloatArray();
                for (int n : new int[]{1, 8, 11}) {
                    float[] x = rand(n * in, r);
                    float[] y = new float[n * out];
                    MatMul.xWt(x, 0, n, m, y, 0, false);
                    for (int i = 0; i < n; i++) {
                        for (int o = 0; o < out; o++) {
                            float s = 0f;
                            if (m.dtype == DType.Q8_0) s = q8BlockDot(m, o, x, i * in);
                            else for (int k = 0; k < in; k++) s = Math.fma(x[i * in + k], wf[o * in + k], s);
                            assertEquals(Float.floatToRawIntBits(s), Float.floatToRawIntBits(y[i * out + o]),
                                    m.dtype + (m.onHeap() ? " heap" : " mapped") + " in=" + in + " n=" + n + " row " + i + " out " + o);
                        }
                    }
                }
            }
        }
    }

    /**
     * The Q8_0 definition, from the stored bytes (llama.cpp's block_q8_0: fp16 d, then 32 int8 q): per block
     * t = fma(x, q, t) in order, then s = fma(t, d, s).
     */
    static float q8BlockDot(Matrix m, int o, float[] x, int xo) {
        MemorySegment seg = m.segment();
        long row = (long) o * (m.cols / 32) * 34;
        float s = 0f;
        for (int b = 0; b < m.cols / 32; b++) {
            long at = row + 34L * b;
            float d = Float.float16ToFloat(seg.get(LE_SHORT, at)), t = 0f;
            for (int j = 0; j < 32; j++) t = Math.fma(x[xo + 32 * b + j], seg.get(ValueLayout.JAVA_BYTE, at + 2 + j), t);
            s = Math.fma(t, d, s);
        }
        return s;
    }

    /** Several products in one dispatch equal each product alone, bit for bit. */
    @Test
    void manyProductsInOneDispatchEqualEachAlone() {
        SplittableRandom r = new SplittableRandom(5);
        int in = 96;
        int[] outs = {64, 40, 200};
        for (int n : new int[]{1, 3, 8, 19}) {
            Matrix[] ws = new Matrix[outs.length];
            float[][] ys = new float[outs.length][];
            for (int i = 0; i < outs.length; i++) {
                Matrix[] l = layouts(rand(outs[i] * in, r), outs[i], in);
                ws[i] = l[i % 3 == 0 ? 2 : i % 3 == 1 ? 0 : 4];   // bf16 mapped, heap, q8
                ys[i] = new float[n * outs[i]];
            }
            float[] x = rand(n * in, r);
            MatMul.xWtMany(x, n, ws, ys);
            for (int i = 0; i < outs.length; i++) {
                float[] alone = new float[n * outs[i]];
                MatMul.xWt(x, 0, n, ws[i], alone, 0, false);
                for (int j = 0; j < alone.length; j++) {
                    assertEquals(Float.floatToRawIntBits(alone[j]), Float.floatToRawIntBits(ys[i][j]), "matrix " + i + " n=" + n + " value " + j);
                }
            }
        }
    }

    /** A block of outputs (a slice of the output head) equals the same columns of the whole product, bit for bit. */
    @Test
    void outputRangeEqualsTheSameColumnsOfTheWholeProduct() {
        SplittableRandom r = new SplittableRandom(9);
        int in = 64, out = 150;
        for (Matrix m : layouts(rand(out * in, r), out, in)) {
            if (m == null) continue;
            for (int n : new int[]{1, 9, 20}) {
                float[] x = rand(n * in, r), full = new float[n * out];
                MatMul.xWt(x, 0, n, m, full, 0, false);
                for (int[] rg : new int[][]{{0, 150}, {32, 100}, {64, 150}, {96, 97}}) {
                    int o0 = rg[0], o1 = rg[1], w = o1 - o0;
                    float[] y = new float[3 + n * w];
                    MatMul.xWtRange(x, 0, n, m, o0, o1, y, 3);
                    for (int i = 0; i < n; i++)
                        for (int o = o0; o < o1; o++)
                            assertEquals(Float.floatToRawIntBits(full[i * out + o]), Float.floatToRawIntBits(y[3 + i * w + o - o0]),
                                    m.dtype + (m.onHeap() ? " heap" : " mapped") + " n=" + n + " range " + o0 + ".." + o1 + " row " + i + " out " + o);
                }
            }
        }
        assertThrows(IllegalArgumentException.class, () -> MatMul.xWtRange(new float[64], 0, 1, Matrix.heap(40, 64, new float[40 * 64]), 5, 20, new float[15], 0));
    }
}
