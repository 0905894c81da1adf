package dev.peft4j.data;

/**
 * One encoded training example: {@code inputIds} (BOS first) and {@code labels} of the same length, where
 * {@code labels[i] = inputIds[i]} on the response part (response, template suffix and EOS) and {@link #IGNORE} (-100)
 * on BOS and the prompt. The model predicts {@code labels[i]} at position {@code i - 1} (the usual causal-LM shift,
 * done by the loss, as in Hugging Face).
 */
public record Tokenized(int[] inputIds, int[] labels, int promptLength, boolean truncated) {
    public static final int IGNORE = -100;

    public int length() { return inputIds.length; }

    /** Number of positions with a label (≠ -100). */
    public int targetTokens() {
        int n = 0;
        for (int l : labels) if (l != IGNORE) n++;
        return n;
    }
}
