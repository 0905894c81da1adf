package dev.peft4j.model;

/**
 * Model FLOPs of the matrix products of a Gemma 3 forward (and backward), from the config: what a throughput is divided by
 * to get GFLOP/s. Counted: 2 FLOPs per multiply-add of every linear (q, k, v, o, gate, up, down), of attention's Q·Kᵀ and
 * P·V over the keys each query sees (causal; sliding layers at most the window), and of the output head for each row whose
 * logits are computed. Not counted: norms, RoPE, softmax, activations (elementwise, a few per value) and work a kernel
 * repeats (the backward pass recomputing logits or attention probabilities): these are model FLOPs, as in MFU figures.
 * <p>
 * Backward: the input gradient of every product costs as much as its forward (attention's four backward products: 2x its
 * forward); weight gradients as much again, but only for weights that train. So full fine-tuning ≈ 3x forward, while prompt
 * tuning and LoRA, whose frozen base needs input gradients only, ≈ 2x forward plus the small LoRA terms.
 */
public final class Flops {
    private final Gemma3Config c;

    public Flops(Gemma3Config c) { this.c = c; }

    /** Weights in the linears of all layers (the head not included). */
    public long linearParams() {
        long H = c.hidden(), D = c.headDim(), I = c.intermediate();
        long perLayer = H * c.heads() * D + 2 * H * c.kvHeads() * D + (long) c.heads() * D * H + 3 * H * I;
        return perLayer * c.layers();
    }

    /** Output head (or tied embedding) FLOPs per logits row: 2·hidden·vocab. */
    public double headPerRow() { return 2.0 * c.hidden() * c.vocabSize(); }

    /** Linear FLOPs per row: 2 · linear parameters. */
    public double linearsPerRow() { return 2.0 * linearParams(); }

    /** Attention FLOPs (Q·Kᵀ and P·V, all layers) of one query at absolute position {@code pos} (it sees pos+1 keys, causal). */
    public double attentionAt(int pos) {
        double perKey = 4.0 * c.heads() * c.headDim();
        double keys = 0;
        for (int l = 0; l < c.layers(); l++) keys += c.isSliding(l) ? Math.min(pos + 1, c.slidingWindow()) : pos + 1;
        return perKey * keys;
    }

    /** Attention FLOPs of the queries at positions [from, to). */
    public double attention(int from, int to) {
        double s = 0;
        for (int p = from; p < to; p++) s += attentionAt(p);
        return s;
    }

    /** Prefill of one sequence of {@code tokens}: every row through the layers, logits of the last row only. */
    public double prefill(int tokens) {
        return tokens * linearsPerRow() + attention(0, tokens) + headPerRow();
    }

    /** Forward of one sequence with logits at every position. */
    public double forwardAllLogits(int tokens) {
        return tokens * (linearsPerRow() + headPerRow()) + attention(0, tokens);
    }

    /** Decoding {@code n} tokens after a context of {@code ctx} positions, one logits row each. */
    public double decode(int ctx, int n) {
        return n * (linearsPerRow() + headPerRow()) + attention(ctx, ctx + n);
    }

    /**
     * One training step (forward + backward, model FLOPs) over {@code batch} sequences of {@code rows} positions (virtual tokens
     * included) with {@code targets} rows that have a label in all. {@code method}: "full" (weight gradients of every linear
     * and of the tied head), "lora" (input gradients of the frozen base, plus forward, input and weight gradients of rank
     * {@code loraR} factors on {@code loraModulesPerLayer} modules of mean in+out {@code loraInOut}) or anything else (prompt
     * tuning and other methods with a frozen base: input gradients only).
     */
    public double trainStep(int batch, int rows, long targets, String method, int loraR, int loraModulesPerLayer, double loraInOut) {
        double lin = (double) batch * rows * linearsPerRow();
        double att = batch * attention(0, rows);
        double head = targets * headPerRow();
        double fwd = lin + att + head;
        double bwd = lin + 2 * att + head;                                  // input gradients
        if ("full".equals(method)) bwd += lin + head;                       // weight gradients (head: tied embedding)
        double lora = 0;
        if ("lora".equals(method)) {
            lora = 3 * 2.0 * loraR * loraInOut * loraModulesPerLayer * c.layers() * batch * rows;   // forward + 2 backward products
        }
        return fwd + bwd + lora;
    }

    /** The forward-only FLOPs of a training step (for the ratio the method's backward adds). */
    public double trainForward(int batch, int rows, long targets) {
        return (double) batch * rows * linearsPerRow() + batch * attention(0, rows) + targets * headPerRow();
    }
}
