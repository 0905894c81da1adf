package dev.peft4j.tensor;

import java.util.concurrent.atomic.LongAdder;

/**
 * Time and FLOPs spent in the parallel matrix products since the start, for benchmarks: read before and after a phase, they
 * give the products' own GFLOP/s beside the phase's (the rest of the phase is attention, norms and element-wise work).
 * Time is each call's wall time on its calling thread; nested calls inside another parallel loop are not counted.
 */
public final class ProductStats {
    /** y = x·Wᵀ ({@link MatMul}). */
    public static final ProductStats FORWARD = new ProductStats();
    /** The backward products dx = dy·W and dW += dyᵀ·x (training). */
    public static final ProductStats BACKWARD = new ProductStats();

    private final LongAdder nanos = new LongAdder(), flops = new LongAdder();

    private ProductStats() {}

    public void add(long nanos, long flops) {
        this.nanos.add(nanos);
        this.flops.add(flops);
    }

    public long nanos() { return nanos.sum(); }

    public long flops() { return flops.sum(); }

    /** A reading to subtract from a later one. */
    public record Reading(long nanos, long flops) {
        public Reading since(Reading earlier) { return new Reading(nanos - earlier.nanos, flops - earlier.flops); }

        public double flopPerS() { return nanos == 0 ? 0 : flops / (nanos / 1e9); }

        public double seconds() { return nanos / 1e9; }
    }

    public Reading read() { return new Reading(nanos(), flops()); }
}
