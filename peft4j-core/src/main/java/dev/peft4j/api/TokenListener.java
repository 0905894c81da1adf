package dev.peft4j.api;

/**
 * Receives generated text as it is produced (streaming). Concatenating every {@code text} gives exactly
 * {@link Generation#text()}: text that might be the start of a stop string, or an incomplete character whose bytes come as
 * several tokens, is held back until it is certain, so a listener never sees text that the result leaves out.
 */
@FunctionalInterface
public interface TokenListener {
    /**
     * Called once per generated token, on the generating thread, and once more with {@code tokenId} -1 if text was held back
     * at the end.
     *
     * @param tokenId the new token's id, or -1 for the final call that delivers held-back text
     * @param text    the text this call makes visible (may be empty)
     */
    void onToken(int tokenId, String text);
}
