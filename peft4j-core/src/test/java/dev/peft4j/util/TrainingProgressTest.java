package dev.peft4j.util;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

class TrainingProgressTest {
    final ByteArrayOutputStream buf = new ByteArrayOutputStream();
    final PrintStream out = new PrintStream(buf, true, StandardCharsets.UTF_8);
    final AtomicLong now = new AtomicLong();

    @Test
    void lineShowsStepLossLrRateAndEta() {
        TrainingProgress p = new TrainingProgress(out, 100, 0, false, now::get);
        now.set(10_000_000_000L);                       // 10 s for 25 steps and 5,000 tokens
        assertEquals("step  25/100 [=====>              ]  25.0% | loss 2.3457 | lr 1.00e-04 | 500 tok/s | elapsed 00:10, ETA 00:30",
                p.line(25, 2.34567, 1e-4, 5000, now.get()));
    }

    @Test
    void withoutATerminalPrintsFewFullLines() {
        TrainingProgress p = new TrainingProgress(out, 1000, 0, false, now::get);
        for (int s = 1; s <= 1000; s++) {
            now.addAndGet(10_000_000L);
            p.update(s, 1.0, 1e-3, 100L * s);
        }
        p.close();
        String[] lines = buf.toString(StandardCharsets.UTF_8).split("\n");
        assertEquals(11, lines.length);                  // step 1 and each 10% (100, 200, ..., 1000)
        assertTrue(lines[0].startsWith("step    1/1000"), lines[0]);
        assertTrue(lines[10].startsWith("step 1000/1000 [====================] 100.0%"), lines[10]);
        assertFalse(buf.toString(StandardCharsets.UTF_8).contains("\r"));
    }

    @Test
    void resumedRunCountsRateFromItsOwnSteps() {
        TrainingProgress p = new TrainingProgress(out, 100, 50, false, now::get);
        now.set(5_000_000_000L);                        // 10 steps (51..60) in 5 s -> 40 steps left take 20 s
        assertTrue(p.line(60, 1, 1, 0, now.get()).endsWith("elapsed 00:05, ETA 00:20"));
    }

    @Test
    void onATerminalRedrawsInPlace() {
        TrainingProgress p = new TrainingProgress(out, 3, 0, true, now::get);
        p.update(1, 1, 1, 1);
        now.addAndGet(1_000_000_000L);
        p.message("validation loss 1.5");
        p.update(2, 1, 1, 1);
        now.addAndGet(1_000_000_000L);
        p.update(3, 1, 1, 1);
        p.close();
        String s = buf.toString(StandardCharsets.UTF_8);
        assertTrue(s.startsWith("\rstep 1/3"), s);
        assertTrue(s.contains("validation loss 1.5\n\rstep 1/3"), s);
        assertTrue(s.contains("\rstep 3/3"), s);
        assertTrue(s.endsWith("\n"));
    }
}
