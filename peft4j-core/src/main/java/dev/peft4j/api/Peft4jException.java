package dev.peft4j.api;

/**
 * A mistake in what the caller gave: a missing or malformed file, an unknown task, an option out of range. The message is one
 * line that names the file, field or argument and what was expected, fit to show to a user as it is.
 */
public class Peft4jException extends RuntimeException {
    /**
     * Sets one line naming the file, field or argument and what was expected.
     *
     * @param message one line naming the file, field or argument and what was expected
     */
    public Peft4jException(String message) { super(message); }

    /**
     * An error with its cause.
     *
     * @param message one line naming the file, field or argument and what was expected
     * @param cause   the underlying exception
     */
    public Peft4jException(String message, Throwable cause) { super(message, cause); }
}
