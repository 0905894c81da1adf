package dev.peft4j.data;

/**
 * A padded batch (right padding to the longest example). {@code attentionMask} is 1 on real tokens and 0 on padding;
 * padding has {@code inputIds = padId} and {@code labels = -100}. {@code epoch} and {@code index} say where in the data
 * order the batch came from.
 */
public record Batch(int[][] inputIds, int[][] labels, int[][] attentionMask, int epoch, int index) {
    public int size() { return inputIds.length; }

    public int seqLen() { return inputIds.length == 0 ? 0 : inputIds[0].length; }

    /** Real (non-pad) tokens in the batch. */
    public int tokens() {
        int n = 0;
        for (int[] m : attentionMask) for (int v : m) n += v;
        return n;
    }

    /** Positions that carry a label (the loss is averaged over these). */
    public int targetTokens() {
        int n = 0;
        for (int[] l : labels) for (int v : l) if (v != Tokenized.IGNORE) n++;
        return n;
    }
}
