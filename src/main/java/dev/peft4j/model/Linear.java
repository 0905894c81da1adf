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

    /** LoRA factors of one module; {@code a} and {@code b} are trainable float32 arrays. */
    public static final class Lora {
        public final int r;
        public final float scale;
        public final Matrix a, b;

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
        MatMul.xWt(x, 0, n, weight, y, 0, false);
        if (lora != null) {
            float[] t = loraMid != null ? loraMid : new float[n * lora.r];
            MatMul.xWt(x, 0, n, lora.a, t, 0, false);
            if (lora.scale != 1f) for (int i = 0; i < n * lora.r; i++) t[i] *= lora.scale;
            MatMul.xWt(t, 0, n, lora.b, y, 0, true);
        }
    }

    /** Folds the LoRA branch into a float32 copy of the weight: W' = W + scale·B·A. */
    public void merge() {
        if (lora == null) return;
        float[] w = weight.toFloatArray();
        addScaledBA(w, 1f);
        weight = Matrix.heap(weight.rows, weight.cols, w);
    }

    /** Removes a merged LoRA branch again: W = W' − scale·B·A (weight stays float32). */
    public void unmerge() {
        if (lora == null) return;
        float[] w = weight.onHeap() ? weight.array() : weight.toFloatArray();
        addScaledBA(w, -1f);
        weight = Matrix.heap(weight.rows, weight.cols, w);
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
