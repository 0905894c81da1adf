package dev.peft4j.api;

/**
 * The result of {@link Model#generate} or {@link Model#chat}.
 *
 * @param text         the generated text: special tokens left out, and cut before a stop string that ended it
 * @param tokenIds     the generated token ids (including an EOS id, or the tokens that completed a stop string)
 * @param promptTokens tokens of the prompt (BOS included)
 * @param finishReason why generation stopped
 */
public record Generation(String text, int[] tokenIds, int promptTokens, FinishReason finishReason) {
    /**
     * The number of generated tokens.
     *
     * @return the number of generated tokens
     */
    public int generatedTokens() { return tokenIds.length; }
}
