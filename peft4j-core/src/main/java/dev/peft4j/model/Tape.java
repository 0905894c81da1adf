package dev.peft4j.model;

/**
 * Activations a training forward pass keeps for the backward pass (llm.c style: each layer's inputs and the statistics its
 * backward needs). Rows are packed over the batch: sequence s occupies rows [rowStart[s], rowStart[s] + rowCount[s]), with
 * absolute positions starting at 0 (training runs each sequence from an empty cache).
 */
public final class Tape {
    public int rows;
    public int[] rowStart, rowCount;
    public int[] positions;         // [rows] absolute position of each row
    public int[] tokenIds;          // [rows] token id, or -1 for a virtual (prompt-tuning) row
    public float[] embedded;        // [rows, H] the layer-0 input (scaled embeddings / virtual tokens)
    public LayerTape[] layers;
    public float[] finalIn;         // [rows, H] residual stream before the final norm
    public float[] finalRstd;       // [rows]
    public float[] finalOut;        // [rows, H] after the final norm (input of the output head)
    /** Non-zero: apply LoRA dropout (modules with {@code Lora.dropout} > 0) with masks derived from this seed (training). */
    public long dropoutSeed;
    /** Whether to keep each layer's attention output (o_proj's input); only o_proj's own gradients (weight, LoRA A) read it. */
    public boolean keepAttn = true;

    /** The dropout seed of module {@code module} (0..6 = q,k,v,o,gate,up,down) of layer {@code layer}; never 0. */
    public static long moduleSeed(long base, int layer, int module) {
        long z = base + 0x9E3779B97F4A7C15L * (layer * 8L + module + 1);
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        z ^= z >>> 31;
        return z == 0 ? 1 : z;
    }

    public static final class LayerTape {
        // Only what cannot be recomputed cheaply is kept: the backward pass recomputes the normed inputs (h1 = norm(xIn),
        // h2 = norm(xMid)), q/k after their norms and RoPE (from qPre/kPre) and gelu(gate)*up, with the same kernels.
        public float[] xIn, rstdIn;                 // residual input, its norm statistic
        public float[] qPre, kPre, rstdQ, rstdK;    // projections before q/k norms; rstd per (row, head)
        public float[] v;                           // v as projected
        public float[] attn;                        // attention output (o_proj input) [rows, heads*D]
        public float[] oOut, rstdPostAttn;          // o_proj output, its post-norm statistic
        public float[] xMid, rstdPreFf;             // residual after attention, its pre-FF norm statistic
        public float[] gate, up;                    // gate/up projections (MLP)
        public float[] dOut, rstdPostFf;            // down_proj output, its post-norm statistic
        /**
         * Per module q,k,v,o,gate,up,down (null where not needed): what its adapter's backward needs, see
         * {@link Linear#forward(float[], int, float[], float[])} (LoRA: scale·x·Aᵀ; output (IA)³: the unscaled output).
         */
        public float[][] adapterMid = new float[7][];
    }

    /** Heap bytes held by the recorded activations (arrays shared between fields counted once). */
    public long bytes() {
        java.util.Set<Object> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        long b = 0;
        b += size(seen, embedded) + size(seen, finalIn) + size(seen, finalRstd) + size(seen, finalOut);
        if (layers != null) {
            for (LayerTape l : layers) {
                if (l == null) continue;
                for (float[] a : new float[][]{l.xIn, l.rstdIn, l.qPre, l.kPre, l.rstdQ, l.rstdK, l.v, l.attn, l.oOut, l.rstdPostAttn,
                        l.xMid, l.rstdPreFf, l.gate, l.up, l.dOut, l.rstdPostFf}) b += size(seen, a);
                for (float[] a : l.adapterMid) b += size(seen, a);
            }
        }
        return b;
    }

    private static long size(java.util.Set<Object> seen, float[] a) {
        return a == null || !seen.add(a) ? 0 : 4L * a.length;
    }
}
