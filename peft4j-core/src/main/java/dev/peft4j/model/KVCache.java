package dev.peft4j.model;

import java.util.Arrays;

/**
 * Keys and values of one sequence for every layer. Rows are contiguous in absolute-position order: row i holds position
 * {@code start[l] + i}. Sliding-window layers drop rows no future query can see (they keep the last window−1 rows before
 * appending), so their memory stays bounded by the window; full-attention layers keep everything.
 */
public final class KVCache {
    final int layers, width, window;
    final boolean[] sliding;
    final float[][] k, v;
    final int[] start, count;
    /** Number of positions consumed (including virtual tokens). */
    int length;
    /** Reused activations of small forward steps on this sequence (never copied with the cache). */
    Workspace workspace;
    /** See {@link #compactions()}. */
    private long compactions;

    KVCache(Gemma3Config c) {
        this.layers = c.layers();
        this.width = c.kvHeads() * c.headDim();
        this.window = c.slidingWindow();
        this.sliding = c.sliding().clone();
        this.k = new float[layers][];
        this.v = new float[layers][];
        this.start = new int[layers];
        this.count = new int[layers];
        for (int l = 0; l < layers; l++) {
            k[l] = new float[16 * width];
            v[l] = new float[16 * width];
        }
    }

    private KVCache(KVCache o) {
        layers = o.layers; width = o.width; window = o.window; sliding = o.sliding;
        k = new float[layers][];
        v = new float[layers][];
        start = o.start.clone();
        count = o.count.clone();
        length = o.length;
        for (int l = 0; l < layers; l++) {
            k[l] = Arrays.copyOf(o.k[l], Math.max(16, o.count[l]) * width);
            v[l] = Arrays.copyOf(o.v[l], Math.max(16, o.count[l]) * width);
        }
    }

    public KVCache copy() { return new KVCache(this); }

    /**
     * Prefix tuning: writes n given key/value rows per layer ({@code k[l]}, {@code v[l]}: [n, kvHeads·headDim], used as they
     * are, no RoPE or norm) at positions 0..n−1 of this empty cache; the sequence's tokens then start at position n.
     */
    public void prefill(float[][] k, float[][] v, int n) {
        if (length != 0) throw new IllegalStateException("prefill needs an empty cache");
        for (int l = 0; l < layers; l++) {
            if (k[l].length != n * width || v[l].length != n * width) throw new IllegalArgumentException("layer " + l + ": expected " + n + " x " + width + " values");
            int at = reserve(l, n);
            System.arraycopy(k[l], 0, this.k[l], at * width, n * width);
            System.arraycopy(v[l], 0, this.v[l], at * width, n * width);
            count[l] += n;
        }
        length = n;
    }

    /**
     * A copy holding only the first {@code len} positions (a shared prefix), or null when a sliding layer has already dropped
     * rows that positions after {@code len} would still need.
     */
    public KVCache truncatedCopy(int len) {
        if (len > length) return null;
        for (int l = 0; l < layers; l++) {
            int need = sliding[l] ? Math.max(0, len - window + 1) : 0;
            if (start[l] > need) return null;
        }
        KVCache c = new KVCache(this);
        for (int l = 0; l < layers; l++) c.count[l] = len - c.start[l];
        c.length = len;
        return c;
    }

    public int length() { return length; }

    /**
     * Drops the positions from {@code len} on, in place (a speculative step's rejected draft tokens). Every row a later
     * position can see must still be held: truncating to a length at or after the one before the last append always is
     * (a sliding layer drops rows only before an append, keeping the window's last rows before it).
     */
    public void truncate(int len) {
        if (len < 0 || len > length) throw new IllegalArgumentException("truncate to " + len + " positions: the cache holds " + length);
        for (int l = 0; l < layers; l++) {
            int need = sliding[l] ? Math.max(0, len - window + 1) : 0;
            if (start[l] > need) throw new IllegalStateException("truncate to " + len + ": layer " + l + " has dropped rows from before position " + start[l]);
        }
        for (int l = 0; l < layers; l++) count[l] = len - start[l];
        length = len;
    }

    /** Makes room for t new rows in layer l (dropping invisible rows of sliding layers) and returns the row index to write at. */
    int reserve(int l, int t) {
        if (sliding[l]) {
            int keep = window - 1;
            if (count[l] > keep && count[l] + t > k[l].length / width) {
                int drop = count[l] - keep;
                System.arraycopy(k[l], drop * width, k[l], 0, keep * width);
                System.arraycopy(v[l], drop * width, v[l], 0, keep * width);
                start[l] += drop;
                count[l] = keep;
                compactions++;
            }
        }
        int need = (count[l] + t) * width;
        if (need > k[l].length) {
            int cap = Math.max(need, Math.min(2 * k[l].length, need + 4096 * width));
            // a sliding layer that holds a window keeps room for half a window more: it then drops rows (moving a window
            // of keys and values) once every window/2 tokens. Grown to exactly its need, it moved them at every token
            // (2 ms per token for the 270M at 512 positions, where a whole token takes 10)
            if (sliding[l] && count[l] + t >= window - 1) cap = Math.max(cap, need + slack() * width);
            k[l] = Arrays.copyOf(k[l], cap);
            v[l] = Arrays.copyOf(v[l], cap);
        }
        return count[l];
    }

    /** Spare rows a full sliding layer keeps (see {@link #reserve}). */
    int slack() { return Math.max(16, window / 2); }

    /** Times a sliding layer has dropped rows (moved its window to the front), over all layers: for tests. */
    long compactions() { return compactions; }

    /**
     * Grows every layer to hold {@code positions} positions in all (a sliding layer at most its window plus a chunk), so that
     * filling them allocates nothing.
     */
    public void ensureCapacity(int positions) {
        for (int l = 0; l < layers; l++) {
            int rows = sliding[l] ? Math.min(positions, window + 256) : positions;
            if (k[l].length < rows * width) {
                k[l] = Arrays.copyOf(k[l], rows * width);
                v[l] = Arrays.copyOf(v[l], rows * width);
            }
        }
    }

    /** Memory held, in bytes. */
    public long bytes() {
        long b = 0;
        for (int l = 0; l < layers; l++) b += 4L * (k[l].length + v[l].length);
        return b;
    }
}
