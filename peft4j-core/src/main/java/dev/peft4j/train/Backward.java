package dev.peft4j.train;

import dev.peft4j.model.Gemma3Config;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Gemma3Weights;
import dev.peft4j.model.Linear;
import dev.peft4j.model.Tape;
import dev.peft4j.tensor.Ops;

/**
 * The backward pass of the whole Gemma 3 model from the gradient of the final-normed hidden states, through the final norm
 * and every decoder layer in reverse (post-FF norm, down, gelu·up, gate/up, pre-FF norm, residual, post-attention norm,
 * o_proj, attention, RoPE, q/k norms, q/k/v, input norm, residual), down to the (scaled) input embeddings.
 *
 * <p>Gradients are ACCUMULATED into the grad arrays of {@link Params}; weight gradients of frozen tensors are never computed,
 * and the input-gradient chain stops at the lowest layer that still has something trainable below it (LoRA, (IA)³), or runs to the
 * inputs when the embedding or the virtual tokens are trained. Normed inputs, post-RoPE q/k and gelu·up are recomputed from
 * the {@link Tape} with the forward kernels.
 */
public final class Backward {
    private Backward() {}

    /**
     * @param dFinal      [rows, H] d(loss)/d(final-normed hidden states) (not modified)
     * @param inputGrad   whether the gradient at the layer-0 input rows is wanted (prompt tuning)
     * @return d(loss)/d(layer-0 input) [rows, H] when {@code inputGrad} or the embedding is trainable, else null
     */
    public static float[] run(Gemma3Model model, Tape tape, float[] dFinal, Params params, boolean inputGrad) {
        final Gemma3Config c = model.config;
        final Gemma3Weights W = model.weights;
        final int N = tape.rows, H = c.hidden(), D = c.headDim(), nH = c.heads(), nKV = c.kvHeads(), I = c.intermediate();
        final float eps = (float) c.rmsEps();
        for (int s = 0; s < tape.rowStart.length; s++) {
            if (tape.rowCount[s] > 0 && tape.positions[tape.rowStart[s]] != 0) {
                throw new IllegalStateException("backward needs every sequence run from an empty cache (sequence " + s + " starts at position " + tape.positions[tape.rowStart[s]] + ")");
            }
        }
        float[] gEmbed = params.gradOf(W.embed);
        boolean needInput = inputGrad || gEmbed != null;
        // lowest layer with something trainable: below it no input gradient is needed
        int lowest = needInput ? -1 : c.layers();
        if (!needInput) {
            for (int l = 0; l < c.layers() && lowest == c.layers(); l++) if (trainable(W.layers[l], params)) lowest = l;
        }
        float[] dx = new float[N * H];
        int maxLen = 0;
        for (int n : tape.rowCount) maxLen = Math.max(maxLen, n);
        Kernels.rmsNormBackward(tape.finalIn, tape.finalRstd, W.finalNorm, dFinal, dx, params.gradOf(W.finalNorm), N, H);
        float[] dd = new float[N * H], dh = new float[N * H], h = new float[N * H];
        float[] act = new float[N * I], dAct = new float[N * I], du = new float[N * I];
        float[] q = new float[N * nH * D], k = new float[N * nKV * D];
        float[] dAtt = new float[N * nH * D], dq = new float[N * nH * D], dk = new float[N * nKV * D], dv = new float[N * nKV * D];
        float[] dq0 = new float[N * nH * D], dk0 = new float[N * nKV * D];
        for (int l = c.layers() - 1; l >= 0 && l >= lowest; l--) {
            Tape.LayerTape t = tape.layers[l];
            Gemma3Weights.Layer w = W.layers[l];
            boolean below = l > lowest;   // something below this layer needs d(xIn)
            // ---- MLP block: xOut = xMid + postFf(down(gelu(gate(h2))·up(h2))), h2 = preFf(xMid)
            java.util.Arrays.fill(dd, 0f);
            Kernels.rmsNormBackward(t.dOut, t.rstdPostFf, w.postFfNorm, dx, dd, params.gradOf(w.postFfNorm), N, H);
            if (needsInput(w.down, params)) Kernels.geluMul(t.gate, t.up, act, N * I);   // down's input, only for its own gradients
            java.util.Arrays.fill(dAct, 0f);
            linear(w.down, act, dd, N, dAct, params, t.adapterMid[6], seed(tape, l, 6));
            Kernels.geluMulBackward(t.gate, t.up, dAct, dAct, du, N * I);
            Ops.rmsNorm(t.xMid, 0, h, 0, N, H, w.preFfNorm, eps, null, 0);
            java.util.Arrays.fill(dh, 0f);
            linear(w.gate, h, dAct, N, dh, params, t.adapterMid[4], seed(tape, l, 4));
            linear(w.up, h, du, N, dh, params, t.adapterMid[5], seed(tape, l, 5));
            Kernels.rmsNormBackward(t.xMid, t.rstdPreFf, w.preFfNorm, dh, dx, params.gradOf(w.preFfNorm), N, H);
            // ---- attention block: xMid = xIn + postAttn(o(attn(q, k, v))), q/k/v from h1 = inputNorm(xIn)
            if (!below && !attentionTrainable(w, params)) continue;
            java.util.Arrays.fill(dd, 0f);
            Kernels.rmsNormBackward(t.oOut, t.rstdPostAttn, w.postAttnNorm, dx, dd, params.gradOf(w.postAttnNorm), N, H);
            java.util.Arrays.fill(dAtt, 0f);
            if (t.attn == null && needsInput(w.o, params)) throw new IllegalStateException("o_proj is trainable but the tape has no attention output (Tape.keepAttn)");
            linear(w.o, t.attn, dd, N, dAtt, params, t.adapterMid[3], seed(tape, l, 3));
            boolean sl = c.isSliding(l);
            float[] cos = model.ropeCos(sl, maxLen), sin = model.ropeSin(sl, maxLen);
            Ops.rmsNorm(t.qPre, 0, q, 0, N * nH, D, w.qNorm, eps, null, 0);
            Ops.rmsNorm(t.kPre, 0, k, 0, N * nKV, D, w.kNorm, eps, null, 0);
            Ops.rope(q, N, nH, D, tape.positions, cos, sin);
            Ops.rope(k, N, nKV, D, tape.positions, cos, sin);
            Kernels.attentionBackward(q, k, t.v, dAtt, dq, dk, dv, tape.rowStart, tape.rowCount, nH, nKV, D, model.attnScale(),
                    sl ? c.slidingWindow() : 0);
            Kernels.ropeBackward(dq, N, nH, D, tape.positions, cos, sin);
            Kernels.ropeBackward(dk, N, nKV, D, tape.positions, cos, sin);
            java.util.Arrays.fill(dq0, 0f);
            java.util.Arrays.fill(dk0, 0f);
            Kernels.rmsNormBackward(t.qPre, t.rstdQ, w.qNorm, dq, dq0, params.gradOf(w.qNorm), N * nH, D);
            Kernels.rmsNormBackward(t.kPre, t.rstdK, w.kNorm, dk, dk0, params.gradOf(w.kNorm), N * nKV, D);
            Ops.rmsNorm(t.xIn, 0, h, 0, N, H, w.inputNorm, eps, null, 0);
            float[] gIn = params.gradOf(w.inputNorm);
            boolean needDh = below || gIn != null;
            java.util.Arrays.fill(dh, 0f);
            linear(w.q, h, dq0, N, needDh ? dh : null, params, t.adapterMid[0], seed(tape, l, 0));
            linear(w.k, h, dk0, N, needDh ? dh : null, params, t.adapterMid[1], seed(tape, l, 1));
            linear(w.v, h, dv, N, needDh ? dh : null, params, t.adapterMid[2], seed(tape, l, 2));
            if (needDh) Kernels.rmsNormBackward(t.xIn, t.rstdIn, w.inputNorm, dh, below ? dx : null, gIn, N, H);
        }
        if (!needInput) return null;
        if (gEmbed != null) Kernels.embeddingBackward(tape.tokenIds, dx, H, model.embedScale(), c.padId(), gEmbed);
        return dx;
    }

    private static long seed(Tape tape, int layer, int module) {
        return tape.dropoutSeed == 0 ? 0 : Tape.moduleSeed(tape.dropoutSeed, layer, module);
    }

    private static void linear(Linear lin, float[] x, float[] dy, int n, float[] dx, Params p, float[] mid, long dropoutSeed) {
        float[] dA = null, dB = null;
        if (lin.lora != null && !lin.merged) {
            dA = p.gradOf(lin.lora.a);
            dB = p.gradOf(lin.lora.b);
        }
        Kernels.linearBackward(lin, x, dy, n, dx, p.gradOf(lin.weight), mid, dA, dB, ia3Grad(lin, p), dropoutSeed);
    }

    private static float[] ia3Grad(Linear l, Params p) {
        return l.ia3 != null && !l.merged ? p.gradOf(l.ia3.l) : null;
    }

    /** Whether a linear's input is read by its backward (weight gradient, LoRA A gradient, input-scaling (IA)³ gradient). */
    static boolean needsInput(Linear l, Params p) {
        return p.gradOf(l.weight) != null || (l.lora != null && p.gradOf(l.lora.a) != null)
                || (l.ia3 != null && l.ia3.feedforward && ia3Grad(l, p) != null);
    }

    private static boolean trainable(Gemma3Weights.Layer w, Params p) {
        if (attentionTrainable(w, p)) return true;
        for (Linear l : new Linear[]{w.gate, w.up, w.down}) if (linearTrainable(l, p)) return true;
        return p.gradOf(w.preFfNorm) != null || p.gradOf(w.postFfNorm) != null;
    }

    private static boolean attentionTrainable(Gemma3Weights.Layer w, Params p) {
        for (Linear l : new Linear[]{w.q, w.k, w.v, w.o}) if (linearTrainable(l, p)) return true;
        return p.gradOf(w.inputNorm) != null || p.gradOf(w.postAttnNorm) != null || p.gradOf(w.qNorm) != null || p.gradOf(w.kNorm) != null;
    }

    private static boolean linearTrainable(Linear l, Params p) {
        return p.gradOf(l.weight) != null || (l.lora != null && (p.gradOf(l.lora.a) != null || p.gradOf(l.lora.b) != null))
                || ia3Grad(l, p) != null;
    }
}
