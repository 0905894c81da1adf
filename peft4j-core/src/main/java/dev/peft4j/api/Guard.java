package dev.peft4j.api;

import dev.peft4j.tensor.Parallel;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.io.UncheckedIOException;

/** Boundary helpers of the API: internal user errors become {@link Peft4jException}; the kernel thread count. */
final class Guard {
    private Guard() {}

    interface Body<T> { T run() throws IOException; }

    /** Runs {@code body}, turning the engine's user errors into {@link Peft4jException} and I/O errors into unchecked ones. */
    static <T> T call(Body<T> body) {
        try {
            return body.run();
        } catch (UserException e) {
            throw new Peft4jException(e.getMessage(), e);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Fixes the kernel pool at {@code n} threads (0: leave the default); fails when the pool already runs another count. */
    static synchronized void threads(int n) {
        if (n > 0 && System.getProperty("peft4j.threads") == null) System.setProperty("peft4j.threads", Integer.toString(n));
        int have = Parallel.threads();   // starts the pool on first use
        if (n > 0 && have != n) {
            throw new Peft4jException("threads: the kernel pool of this JVM already runs " + have + " threads (the count is fixed"
                    + " when the first model loads, or by -Dpeft4j.threads / PEFT4J_THREADS); asked for " + n);
        }
    }
}
