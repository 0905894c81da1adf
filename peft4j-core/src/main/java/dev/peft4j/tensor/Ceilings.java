package dev.peft4j.tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/**
 * This machine's ceilings, measured in the running JVM with the same threads ({@link Parallel}) the kernels use: the read
 * bandwidth (a Vector API sum over a large off-heap buffer, every thread streaming its own part) and the float32 FMA peak
 * (a Vector API loop of independent FMA chains, every thread). Benchmarks divide their throughputs by these figures, so a
 * result carries the limit it was measured against.
 */
public final class Ceilings {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    /** The two ceilings: bytes/s read from memory, float32 FLOP/s of fused multiply-adds (2 FLOPs each). */
    public record Result(double readBytesPerS, double fmaFlopPerS, long bufferBytes, int threads) {}

    private Ceilings() {}

    /** Measures both ceilings (about 2 s): best of {@code passes} reads of a {@code bufferBytes} buffer, best of 5 FMA runs. */
    public static Result measure(long bufferBytes, int passes) {
        return new Result(readBandwidth(bufferBytes, passes), fmaPeak(), bufferBytes, Parallel.threads());
    }

    /**
     * A read-bandwidth meter that keeps its buffer (off-heap, pre-faulted, on huge pages where the system gives them, as the
     * packed weights are), so a benchmark can measure the bandwidth right beside each of its runs: on a shared host the
     * bandwidth drifts from minute to minute, and a fraction means something only against the ceiling of the same moment.
     */
    public static final class Meter implements AutoCloseable {
        private static final long CHUNK = 4L << 20;
        private final Arena arena = Arena.ofShared();
        /** The regions read by a pass: (segment, from, to) in chunks of at most 4 MiB. */
        private final java.util.List<MemorySegment> segs = new java.util.ArrayList<>();
        private final java.util.List<long[]> ranges = new java.util.ArrayList<>();
        private long n;
        private final float[] sink = new float[Parallel.threads()];

        public Meter(long bufferBytes) {
            long b = Math.max(64L * L * 4, bufferBytes / (64L * L * 4) * (64L * L * 4));
            MemorySegment seg = NativeMemory.allocate(b, arena);
            for (long o = 0; o < b; o += 4096) seg.set(ValueLayout.JAVA_FLOAT_UNALIGNED, o, 1f);   // fault every page in now
            add(seg);
            pass();   // compile the loop
        }

        /**
         * A meter that reads the packed copies of these (mapped) matrices themselves: the very bytes a decoding step
         * streams, wherever the system placed them, so the decode fraction compares like with like.
         */
        public Meter(java.util.List<Matrix> matrices) {
            java.util.Set<Matrix> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
            for (Matrix m : matrices) if (!m.onHeap() && seen.add(m)) add(m.packed().seg);
            pass();
        }

        private void add(MemorySegment seg) {
            int si = segs.size();
            segs.add(seg);
            long size = seg.byteSize() / (4L * L * 4) * (4L * L * 4);   // whole groups of 4 vectors
            for (long o = 0; o < size; o += CHUNK) {
                ranges.add(new long[]{si, o, Math.min(size, o + CHUNK)});
                n += Math.min(size, o + CHUNK) - o;
            }
        }

        /** Bytes/s: the best of {@code passes} full reads of the buffer. */
        public double read(int passes) {
            double best = 0;
            for (int p = 0; p < passes; p++) best = Math.max(best, pass());
            return best;
        }

        private double pass() {
            long t0 = System.nanoTime();
            Parallel.forChunks(ranges.size(), 1, (a, b) -> {
                for (int i = a; i < b; i++) {
                    long[] r = ranges.get(i);
                    float s = sumRange(segs.get((int) r[0]), r[1], r[2]);
                    if (Float.isNaN(s)) sink[0] += s;
                }
            });
            return n / ((System.nanoTime() - t0) / 1e9);
        }

        public long bytes() { return n; }

        @Override public void close() { arena.close(); }
    }

    /**
     * What the host takes from the cores: how often, and for how long, a running thread is stopped (by the hypervisor or
     * the system) without having asked to be. {@code fraction}: the share of each thread's time lost in such gaps;
     * {@code perSecond}: gaps per second per thread; {@code medianMicros}: their median length.
     */
    public record HostGaps(double fraction, double perSecond, double medianMicros) {}

    /** Gaps longer than this in a loop of sub-microsecond steps are the host's. */
    static final long GAP_NANOS = 10_000;

    /**
     * Measures {@link HostGaps} for about {@code seconds}: every kernel thread runs a fixed step of arithmetic (about 0.1 µs)
     * over and over, reading the clock after each, and a step that took more than {@value #GAP_NANOS} ns was interrupted. A
     * product that both threads share waits for the later of them, so on a host that stops each core for 20-80 µs a
     * thousand times a second, small products lose more than the share of time the host takes.
     */
    public static HostGaps hostGaps(double seconds) {
        int threads = Parallel.threads();
        long span = (long) (seconds * 1e9);
        long[][] gaps = new long[threads][];
        int[] counts = new int[threads];
        gapLoop(20_000_000L, new long[16]);   // compile the loop first
        Parallel.forRange(threads, 1, (a, b) -> {
            for (int t = a; t < b; t++) {
                long[] g = new long[1 << 16];
                counts[t] = gapLoop(span, g);
                gaps[t] = g;
            }
        });
        long lost = 0;
        int n = 0;
        for (int t = 0; t < threads; t++) n += counts[t];
        long[] all = new long[n];
        for (int t = 0, k = 0; t < threads; t++) {
            for (int i = 0; i < counts[t]; i++) {
                lost += gaps[t][i];
                all[k++] = gaps[t][i];
            }
        }
        java.util.Arrays.sort(all);
        return new HostGaps(lost / (threads * (double) span), n / (threads * seconds), n == 0 ? 0 : all[n / 2] / 1e3);
    }

    /** Runs steps for {@code span} ns; records the length of every step that took more than {@link #GAP_NANOS} ns. */
    private static int gapLoop(long span, long[] gaps) {
        double x = 1;
        int n = 0;
        long start = System.nanoTime(), prev = start;
        while (true) {
            for (int i = 0; i < 64; i++) x = x * 1.0000001 + 1e-9;
            long now = System.nanoTime(), d = now - prev;
            prev = now;
            if (d > GAP_NANOS && n < gaps.length) gaps[n++] = d;
            if (now - start > span) break;
        }
        gapSink = x;
        return n;
    }

    private static volatile double gapSink;

    /** Read bandwidth in bytes/s: the best of {@code passes} full reads of an off-heap buffer (never in the caches). */
    public static double readBandwidth(long bytes, int passes) {
        try (Meter m = new Meter(bytes)) {
            return m.read(passes);
        }
    }

    private static float sumRange(MemorySegment seg, long from, long to) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        ByteOrder bo = ByteOrder.nativeOrder();
        long step = 4L * L;
        for (long o = from; o < to; o += 4 * step) {
            a0 = a0.add(FloatVector.fromMemorySegment(F, seg, o, bo));
            a1 = a1.add(FloatVector.fromMemorySegment(F, seg, o + step, bo));
            a2 = a2.add(FloatVector.fromMemorySegment(F, seg, o + 2 * step, bo));
            a3 = a3.add(FloatVector.fromMemorySegment(F, seg, o + 3 * step, bo));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    }

    /**
     * float32 FMA peak in FLOP/s over all threads: the best of several runs of 12 independent FMA chains per thread. The peak
     * is a property of the cores, not of the moment, so a run in which the threads did not all get their cores (a
     * neighbour on the host, a thread scheduled late) is not believed: runs go on (up to about 3 s) until the best of them
     * reaches {@code threads} times the best single-thread rate measured beside them, within 20%.
     */
    public static double fmaPeak() {
        int threads = Parallel.threads();
        final long iters = 200_000_000L / Math.max(1, L / 4);
        float[] sink = new float[threads];
        for (int i = 0; i < 50; i++) sink[0] += fmaChains(20_000, 1f);   // JIT warm-up: C2 must compile the loop
        double best = 0, single = 0;
        long deadline = System.nanoTime() + 3_000_000_000L;
        for (int run = 0; run < 40; run++) {
            if (run % 3 == 2) {   // one thread alone, as a reference for what every core can do
                long t0 = System.nanoTime();
                sink[0] += fmaChains(iters / 2, 2f);
                single = Math.max(single, 2.0 * L * 12 * (iters / 2) / ((System.nanoTime() - t0) / 1e9));
                continue;
            }
            long t0 = System.nanoTime();
            Parallel.forRange(threads, 1, (a, b) -> {
                for (int t = a; t < b; t++) sink[t] += fmaChains(iters, 1f + t);
            });
            double flops = 2.0 * L * 12 * iters * threads / ((System.nanoTime() - t0) / 1e9);
            if (run > 0) best = Math.max(best, flops);
            if (run >= 6 && (best >= 0.8 * threads * single || System.nanoTime() > deadline)) break;
        }
        if (Float.isNaN(sink[0])) System.err.print("");
        return best;
    }

    /** 12 independent FMA chains (enough to cover the FMA latency of two pipes), {@code iters} steps each. */
    static float fmaChains(long iters, float seed) {
        FloatVector m = FloatVector.broadcast(F, 0.999999f), c = FloatVector.broadcast(F, 1e-7f);
        FloatVector a0 = FloatVector.broadcast(F, seed), a1 = a0.add(1f), a2 = a0.add(2f), a3 = a0.add(3f);
        FloatVector a4 = a0.add(4f), a5 = a0.add(5f), a6 = a0.add(6f), a7 = a0.add(7f);
        FloatVector a8 = a0.add(8f), a9 = a0.add(9f), a10 = a0.add(10f), a11 = a0.add(11f);
        for (long i = 0; i < iters; i++) {
            a0 = a0.fma(m, c); a1 = a1.fma(m, c); a2 = a2.fma(m, c); a3 = a3.fma(m, c);
            a4 = a4.fma(m, c); a5 = a5.fma(m, c); a6 = a6.fma(m, c); a7 = a7.fma(m, c);
            a8 = a8.fma(m, c); a9 = a9.fma(m, c); a10 = a10.fma(m, c); a11 = a11.fma(m, c);
        }
        return a0.add(a1).add(a2).add(a3).add(a4).add(a5).add(a6).add(a7).add(a8).add(a9).add(a10).add(a11)
                .reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    }
}
