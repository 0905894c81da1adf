package dev.peft4j.model;

import dev.peft4j.tensor.MatMul;
import dev.peft4j.tensor.Matrix;

/**
 * An nn.Linear without bias: y = x·Wᵀ, plus an optional unmerged adapter (at most one of the two): a LoRA branch
 * y += scale · (x·Aᵀ)·Bᵀ (A [r, in], B [out, r], float32 on the heap), or an (IA)³ vector l that scales the output,
 * y = (x·Wᵀ) ⊙ l, or for a feed-forward module the input, y = (x ⊙ l)·Wᵀ. {@code name} is the module path, e.g.
 * {@code model.layers.0.self_attn.q_proj}.
 */
public final class Linear {
    public final String name;
    public Matrix weight;
    public Lora lora;
    public Ia3 ia3;
    /** True while the adapter is folded into {@link #weight} (the adapter is then skipped in forward). */
    public boolean merged;
    /** The base weight while an (IA)³ vector is merged (unmerge restores it exactly). */
    private Matrix unmergedWeight;

    /** LoRA factors of one module; {@code a} and {@code b} are trainable float32 arrays. */
    public static final class Lora {
        public final int r;
        public final float scale;
        public final Matrix a, b;
        /** PEFT's lora_dropout: probability of zeroing an input element of the LoRA branch while training (0 = none). */
        public float dropout;

        public Lora(int r, float scale, float[] a, float[] b, int in, int out) {
            this.r = r;
            this.scale = scale;
            this.a = Matrix.heap(r, in, a);
            this.b = Matrix.heap(out, r, b);
        }

        private Lora(int r, float scale, Matrix a, Matrix b) {
            this.r = r;
            this.scale = scale;
            this.a = a;
            this.b = b;
        }

        /** These factors held off-heap and packed once, for inference only (see {@link Matrix#offHeapCopy}); same results. */
        public Lora frozen() {
            return a.onHeap() && b.onHeap() ? new Lora(r, scale, a.offHeapCopy(), b.offHeapCopy()) : this;
        }
    }

    /**
     * PEFT's (IA)³ {@code ia3_l} of one module (trainable float32): {@code l} has out values (output scaling, saved as
     * [out, 1]) or, when {@code feedforward}, in values (input scaling, saved as [1, in]).
     */
    public static final class Ia3 {
        public final float[] l;
        public final boolean feedforward;

        public Ia3(float[] l, boolean feedforward) {
            this.l = l;
            this.feedforward = feedforward;
        }
    }

    public Linear(String name, Matrix weight) {
        this.name = name;
        this.weight = weight;
    }

    public int in() { return weight.cols; }
    public int out() { return weight.rows; }

    /**
     * y[n, out] = x[n, in]·Wᵀ (+ adapter). If {@code mid} is non-null it receives what the adapter's backward needs
     * ({@link #midWidth} values per row): scale·x·Aᵀ [n, r] for LoRA, the unscaled output x·Wᵀ [n, out] for output (IA)³.
     */
    public void forward(float[] x, int n, float[] y, float[] mid) {
        forward(x, n, y, mid, 0L);
    }

    /** Values per row that {@link #forward} writes to {@code mid} (0: none needed). */
    public int midWidth() {
        if (merged) return 0;
        if (lora != null) return lora.r;
        return ia3 != null && !ia3.feedforward ? out() : 0;
    }

    /**
     * As {@link #forward(float[], int, float[], float[])}; with a non-zero {@code dropoutSeed} and {@code lora.dropout} > 0 the
     * LoRA branch sees dropout(x) (inverted dropout, mask from the seed, see {@link #dropout}), as PEFT does in training.
     */
    public void forward(float[] x, int n, float[] y, float[] mid, long dropoutSeed) {
        if (ia3 != null && !merged) {
            if (lora != null) throw new IllegalStateException(name + ": LoRA and (IA)³ on the same module");
            ia3Forward(x, n, y, mid);
            return;
        }
        MatMul.xWt(x, 0, n, weight, y, 0, false);
        addLora(x, n, y, mid, dropoutSeed);
    }

    /**
     * True when {@link #forward} is the base product x·Wᵀ plus, at most, an unmerged LoRA branch added to it ({@link
     * #addLora}): no unmerged (IA)³. Such modules of one input can share one dispatch for their base products.
     */
    public boolean baseThenLora() {
        return merged || ia3 == null;
    }

    /**
     * y += scale·(x·Aᵀ)·Bᵀ when an unmerged LoRA is attached (nothing otherwise), where y already holds x·Wᵀ: the second
     * half of {@link #forward}, for callers that computed the base product together with other modules'.
     */
    public void addLora(float[] x, int n, float[] y, float[] mid, long dropoutSeed) {
        if (lora == null || merged) return;
        float[] t = mid != null ? mid : new float[n * lora.r];
        float[] xl = x;
        if (dropoutSeed != 0 && lora.dropout > 0f) {
            xl = new float[n * in()];
            dropout(x, xl, n * in(), lora.dropout, dropoutSeed);
        }
        product(xl, n, lora.a, t, false);
        if (lora.scale != 1f) for (int i = 0; i < n * lora.r; i++) t[i] *= lora.scale;
        product(t, n, lora.b, y, true);
    }

    /** Products smaller than this many multiply-adds run on the calling thread: handing them to the pool costs more. */
    static final long SERIAL_WORK = 1L << 19;

    /** y (=|+=) x·Wᵀ for an adapter's small factor: on the calling thread when small (decoding), else on every core. Same results either way. */
    static void product(float[] x, int n, Matrix w, float[] y, boolean accumulate) {
        if ((long) n * w.rows * w.cols < SERIAL_WORK) MatMul.xWtSerial(x, 0, n, w, y, 0, accumulate);
        else MatMul.xWt(x, 0, n, w, y, 0, accumulate);
    }

    private void ia3Forward(float[] x, int n, float[] y, float[] mid) {
        float[] l = ia3.l;
        if (ia3.feedforward) {
            int in = in();
            float[] xs = new float[n * in];
            for (int r = 0; r < n; r++) for (int i = 0; i < in; i++) xs[r * in + i] = x[r * in + i] * l[i];
            MatMul.xWt(xs, 0, n, weight, y, 0, false);
        } else {
            int out = out();
            MatMul.xWt(x, 0, n, weight, y, 0, false);
            if (mid != null) System.arraycopy(y, 0, mid, 0, n * out);
            for (int r = 0; r < n; r++) for (int o = 0; o < out; o++) y[r * out + o] *= l[o];
        }
    }

    /**
     * Inverted dropout with a mask that is a pure function of (seed, index), so the backward pass can recompute it:
     * out[i] = keep(i) ? x[i] / (1 − p) : 0, keep(i) with probability 1 − p.
     */
    public static void dropout(float[] x, float[] out, int len, float p, long seed) {
        float scale = 1f / (1f - p);
        long threshold = (long) (p * (double) (1L << 40));
        for (int i = 0; i < len; i++) {
            long z = seed + 0x9E3779B97F4A7C15L * (i + 1L);
            z = (z ^ (z >>> 33)) * 0xFF51AFD7ED558CCDL;
            z = (z ^ (z >>> 33)) * 0xC4CEB9FE1A85EC53L;
            z ^= z >>> 33;
            out[i] = (z >>> 24) >= threshold ? x[i] * scale : 0f;
        }
    }

    /**
     * Folds the adapter into a float32 copy of the weight: LoRA W' = W + scale·B·A; (IA)³ W' = W ⊙ l (PEFT's merge:
     * row o scaled by l[o], or for a feed-forward module column i by l[i]).
     */
    public void merge() {
        if (merged) return;
        if (ia3 != null) {
            float[] w = weight.toFloatArray();
            int in = in(), out = out();
            for (int o = 0; o < out; o++) for (int i = 0; i < in; i++) w[o * in + i] *= ia3.feedforward ? ia3.l[i] : ia3.l[o];
            unmergedWeight = weight;
            weight = Matrix.heap(out, in, w);
            merged = true;
            return;
        }
        if (lora == null) return;
        float[] w = weight.toFloatArray();
        addScaledBA(w, 1f);
        weight = Matrix.heap(weight.rows, weight.cols, w);
        merged = true;
    }

    /** Removes a merged adapter again: LoRA W = W' − scale·B·A (weight stays float32); (IA)³ restores the base weight. */
    public void unmerge() {
        if (!merged) return;
        if (unmergedWeight != null) {
            weight = unmergedWeight;
            unmergedWeight = null;
            merged = false;
            return;
        }
        if (lora == null) return;
        float[] w = weight.onHeap() ? weight.array() : weight.toFloatArray();
        addScaledBA(w, -1f);
        weight = Matrix.heap(weight.rows, weight.cols, w);
        merged = false;
    }

    private void addScaledBA(float[] w, float sign) {
        int out = weight.rows, in = weight.cols, r = lora.r;
        float[] a = lora.a.array(), b = lora.b.array();
        for (int o = 0; o < out; o++) {
            for (int k = 0; k < r; k++) {
                float c = sign * lora.scale * b[o * r + k];
                if (c == 0f) continue;
                for (int i = 0; i < in; i++) w[o * in + i] += c * a[k * in + i];
            }
        }
    }
}
