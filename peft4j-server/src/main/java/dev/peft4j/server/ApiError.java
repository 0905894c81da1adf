package dev.peft4j.server;

/** An HTTP error in OpenAI's shape: {@code {"error": {"message", "type", "param", "code"}}}. */
final class ApiError extends RuntimeException {
    final int status;
    final String type, param, code;
    final Integer retryAfter;

    ApiError(int status, String type, String param, String code, String message) {
        this(status, type, param, code, message, null);
    }

    ApiError(int status, String type, String param, String code, String message, Integer retryAfter) {
        super(message);
        this.status = status;
        this.type = type;
        this.param = param;
        this.code = code;
        this.retryAfter = retryAfter;
    }

    static ApiError bad(String param, String message) {
        return new ApiError(400, "invalid_request_error", param, null, message);
    }
}
