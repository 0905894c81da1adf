package dev.peft4j.model;

import dev.peft4j.tensor.MatMul;
import dev.peft4j.tensor.Matrix;

/**
 * An nn.Linear without bias: y = x·Wᵀ, plus an optional unmerged LoRA branch y += scale · (x·Aᵀ)·Bᵀ
 * (A [r, in], B [out, r], float32 on the heap). {@code name} is the module path, e.g. {@code model.layers.0.self_attn.q_proj}.
 */
public final class Linear {
    public final String name;
    public Matrix weight;
    public Lora lora;
    /** True while the LoRA branch is folded into {@link #weight} (the branch is then skipped in forward). */
    public boolean merged;

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
    }

    public Linear(String name, Matrix weight) {
        this.name = name;
        this.weight = weight;
    }

    public int in() { return weight.cols; }
    public int out() { return weight.rows; }

    /** y[n, out] = x[n, in]·Wᵀ (+ LoRA). If {@code loraMid} is non-null it receives x·Aᵀ [n, r] (for the backward pass). */
    public void forward(float[] x, int n, float[] y, float[] loraMid) {
        forward(x, n, y, loraMid, 0L);
    }

    /**
     * As {@link #forward(float[], int, float[], float[])}; with a non-zero {@code dropoutSeed} and {@code lora.dropout} > 0 the
     * LoRA branch sees dropout(x) (inverted dropout, mask from the seed, see {@link #dropout}), as PEFT does in training.
     */
    public void forward(float[] x, int n, float[] y, float[] loraMid, long dropoutSeed) {
        MatMul.xWt(x, 0, n, weight, y, 0, false);
        if (lora != null && !merged) {
            float[] t = loraMid != null ? loraMid : new float[n * lora.r];
            float[] xl = x;
            if (dropoutSeed != 0 && lora.dropout > 0f) {
                xl = new float[n * in()];
                dropout(x, xl, n * in(), lora.dropout, dropoutSeed);
            }
            MatMul.xWt(xl, 0, n, lora.a, t, 0, false);
            if (lora.scale != 1f) for (int i = 0; i < n * lora.r; i++) t[i] *= lora.scale;
            MatMul.xWt(t, 0, n, lora.b, y, 0, true);
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

    /** Folds the LoRA branch into a float32 copy of the weight: W' = W + scale·B·A. */
    public void merge() {
        if (lora == null || merged) return;
        float[] w = weight.toFloatArray();
        addScaledBA(w, 1f);
        weight = Matrix.heap(weight.rows, weight.cols, w);
        merged = true;
    }

    /** Removes a merged LoRA branch again: W = W' − scale·B·A (weight stays float32). */
    public void unmerge() {
        if (lora == null || !merged) return;
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
