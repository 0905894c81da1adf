package dev.peft4j.train;

import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Gemma3Weights;
import dev.peft4j.model.Linear;
import dev.peft4j.tensor.Matrix;

import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * The trainable tensors of a run: a named list of float32 arrays (updated in place by the optimizer; the model reads the
 * same arrays) with their gradient arrays. {@link Backward} asks {@link #gradOf} for each model array and skips the weight
 * gradients of everything that is not in the list (frozen).
 *
 * <p>Names: prompt tuning {@code prompt_embeddings}; LoRA {@code base_model.model.<module>.lora_A.weight} /
 * {@code lora_B.weight} (PEFT's adapter-file names; PEFT's in-memory names insert {@code .default} before {@code .weight});
 * (IA)³ {@code base_model.model.<module>.ia3_l};
 * full fine-tuning the checkpoint names ({@code model.embed_tokens.weight}, {@code model.layers.0.self_attn.q_proj.weight},
 * {@code model.norm.weight}, {@code lm_head.weight} when untied).
 */
public final class Params implements Iterable<Params.Param> {

    /** One trainable tensor. {@code decay}: whether AdamW's weight decay applies (false for norm weights in full fine-tuning). */
    public record Param(String name, float[] data, float[] grad, long[] shape, boolean decay) {
        public long numel() { return data.length; }
    }

    private final List<Param> list = new ArrayList<>();
    private final Map<float[], float[]> gradOf = new IdentityHashMap<>();

    public Params add(String name, float[] data, boolean decay, long... shape) {
        long n = 1;
        for (long s : shape) n *= s;
        if (n != data.length) throw new IllegalArgumentException(name + ": " + data.length + " values for shape " + java.util.Arrays.toString(shape));
        if (gradOf.containsKey(data)) return this;
        Param p = new Param(name, data, new float[data.length], shape, decay);
        list.add(p);
        gradOf.put(data, p.grad);
        return this;
    }

    /** The gradient array of a trainable model array, or null when that array is frozen (or null). */
    public float[] gradOf(float[] data) {
        return data == null ? null : gradOf.get(data);
    }

    /** The gradient array of a matrix's heap data, or null when it is frozen (mapped matrices are always frozen). */
    public float[] gradOf(Matrix m) {
        return m != null && m.onHeap() ? gradOf.get(m.array()) : null;
    }

    public List<Param> list() { return Collections.unmodifiableList(list); }

    public Param get(String name) {
        for (Param p : list) if (p.name.equals(name)) return p;
        return null;
    }

    public int size() { return list.size(); }

    @Override
    public Iterator<Param> iterator() { return list().iterator(); }

    public long numel() {
        long n = 0;
        for (Param p : list) n += p.numel();
        return n;
    }

    public void zeroGrad() {
        for (Param p : list) java.util.Arrays.fill(p.grad, 0f);
    }

    // ------------------------------------------------------------------ the methods

    /** Prompt tuning: the virtual-token vectors [n, H] (used by the caller as {@code Input.virtual}). */
    public static Params promptTuning(float[] prompt, int hidden) {
        return new Params().add("prompt_embeddings", prompt, true, prompt.length / hidden, hidden);
    }

    /** LoRA: A and B of every Linear of the model that has a LoRA branch ({@link Linear#lora}). */
    public static Params lora(Gemma3Model model) {
        Params p = new Params();
        for (Linear l : model.weights.linears()) {
            if (l.lora == null || l.merged) continue;
            String base = "base_model.model." + l.name + ".";
            p.add(base + "lora_A.weight", l.lora.a.array(), true, l.lora.r, l.in());
            p.add(base + "lora_B.weight", l.lora.b.array(), true, l.out(), l.lora.r);
        }
        return p;
    }

    /** (IA)³: the {@code ia3_l} vector of every Linear that has one ({@link Linear#ia3}), shaped as PEFT saves it. */
    public static Params ia3(Gemma3Model model) {
        Params p = new Params();
        for (Linear l : model.weights.linears()) {
            if (l.ia3 == null || l.merged) continue;
            long[] shape = l.ia3.feedforward ? new long[]{1, l.in()} : new long[]{l.out(), 1};
            p.add("base_model.model." + l.name + ".ia3_l", l.ia3.l, true, shape);
        }
        return p;
    }

    /**
     * Full fine-tuning: every parameter. Mapped weights are first copied to float32 heap matrices inside the model (so the
     * model and the optimizer share them); a tied output head stays the same matrix as the embedding, so its gradient is the
     * sum of the input and output gradients. Norm weights get no weight decay.
     */
    public static Params full(Gemma3Model model) {
        Gemma3Weights w = model.weights;
        var c = model.config;
        boolean tied = w.lmHead == w.embed;
        w.embed = heap(w.embed);
        w.lmHead = tied ? w.embed : heap(w.lmHead);
        Params p = new Params();
        p.add("model.embed_tokens.weight", w.embed.array(), true, c.vocabSize(), c.hidden());
        for (int i = 0; i < w.layers.length; i++) {
            Gemma3Weights.Layer l = w.layers[i];
            String pre = "model.layers." + i + ".";
            for (Linear lin : l.linears()) {
                lin.weight = heap(lin.weight);
                p.add(lin.name + ".weight", lin.weight.array(), true, lin.out(), lin.in());
            }
            p.add(pre + "input_layernorm.weight", l.inputNorm, false, c.hidden());
            p.add(pre + "post_attention_layernorm.weight", l.postAttnNorm, false, c.hidden());
            p.add(pre + "pre_feedforward_layernorm.weight", l.preFfNorm, false, c.hidden());
            p.add(pre + "post_feedforward_layernorm.weight", l.postFfNorm, false, c.hidden());
            p.add(pre + "self_attn.q_norm.weight", l.qNorm, false, c.headDim());
            p.add(pre + "self_attn.k_norm.weight", l.kNorm, false, c.headDim());
        }
        p.add("model.norm.weight", w.finalNorm, false, c.hidden());
        if (!tied) p.add("lm_head.weight", w.lmHead.array(), true, c.vocabSize(), c.hidden());
        return p;
    }

    private static Matrix heap(Matrix m) {
        return m.onHeap() ? m : Matrix.heap(m.rows, m.cols, m.toFloatArray());
    }
}
