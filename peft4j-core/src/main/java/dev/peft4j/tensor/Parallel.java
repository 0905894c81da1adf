package dev.peft4j.tensor;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A tiny fork-join for kernels: splits [0, n) into chunks run on a fixed set of worker threads (all cores by default,
 * {@code -Dpeft4j.threads=N} or env PEFT4J_THREADS to change). The calling thread works too. Work is statically partitioned,
 * so results never depend on timing: the same thread count gives bit-identical output.
 */
public final class Parallel {
    public interface RangeBody { void run(int from, int to); }

    private static final int THREADS = threadCount();
    private static final Worker[] WORKERS = new Worker[THREADS - 1];
    private static final Object LOCK = new Object();

    static {
        for (int i = 0; i < WORKERS.length; i++) {
            WORKERS[i] = new Worker();
            Thread t = new Thread(WORKERS[i], "peft4j-kernel-" + (i + 1));
            t.setDaemon(true);
            WORKERS[i].thread = t;
            t.start();
        }
    }

    private Parallel() {}

    private static int threadCount() {
        String s = System.getProperty("peft4j.threads", System.getenv("PEFT4J_THREADS"));
        if (s != null && !s.isBlank()) {
            try {
                int n = Integer.parseInt(s.trim());
                if (n >= 1) return n;
            } catch (NumberFormatException ignored) {
                // fall through to the warning
            }
            System.err.println("warning: PEFT4J_THREADS / peft4j.threads = '" + s + "' is not a positive integer; using all cores");
        }
        return Math.max(1, Runtime.getRuntime().availableProcessors());
    }

    public static int threads() { return THREADS; }

    /** Runs body over [0, n) split into contiguous parts of at least {@code grain} items, one per thread. */
    public static void forRange(int n, int grain, RangeBody body) {
        int parts = Math.min(THREADS, Math.max(1, n / Math.max(1, grain)));
        if (parts <= 1 || Thread.currentThread().getName().startsWith("peft4j-kernel")) {
            body.run(0, n);
            return;
        }
        synchronized (LOCK) {
            AtomicInteger pending = new AtomicInteger(parts - 1);
            Thread caller = Thread.currentThread();
            RuntimeException[] failure = new RuntimeException[1];
            for (int p = 1; p < parts; p++) {
                int from = (int) ((long) n * p / parts), to = (int) ((long) n * (p + 1) / parts);
                WORKERS[p - 1].submit(() -> {
                    try {
                        body.run(from, to);
                    } catch (RuntimeException | Error e) {
                        synchronized (failure) { if (failure[0] == null) failure[0] = e instanceof RuntimeException r ? r : new RuntimeException(e); }
                    } finally {
                        if (pending.decrementAndGet() == 0) LockSupport.unpark(caller);
                    }
                });
            }
            try {
                body.run(0, (int) ((long) n / parts));
            } finally {   // also when the caller's part throws: no worker may still be writing once this returns
                while (pending.get() > 0) {
                    LockSupport.parkNanos(20_000);
                }
            }
            if (failure[0] != null) throw failure[0];
        }
    }

    private static final class Worker implements Runnable {
        volatile Runnable task;
        Thread thread;

        void submit(Runnable r) {
            task = r;
            LockSupport.unpark(thread);
        }

        @Override
        public void run() {
            int spins = 0;
            while (true) {
                Runnable r = task;
                if (r != null) {
                    task = null;
                    r.run();
                    spins = 0;
                } else if (spins < 20_000) {
                    spins++;
                    Thread.onSpinWait();
                } else {
                    LockSupport.parkNanos(200_000);
                }
            }
        }
    }
}
