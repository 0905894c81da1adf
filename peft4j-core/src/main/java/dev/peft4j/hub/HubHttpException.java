package dev.peft4j.hub;

import dev.peft4j.util.UserException;

/** An HTTP error answer of the Hub, with its status and {@code X-Error-Code} (may be null). */
public final class HubHttpException extends UserException {
    private final int status;
    private final String errorCode;

    public HubHttpException(String message, int status, String errorCode) {
        super(message);
        this.status = status;
        this.errorCode = errorCode;
    }

    public int status() { return status; }

    public String errorCode() { return errorCode; }

    /** True for a missing file in an existing repo and revision (a 404 that is not RepoNotFound/RevisionNotFound). */
    public boolean isEntryNotFound() {
        return status == 404 && (errorCode == null || errorCode.equals("EntryNotFound"));
    }
}
