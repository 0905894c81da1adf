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
}
