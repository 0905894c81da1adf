package dev.peft4j.train;

import java.util.random.RandomGenerator;

/**
 * P-tuning's MLP prompt encoder (PEFT {@code PromptEncoder}, reparameterization MLP): virtual-token inputs E [n, d] (an
 * nn.Embedding, N(0, 1)) through Linear(d, h) → ReLU → Linear(h, h) → ReLU → Linear(h, d), giving the virtual tokens
 * [n, d] that are prepended to the input embeddings exactly as in prompt tuning. Linear weights are [out, in] with a bias,
 * initialised as torch.nn.Linear (U(−1/√in, 1/√in) for weight and bias). Only the outputs are saved in the adapter.
 */
public final class PromptEncoder {
    public final int n, d, h;
    public final float[] embedding, w1, b1, w2, b2, w3, b3;
    private final float[] out;
    private float[] a1, a2;   // post-ReLU activations of the last forward

    public PromptEncoder(int n, int d, int h, float[] embedding, float[] w1, float[] b1, float[] w2, float[] b2, float[] w3, float[] b3) {
        this.n = n; this.d = d; this.h = h;
        this.embedding = embedding;
        this.w1 = w1; this.b1 = b1; this.w2 = w2; this.b2 = b2; this.w3 = w3; this.b3 = b3;
        this.out = new float[n * d];
    }

    /** PEFT's fresh encoder: E ~ N(0, 1), linears as torch.nn.Linear's default init. */
    public static PromptEncoder init(int n, int d, int h, RandomGenerator rng) {
        float[] e = new float[n * d];
        for (int i = 0; i < e.length; i++) e[i] = (float) rng.nextGaussian();
        return new PromptEncoder(n, d, h, e, uniform(h * d, d, rng), uniform(h, d, rng), uniform(h * h, h, rng), uniform(h, h, rng),
                uniform(d * h, h, rng), uniform(d, h, rng));
    }

    private static float[] uniform(int len, int fanIn, RandomGenerator rng) {
        double bound = 1 / Math.sqrt(fanIn);
        float[] a = new float[len];
        for (int i = 0; i < len; i++) a[i] = (float) ((rng.nextDouble() * 2 - 1) * bound);
        return a;
    }

    /** The output array [n, d] (the virtual tokens); {@link #forward} refreshes it in place. */
    public float[] output() { return out; }

    /** The encoder's tensors as trainable parameters with PEFT's names (biases without weight decay, as HF's Trainer). */
    public Params params() {
        String p = "prompt_encoder.default.";
        return new Params().add(p + "embedding.weight", embedding, true, n, d)
                .add(p + "mlp_head.0.weight", w1, true, h, d).add(p + "mlp_head.0.bias", b1, false, h)
                .add(p + "mlp_head.2.weight", w2, true, h, h).add(p + "mlp_head.2.bias", b2, false, h)
                .add(p + "mlp_head.4.weight", w3, true, d, h).add(p + "mlp_head.4.bias", b3, false, d);
    }

    /** Recomputes the virtual tokens from the current parameters into {@link #output()} and returns it. */
    public float[] forward() {
        a1 = dense(embedding, w1, b1, d, h, true);
        a2 = dense(a1, w2, b2, h, h, true);
        float[] y = dense(a2, w3, b3, h, d, false);
        System.arraycopy(y, 0, out, 0, y.length);
        return out;
    }

    private float[] dense(float[] x, float[] w, float[] b, int in, int outDim, boolean relu) {
        float[] y = new float[n * outDim];
        for (int r = 0; r < n; r++) {
            for (int o = 0; o < outDim; o++) {
                float s = b[o];
                for (int i = 0; i < in; i++) s += x[r * in + i] * w[o * in + i];
                y[r * outDim + o] = relu && s < 0 ? 0f : s;
            }
        }
        return y;
    }

    /**
     * Accumulates the gradients of all encoder tensors (into {@code p}, see {@link #params}) from d(loss)/d(output) [n, d],
     * using the activations of the last {@link #forward}.
     */
    public void backward(float[] dOut, Params p) {
        float[] da2 = denseBackward(dOut, a2, w3, d, h, p.gradOf(w3), p.gradOf(b3), null);
        float[] da1 = denseBackward(da2, a1, w2, h, h, p.gradOf(w2), p.gradOf(b2), a2);
        float[] dE = denseBackward(da1, embedding, w1, h, d, p.gradOf(w1), p.gradOf(b1), a1);
        float[] gE = p.gradOf(embedding);
        if (gE != null) for (int i = 0; i < dE.length; i++) gE[i] += dE[i];
    }

    /**
     * Backward of y = act(x·Wᵀ + b) where {@code post} (if non-null) is the ReLU output y (its zeros mask the gradient):
     * dW += dzᵀ·x, db += Σ dz, returns dx = dz·W.
     */
    private float[] denseBackward(float[] dy, float[] x, float[] w, int outDim, int in, float[] dW, float[] db, float[] post) {
        float[] dz = dy.clone();
        if (post != null) for (int i = 0; i < dz.length; i++) if (post[i] <= 0f) dz[i] = 0f;
        float[] dx = new float[n * in];
        for (int r = 0; r < n; r++) {
            for (int o = 0; o < outDim; o++) {
                float g = dz[r * outDim + o];
                if (g == 0f) continue;
                if (db != null) db[o] += g;
                for (int i = 0; i < in; i++) {
                    if (dW != null) dW[o * in + i] += g * x[r * in + i];
                    dx[r * in + i] += g * w[o * in + i];
                }
            }
        }
        return dx;
    }
}
