package dev.peft4j.serve;

/**
 * A request the engine refuses, with a kind the HTTP layer maps to a status: {@code BAD_REQUEST} (400), {@code CONTEXT_LENGTH}
 * (400, OpenAI's {@code context_length_exceeded}), {@code NOT_FOUND} (404: unknown model), {@code OVERLOADED} (503, retry
 * later), {@code SHUTTING_DOWN} (503), {@code FORBIDDEN} (403).
 */
public final class ServeException extends RuntimeException {
    public enum Kind { BAD_REQUEST, CONTEXT_LENGTH, NOT_FOUND, OVERLOADED, SHUTTING_DOWN, FORBIDDEN }

    public final Kind kind;
    /** The request field at fault, or null. */
    public final String param;

    public ServeException(Kind kind, String param, String message) {
        super(message);
        this.kind = kind;
        this.param = param;
    }
}
