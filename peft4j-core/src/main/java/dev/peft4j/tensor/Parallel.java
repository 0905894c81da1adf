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
            WORKERS[i] = new Worker(i);
            Thread t = new KernelThread(WORKERS[i], "peft4j-kernel-" + (i + 1));
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

    /** True inside a parallel loop (a kernel thread, or the calling thread running its part), where nested parallel calls run inline. */
    public static boolean inKernelThread() { return Thread.currentThread() instanceof KernelThread || Thread.currentThread() == caller; }

    /** The thread running a job's part 0 while the job runs (null otherwise): its nested parallel calls run inline too. */
    private static volatile Thread caller;

    /** Runs body over [0, n) split into contiguous parts of at least {@code grain} items, one per thread. */
    public static void forRange(int n, int grain, RangeBody body) {
        int parts = Math.min(THREADS, Math.max(1, n / Math.max(1, grain)));
        if (parts <= 1 || inKernelThread()) {
            body.run(0, n);
            return;
        }
        run(new Job(body, n, parts, 0));
    }

    /**
     * Runs body over [0, n) in chunks of at most {@code chunk} items that the threads claim as they go: for bodies whose
     * items are independent (a chunk's result must not depend on which thread runs it or on the other chunks). Thread p
     * owns region p of [0, n) (a contiguous 1/threads of the items) and claims its chunks in order, then claims what is left
     * of the other regions: every thread streams one sequential range while all are running, and a thread that the system
     * does not schedule delays the call by at most the chunk it holds, instead of its whole part. Claims shrink towards a
     * region's end (half of what is left, down to one item: guided self-scheduling), so the threads finish together: with
     * whole chunks to the end, the caller waited on the other thread's last chunk, up to an eighth of a small product.
     */
    public static void forChunks(int n, int chunk, RangeBody body) {
        chunk = Math.max(1, chunk);
        if (n <= chunk || THREADS == 1 || inKernelThread()) {
            body.run(0, n);
            return;
        }
        run(new Job(body, n, THREADS, chunk));
    }

    /**
     * Says that the caller runs serial work for a while (say a millisecond or more: sampling, handing tokens to other
     * threads): the workers park now instead of spinning, so other threads of the process (an HTTP server's) get their
     * cores meanwhile. The next parallel call wakes them; results are unaffected.
     */
    public static void rest() {
        resting = true;
    }

    /** Set by {@link #rest()}, cleared by the next call: spinning workers park at once. */
    private static volatile boolean resting;

    private static void run(Job j) {
        synchronized (LOCK) {
            resting = false;
            caller = Thread.currentThread();
            job = j;   // volatile: publishes the job to the workers
            for (int p = 1; p < j.parts; p++) {
                Worker w = WORKERS[p - 1];
                if (w.parked) LockSupport.unpark(w.thread);
            }
            try {
                j.work(0);
            } finally {   // also when the caller's part throws: no worker may still be writing once this returns
                int spins = 0;
                while (!j.finished()) {   // spin briefly, then give the core away (another process may need it)
                    if (++spins < 1 << 12) Thread.onSpinWait();
                    else if (spins < 1 << 14) Thread.yield();
                    else LockSupport.parkNanos(20_000);
                }
                job = null;
                caller = null;
            }
            if (j.failure != null) throw j.failure;
        }
    }

    private static final java.lang.invoke.VarHandle CURSOR = java.lang.invoke.MethodHandles.arrayElementVarHandle(int[].class);

    /** One call: static parts (chunk 0, part p of parts run by thread p) or claimed chunks. */
    private static final class Job {
        final RangeBody body;
        final int n, parts, chunk;
        /** Units of work: parts (static) or items (claimed); {@link #done} counts them as they finish. */
        final int total;
        final AtomicInteger done = new AtomicInteger();
        /** Per region, the next item to claim. */
        final int[] cursor;
        volatile RuntimeException failure;

        Job(RangeBody body, int n, int parts, int chunk) {
            this.body = body;
            this.n = n;
            this.parts = parts;
            this.chunk = chunk;
            this.total = chunk == 0 ? parts : n;
            this.cursor = chunk == 0 ? null : new int[parts];
            if (cursor != null) for (int r = 0; r < parts; r++) cursor[r] = regionStart(r);
        }

        /** Region r: items [regionStart(r), regionStart(r + 1)), thread r's own. */
        int regionStart(int r) { return (int) ((long) n * r / parts); }

        /** Thread p's share: its static part, or chunks until none is left. */
        void work(int p) {
            if (chunk == 0) {
                if (p >= parts) return;
                try {
                    body.run((int) ((long) n * p / parts), (int) ((long) n * (p + 1) / parts));
                } catch (RuntimeException | Error e) {
                    fail(e);
                } finally {
                    done.incrementAndGet();
                }
                return;
            }
            // its own region first, in order (one sequential stream per thread, as a static split would read), then what
            // is left of the others' (a thread the system keeps off its core is covered by the others)
            for (int i = 0; i < parts; i++) {
                int r = (p + i) % parts, end = regionStart(r + 1);
                for (int c; (c = (int) CURSOR.getVolatile(cursor, r)) < end; ) {
                    int size = Math.max(1, Math.min(chunk, (end - c) / 2));
                    if (!CURSOR.compareAndSet(cursor, r, c, c + size)) continue;
                    try {
                        if (failure == null) body.run(c, c + size);
                    } catch (RuntimeException | Error e) {
                        fail(e);
                    } finally {
                        done.addAndGet(size);
                    }
                }
            }
        }

        boolean finished() { return done.get() >= total; }

        private synchronized void fail(Throwable e) {
            if (failure == null) failure = e instanceof RuntimeException r ? r : new RuntimeException(e);
        }
    }

    /** The current job (a new object each time; null when none). */
    private static volatile Job job;

    /** Kernel threads run nested parallel loops inline. */
    private static final class KernelThread extends Thread {
        KernelThread(Runnable r, String name) { super(r, name); }
    }

    /**
     * A worker spins on the job epoch for a while after each job (decoding dispatches a few hundred jobs per token, a few
     * microseconds apart), then parks until the next one unparks it.
     */
    private static final class Worker implements Runnable {
        final int index;   // runs part index + 1
        volatile boolean parked;
        Thread thread;

        Worker(int index) { this.index = index; }

        @Override
        public void run() {
            Job seen = null;
            while (true) {
                Job j = job;
                int spins = 0;
                while (j == seen || j == null) {
                    if (++spins < 50_000 && !resting) {
                        Thread.onSpinWait();
                    } else {
                        parked = true;
                        if (job == j) LockSupport.park(this);
                        parked = false;
                        spins = 0;
                    }
                    j = job;
                }
                seen = j;
                j.work(index + 1);
            }
        }
    }
}
