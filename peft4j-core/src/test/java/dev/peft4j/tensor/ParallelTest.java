package dev.peft4j.tensor;

import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicBoolean;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class ParallelTest {
    @Test
    void aFailingCallerPartStillWaitsForTheWorkers() {
        assumeTrue(Parallel.threads() >= 2, "needs a worker thread");
        AtomicBoolean workerDone = new AtomicBoolean();
        RuntimeException e = assertThrows(RuntimeException.class, () -> Parallel.forRange(2, 1, (from, to) -> {
            if (from == 0) throw new IllegalStateException("caller part fails");
            try { Thread.sleep(200); } catch (InterruptedException ignored) { }
            workerDone.set(true);
        }));
        assertEquals("caller part fails", e.getMessage());
        assertTrue(workerDone.get(), "the worker's part finished before forRange returned");
    }

    /**
     * forChunks hands out every item exactly once, in claims of at most {@code chunk} items, and (guided) the claims shrink
     * towards the end of each thread's region, down to single items, so the threads finish together.
     */
    @Test
    void chunksCoverEveryItemOnceAndShrinkTowardsTheEnd() {
        for (int n : new int[]{1, 2, 3, 7, 16, 33, 64, 100, 1000}) {
            for (int chunk : new int[]{1, 2, 4, 8, 13, 1000}) {
                java.util.concurrent.atomic.AtomicIntegerArray seen = new java.util.concurrent.atomic.AtomicIntegerArray(n);
                java.util.List<int[]> claims = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
                Parallel.forChunks(n, chunk, (from, to) -> {
                    claims.add(new int[]{from, to});
                    for (int i = from; i < to; i++) seen.incrementAndGet(i);
                });
                for (int i = 0; i < n; i++) assertEquals(1, seen.get(i), "n=" + n + " chunk=" + chunk + " item " + i);
                for (int[] c : claims) assertTrue(c[1] > c[0] && (n <= chunk || c[1] - c[0] <= chunk), "n=" + n + " chunk=" + chunk + " claim " + c[0] + ".." + c[1]);
                if (Parallel.threads() >= 2 && n >= 4 * chunk && chunk >= 4)
                    assertTrue(claims.stream().anyMatch(c -> c[1] - c[0] == 1), "n=" + n + " chunk=" + chunk + ": the last claims of a region are single items");
            }
        }
    }
}
