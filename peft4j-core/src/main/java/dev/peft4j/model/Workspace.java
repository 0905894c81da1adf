package dev.peft4j.model;

/**
 * Preallocated activations of one small forward step (decoding: one row per sequence, or a few sequences advancing together),
 * kept with the first sequence's {@link KVCache} and reused by every later step of the same shape, so the decode loop
 * allocates no per-token arrays. Larger steps (prefill, scoring, training) allocate their own arrays: their cost is spread
 * over many rows, and a cache must not keep megabytes of prefill buffers alive.
 * <p>
 * The hidden states {@link Gemma3Model#forward} returns for such a step live here: they are valid until the next forward
 * step on the same cache.
 */
final class Workspace {
    /** Forward steps of at most this many rows use a workspace. */
    static final int MAX_ROWS = 8;

    final int rows;
    final int[] pos, tok;
    final float[] x, h, q, k, v, att, o, g, u;

    Workspace(Gemma3Config c, int rows) {
        int H = c.hidden(), D = c.headDim(), I = c.intermediate();
        this.rows = rows;
        pos = new int[rows];
        tok = new int[rows];
        x = new float[rows * H];
        h = new float[rows * H];
        q = new float[rows * c.heads() * D];
        k = new float[rows * c.kvHeads() * D];
        v = new float[rows * c.kvHeads() * D];
        att = new float[rows * c.heads() * D];
        o = new float[rows * H];
        g = new float[rows * I];
        u = new float[rows * I];
    }

    /** The workspace for a step of {@code rows} rows on this cache (made or remade when the shape changes), or null. */
    static Workspace of(KVCache cache, Gemma3Config c, int rows) {
        if (rows > MAX_ROWS) return null;
        Workspace w = cache.workspace;
        if (w == null || w.rows != rows) cache.workspace = w = new Workspace(c, rows);
        return w;
    }
}
