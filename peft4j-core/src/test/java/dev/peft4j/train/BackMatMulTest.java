package dev.peft4j.train;

import dev.peft4j.tensor.DType;
import dev.peft4j.tensor.Matrix;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** The tiled backward products against plain double-precision loops, on shapes with every kind of tail. */
class BackMatMulTest {
    final Random rnd = new Random(7);

    float[] rand(int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rnd.nextGaussian();
        return a;
    }

    @Test
    void dxAndDwMatchPlainLoops() {
        int[][] shapes = {{7, 37, 10}, {64, 64, 128}, {69, 130, 67}, {5, 3, 4}, {130, 256, 9}, {401, 200, 70}, {197, 64, 1}};
        for (int[] s : shapes) {
            int n = s[0], in = s[1], out = s[2];
            float[] w = rand(out * in), dy = rand(n * out), x = rand(n * in);
            float[] dx = rand(n * in), dW = rand(out * in);
            float[] dx0 = dx.clone(), dW0 = dW.clone();
            BackMatMul.dx(dy, n, Matrix.heap(out, in, w), dx);
            BackMatMul.dW(dy, x, n, out, in, dW);
            for (int r = 0; r < n; r++) for (int i = 0; i < in; i++) {
                double e = dx0[r * in + i];
                for (int o = 0; o < out; o++) e += (double) dy[r * out + o] * w[o * in + i];
                assertEquals(e, dx[r * in + i], 1e-4 * (1 + Math.abs(e)), "dx " + java.util.Arrays.toString(s));
            }
            for (int o = 0; o < out; o++) for (int i = 0; i < in; i++) {
                double e = dW0[o * in + i];
                for (int r = 0; r < n; r++) e += (double) dy[r * out + o] * x[r * in + i];
                assertEquals(e, dW[o * in + i], 1e-4 * (1 + Math.abs(e)), "dW " + java.util.Arrays.toString(s));
            }
        }
    }

    @Test
    void dxReadsBf16MappedWeights() {
        int n = 9, in = 48, out = 70;
        float[] w = rand(out * in), dy = rand(n * out);
        MemorySegment seg = Arena.ofAuto().allocate(2L * out * in);
        float[] wr = new float[w.length];
        for (int i = 0; i < w.length; i++) {
            short b = dev.peft4j.io.SafeTensors.toBf16(w[i]);
            seg.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 2L * i, b);
            wr[i] = Float.intBitsToFloat(b << 16);
        }
        float[] dx = new float[n * in];
        BackMatMul.dx(dy, n, Matrix.mapped(out, in, DType.BF16, seg), dx);
        for (int r = 0; r < n; r++) for (int i = 0; i < in; i++) {
            double e = 0;
            for (int o = 0; o < out; o++) e += (double) dy[r * out + o] * wr[o * in + i];
            assertEquals(e, dx[r * in + i], 1e-4 * (1 + Math.abs(e)));
        }
    }
}
