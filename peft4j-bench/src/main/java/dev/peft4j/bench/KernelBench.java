package dev.peft4j.bench;

import dev.peft4j.tensor.DType;
import dev.peft4j.tensor.MatMul;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.train.BackMatMul;
import dev.peft4j.train.CrossEntropy;
import dev.peft4j.train.Kernels;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * The kernels at Gemma 3 270M shapes (hidden 640, MLP 2048, vocabulary 262,144), all cores unless PEFT4J_THREADS says
 * otherwise. Each group reports time per operation; the ceilings beside them are measured in the same JVM by
 * {@link #ceilingReadBandwidth} (bytes read per second by a Vector API sum over a 1 GiB off-heap buffer, one pass per op) and
 * {@link #ceilingFmaPeak} (12 independent FMA chains per thread; 2·16·12·iterations FLOP per op per thread).
 * <ul>
 *   <li>{@code mvBf16} / {@code mvQ8}: one row against the whole 270M's worth of matrix rows of 640 (the decode product: a
 *       weight stream of ~536 MB in bf16, ~285 MB in Q8_0); bytes/s = weight bytes / time.</li>
 *   <li>{@code decodeRows8Bf16} / {@code decodeRows8Q8}: eight rows against the same weights (batched decoding).</li>
 *   <li>{@code mm512}: 512 rows x [2048, 640] bf16 (prefill's gate/up product): 2·512·640·2048 FLOP.</li>
 *   <li>{@code backDx512} / {@code backDw512}: the two backward products at that shape.</li>
 *   <li>{@code attentionBackward512}: one 512-token sequence, 4 heads x 256, 1 kv head.</li>
 *   <li>{@code crossEntropyChunk64}: loss and gradient of 64 rows against the full bf16 head.</li>
 * </ul>
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx3g"})
public class KernelBench {
    static final int H = 640, MLP = 2048, V = 262144;
    /** Rows of 640 that make the 270M's bf16 bytes (536,084,480 / 1280). */
    static final int DECODE_ROWS = 418816;

    Matrix bigBf16, bigQ8, up;
    float[] x1, x8, y8, x512, y512, dy512, dx512, dw512;
    float[] q, k, v, dOut, dq, dk, dv;
    float[] hs, dhs;
    int[] targets;
    Matrix head;
    MemorySegment bwBuf;
    float[] fmaOut = new float[16];

    static float[] rand(int n, SplittableRandom r) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (r.nextDouble() * 2 - 1);
        return a;
    }

    static Matrix bf16(int rows, int cols, SplittableRandom r, Arena arena) {
        MemorySegment s = arena.allocate(2L * rows * cols, 64);
        ValueLayout.OfShort le = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        for (long i = 0; i < (long) rows * cols; i++) s.set(le, 2 * i, (short) (Float.floatToRawIntBits((float) (r.nextGaussian() * 0.05)) >>> 16));
        return Matrix.mapped(rows, cols, DType.BF16, s);
    }

    @Setup
    public void setup() {
        SplittableRandom r = new SplittableRandom(1);
        Arena arena = Arena.ofAuto();
        bigBf16 = bf16(DECODE_ROWS, H, r, arena);
        bigQ8 = Matrix.q8(bigBf16, arena);
        up = Matrix.mapped(MLP, H, DType.BF16, sliceOf(bigBf16, MLP));
        head = Matrix.mapped(V, H, DType.BF16, sliceOf(bigBf16, V));
        x1 = rand(H, r);
        x8 = rand(8 * H, r);
        y8 = new float[8 * DECODE_ROWS];
        x512 = rand(512 * H, r);
        y512 = new float[512 * MLP];
        dy512 = rand(512 * MLP, r);
        dx512 = new float[512 * H];
        dw512 = new float[MLP * H];
        int n = 512, nH = 4, D = 256;
        q = rand(n * nH * D, r); k = rand(n * D, r); v = rand(n * D, r); dOut = rand(n * nH * D, r);
        dq = new float[q.length]; dk = new float[k.length]; dv = new float[v.length];
        hs = rand(64 * H, r);
        dhs = new float[64 * H];
        targets = new int[64];
        for (int i = 0; i < 64; i++) targets[i] = r.nextInt(V);
        bwBuf = arena.allocate(1L << 30, 64);
    }


    private static MemorySegment sliceOf(Matrix m, int rows) {
        try {
            var f = Matrix.class.getDeclaredMethod("segment");
            f.setAccessible(true);
            return ((MemorySegment) f.invoke(m)).asSlice(0, 2L * rows * m.cols);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(e);
        }
    }

    @Benchmark public float[] mvBf16() { MatMul.xWt(x1, 0, 1, bigBf16, y8, 0, false); return y8; }
    @Benchmark public float[] mvQ8() { MatMul.xWt(x1, 0, 1, bigQ8, y8, 0, false); return y8; }
    @Benchmark public float[] decodeRows8Bf16() { MatMul.xWt(x8, 0, 8, bigBf16, y8, 0, false); return y8; }
    @Benchmark public float[] decodeRows8Q8() { MatMul.xWt(x8, 0, 8, bigQ8, y8, 0, false); return y8; }
    @Benchmark public float[] mm512() { MatMul.xWt(x512, 0, 512, up, y512, 0, false); return y512; }
    @Benchmark public float[] backDx512() { java.util.Arrays.fill(dx512, 0f); BackMatMul.dx(dy512, 512, up, dx512); return dx512; }
    @Benchmark public float[] backDw512() { java.util.Arrays.fill(dw512, 0f); BackMatMul.dW(dy512, x512, 512, MLP, H, dw512); return dw512; }

    @Benchmark public float[] attentionBackward512() {
        Kernels.attentionBackward(q, k, v, dOut, dq, dk, dv, new int[]{0}, new int[]{512}, 4, 1, 256, 1f / 16, 0);
        return dq;
    }

    @Benchmark public double crossEntropyChunk64() {
        java.util.Arrays.fill(dhs, 0f);
        return CrossEntropy.lossAndGrad(hs, H, targets, head, 30.0, 1f, dhs, null);
    }

    /** The read-bandwidth ceiling: one pass over 1 GiB, summed with the Vector API on all kernel threads. */
    @Benchmark public float ceilingReadBandwidth() {
        final long n = bwBuf.byteSize();
        float[] parts = new float[dev.peft4j.tensor.Parallel.threads()];
        dev.peft4j.tensor.Parallel.forRange(parts.length, 1, (t0, t1) -> {
            for (int t = t0; t < t1; t++) parts[t] = sum(bwBuf, n * t / parts.length, n * (t + 1) / parts.length);
        });
        float s = 0;
        for (float p : parts) s += p;
        return s;
    }

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    private static float sum(MemorySegment s, long from, long to) {
        FloatVector a = FloatVector.zero(F), b = a, c = a, d = a;
        long step = 4L * F.length();
        for (long o = from; o + 4 * step <= to; o += 4 * step) {
            a = a.add(FloatVector.fromMemorySegment(F, s, o, ByteOrder.LITTLE_ENDIAN));
            b = b.add(FloatVector.fromMemorySegment(F, s, o + step, ByteOrder.LITTLE_ENDIAN));
            c = c.add(FloatVector.fromMemorySegment(F, s, o + 2 * step, ByteOrder.LITTLE_ENDIAN));
            d = d.add(FloatVector.fromMemorySegment(F, s, o + 3 * step, ByteOrder.LITTLE_ENDIAN));
        }
        return a.add(b).add(c).add(d).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    }

    /** The FMA ceiling: 10^7 iterations of 12 independent FMA chains per kernel thread (2·L·12·10^7 FLOP per thread). */
    @Benchmark public float ceilingFmaPeak() {
        float[] parts = new float[dev.peft4j.tensor.Parallel.threads()];
        dev.peft4j.tensor.Parallel.forRange(parts.length, 1, (t0, t1) -> {
            for (int t = t0; t < t1; t++) parts[t] = fmaChains(10_000_000);
        });
        return parts[0];
    }

    private static float fmaChains(int iters) {
        FloatVector a0 = FloatVector.broadcast(F, 1f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
        FloatVector m = FloatVector.broadcast(F, 0.999999f), c = FloatVector.broadcast(F, 1e-7f);
        for (int i = 0; i < iters; i++) {
            a0 = a0.fma(m, c); a1 = a1.fma(m, c); a2 = a2.fma(m, c); a3 = a3.fma(m, c); a4 = a4.fma(m, c); a5 = a5.fma(m, c);
            a6 = a6.fma(m, c); a7 = a7.fma(m, c); a8 = a8.fma(m, c); a9 = a9.fma(m, c); a10 = a10.fma(m, c); a11 = a11.fma(m, c);
        }
        return a0.add(a1).add(a2).add(a3).add(a4).add(a5).add(a6).add(a7).add(a8).add(a9).add(a10).add(a11).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    }
}
