package dev.peft4j.util;

/**
 * A mistake in user input (a file, field or argument). The CLI prints only its message, on one line,
 * and exits with a non-zero code; no stack trace. Messages name the file, tensor, field or argument and what was expected.
 */
public class UserException extends RuntimeException {
    public UserException(String message) { super(message); }
    public UserException(String message, Throwable cause) { super(message, cause); }
}
