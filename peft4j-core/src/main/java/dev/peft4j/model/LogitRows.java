package dev.peft4j.model;

/**
 * Logits rows of a batch of sequences ({@link CausalLM#logitRows}), held in a few large blocks: row t of sequence i (the
 * distribution after its position {@code from[i] + t}) is the {@link #vocab()} floats of {@link #array}(i, t) starting at
 * {@link #offset}(i, t). Sequences that share a prefix share the rows of that prefix (one row, computed once), so rows are
 * read in place instead of being copied per sequence.
 */
public final class LogitRows {
    private final int vocab;
    private final float[][] blocks;
    private final int[][] block, row;

    /**
     * @param blocks row-major logits blocks [rows, vocab]
     * @param block  per sequence and row: the block holding it
     * @param row    per sequence and row: its row in that block
     */
    public LogitRows(int vocab, float[][] blocks, int[][] block, int[][] row) {
        this.vocab = vocab;
        this.blocks = blocks;
        this.block = block;
        this.row = row;
    }

    /** One block per sequence: sequence i's rows are {@code perSequence.get(i)} as {@link CausalLM#logits} returns them. */
    public static LogitRows of(int vocab, java.util.List<float[]> perSequence) {
        int n = perSequence.size();
        float[][] blocks = perSequence.toArray(new float[0][]);
        int[][] block = new int[n][], row = new int[n][];
        for (int i = 0; i < n; i++) {
            int r = blocks[i].length / Math.max(1, vocab);
            block[i] = new int[r];
            row[i] = new int[r];
            for (int t = 0; t < r; t++) { block[i][t] = i; row[i][t] = t; }
        }
        return new LogitRows(vocab, blocks, block, row);
    }

    public int vocab() { return vocab; }

    /** Number of sequences. */
    public int sequences() { return block.length; }

    /** Number of rows of sequence i. */
    public int rows(int i) { return block[i].length; }

    /** The array holding row t of sequence i (read it, do not modify it: other sequences may share the row). */
    public float[] array(int i, int t) { return blocks[block[i][t]]; }

    /** Where row t of sequence i starts in {@link #array}(i, t). */
    public int offset(int i, int t) { return row[i][t] * vocab; }

    /** Sequence i's rows copied into one new array [rows(i), vocab]. */
    public float[] copy(int i) {
        float[] out = new float[block[i].length * vocab];
        for (int t = 0; t < block[i].length; t++) System.arraycopy(array(i, t), offset(i, t), out, t * vocab, vocab);
        return out;
    }
}
