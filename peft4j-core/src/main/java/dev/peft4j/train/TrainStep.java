package dev.peft4j.train;

import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Tape;
import dev.peft4j.util.UserException;

import java.util.ArrayList;
import java.util.List;

/**
 * One training step of a Gemma 3 model with PEFT prompt tuning, P-tuning, LoRA, (IA)³ or full fine-tuning: forward with a {@link Tape},
 * chunked cross-entropy (mean over all kept tokens of the batch, as transformers' ForCausalLMLoss), backward, optional
 * gradient clipping and an AdamW update with a learning-rate schedule.
 *
 * <pre>
 * Params p = Params.lora(model);                        // or Params.promptTuning(prompt, H), Params.full(model)
 * TrainStep ts = new TrainStep(model, p, null, AdamW.defaults(0f), LrSchedule.of("linear", 2e-4, 10, 1000), 1.0);
 * TrainStep.Result r = ts.step(List.of(new TrainStep.Example(ids, labels), ...));
 * </pre>
 * Labels are aligned with the ids (−100 = ignored; the shift happens inside). With prompt tuning the {@code prompt} array
 * [n, H] is prepended to every sequence (n labels of −100 are prepended internally, as PEFT does).
 */
public final class TrainStep {
    /** One training sequence: token ids and labels of the same length (labels[t] = ids[t] or −100). */
    public record Example(int[] ids, int[] labels) {
        public Example {
            if (labels.length != ids.length) throw new UserException("labels: " + labels.length + " labels for " + ids.length + " tokens");
        }
    }

    /** loss: mean cross-entropy of the batch (before the update); tokens: number of predicted tokens; gradNorm before clipping. */
    public record Result(double loss, int tokens, double gradNorm, double lr) {}

    public final Gemma3Model model;
    public final Params params;
    public final float[] prompt;
    /** P-tuning: the encoder whose outputs are {@link #prompt} (recomputed before every forward), else null. */
    public final PromptEncoder encoder;
    public final AdamW optimizer;
    public final LrSchedule schedule;
    public final double maxGradNorm;
    private final long seed;
    private long microStep = -1, microIndex;
    /** Knowledge distillation: the teacher and the mixed KD + CE objective, or null for plain cross-entropy. */
    private Distillation distillation;

    /**
     * @param prompt      the virtual-token vectors [n, H] for prompt tuning (must be a parameter in {@code params}), else null
     * @param maxGradNorm clip the global gradient norm to this (≤ 0: no clipping)
     */
    public TrainStep(Gemma3Model model, Params params, float[] prompt, AdamW optimizer, LrSchedule schedule, double maxGradNorm) {
        this(model, params, prompt, optimizer, schedule, maxGradNorm, 42L);
    }

    /** @param seed seeds the LoRA dropout masks (only used by modules with {@code Lora.dropout} > 0) */
    public TrainStep(Gemma3Model model, Params params, float[] prompt, AdamW optimizer, LrSchedule schedule, double maxGradNorm, long seed) {
        this(model, params, prompt, null, optimizer, schedule, maxGradNorm, seed);
    }

    /**
     * P-tuning: the virtual tokens are the outputs of {@code encoder}, whose tensors ({@link PromptEncoder#params}) are the
     * parameters; their gradients come from the virtual-token gradient through the encoder.
     */
    public static TrainStep pTuning(Gemma3Model model, Params params, PromptEncoder encoder, AdamW optimizer, LrSchedule schedule,
                                    double maxGradNorm, long seed) {
        return new TrainStep(model, params, encoder.output(), encoder, optimizer, schedule, maxGradNorm, seed);
    }

    private TrainStep(Gemma3Model model, Params params, float[] prompt, PromptEncoder encoder, AdamW optimizer, LrSchedule schedule,
                      double maxGradNorm, long seed) {
        this.encoder = encoder;
        this.model = model;
        this.params = params;
        this.prompt = prompt;
        this.optimizer = optimizer;
        this.schedule = schedule;
        this.maxGradNorm = maxGradNorm;
        this.seed = seed;
        if (prompt != null && (prompt.length % model.config.hidden() != 0 || (encoder == null && params.gradOf(prompt) == null))) {
            throw new IllegalArgumentException("prompt must be [n, hidden] and registered in params");
        }
    }

    /**
     * Trains with knowledge distillation: the loss becomes kdAlpha·KD + (1 − kdAlpha)·CE (see {@link Distillation}); null
     * restores the plain cross-entropy. Validation ({@link #loss}) stays the student's cross-entropy.
     */
    public TrainStep distillation(Distillation d) {
        this.distillation = d;
        return this;
    }

    /** The distillation this step trains with, or null. */
    public Distillation distillation() { return distillation; }

    /** Forward + loss + backward + clipping + AdamW update. Gradients are zeroed first. */
    public Result step(List<Example> batch) {
        params.zeroGrad();
        int[] count = new int[1];
        double loss = accumulate(batch, -1, count);
        return update(loss, count[0]);
    }

    /**
     * Clips the accumulated gradients (if configured), takes one AdamW step at the scheduled learning rate and zeroes the
     * gradients. With gradient accumulation: {@code accumulate} each micro-batch, then call this once.
     *
     * @param loss   the loss to report in the result
     * @param tokens the number of predicted tokens to report
     */
    public Result update(double loss, int tokens) {
        double norm = maxGradNorm > 0 ? GradClip.clip(params, maxGradNorm) : GradClip.globalNorm(params);
        double lr = schedule.lr(optimizer.step());
        optimizer.update(params, lr);
        params.zeroGrad();
        return new Result(loss, tokens, norm, lr);
    }

    /**
     * Forward + loss + backward of one (micro-)batch, ACCUMULATING into the gradients (for gradient accumulation call it per
     * micro-batch with the total number of predicted tokens of all micro-batches as {@code numItems}, then clip and update).
     *
     * @param numItems the loss is sum / numItems; ≤ 0 means this batch's own number of predicted tokens (a mean)
     * @param countOut if non-null, receives this batch's number of predicted tokens in [0]
     * @return the loss of this batch as sum / numItems
     */
    public double accumulate(List<Example> batch, int numItems, int[] countOut) {
        if (encoder != null) encoder.forward();
        Batch b = prepare(batch);
        Tape tape = new Tape();
        // dropout masks are a pure function of (seed, optimizer step, micro-batch index): a resumed run draws the same ones
        if (microStep != optimizer.step()) { microStep = optimizer.step(); microIndex = 0; }
        long ds = new java.util.SplittableRandom(seed ^ (0x9E3779B97F4A7C15L * (microStep + 1)) ^ (0xC2B2AE3D27D4EB4FL * ++microIndex)).nextLong();
        tape.dropoutSeed = ds == 0 ? 1 : ds;
        tape.keepAttn = false;
        for (var layer : model.weights.layers) tape.keepAttn |= Backward.needsInput(layer.o, params);
        float[] hidden = model.forward(b.inputs, tape);
        int n = CrossEntropy.count(b.targets);
        if (countOut != null) countOut[0] = n;
        int denom = numItems > 0 ? numItems : n;
        if (denom == 0) return 0;
        float[] dHidden = new float[hidden.length];
        float[] dHead = params.gradOf(model.lmHead());
        double sum = distillation != null
                ? distillation.lossAndGrad(model, batch, prompt == null ? 0 : prompt.length / model.config.hidden(), hidden, b.targets, denom, dHidden, dHead)
                : CrossEntropy.lossAndGrad(hidden, model.config.hidden(), b.targets, model.lmHead(), model.config.finalLogitSoftcap(),
                1f / denom, dHidden, dHead);
        hidden = null;
        float[] dIn = Backward.run(model, tape, dHidden, params, prompt != null);
        if (prompt != null) {
            int H = model.config.hidden();
            float[] dPrompt = encoder != null ? new float[prompt.length] : params.gradOf(prompt);
            Kernels.virtualTokensBackward(tape.rowStart, dIn, H, prompt.length / H, dPrompt);
            if (encoder != null) encoder.backward(dPrompt, params);
        }
        return sum / denom;
    }

    /** Mean loss of a batch without gradients (evaluation). */
    public double loss(List<Example> batch) {
        if (encoder != null) encoder.forward();
        Batch b = prepare(batch);
        float[] hidden = model.forward(b.inputs, null);
        int n = CrossEntropy.count(b.targets);
        if (n == 0) return 0;
        return CrossEntropy.lossAndGrad(hidden, model.config.hidden(), b.targets, model.lmHead(), model.config.finalLogitSoftcap(),
                1f, null, null) / n;
    }

    private record Batch(List<Gemma3Model.Input> inputs, int[] targets) {}

    private Batch prepare(List<Example> batch) {
        if (batch.isEmpty()) throw new IllegalArgumentException("empty batch");
        for (Example e : batch) if (e.ids().length == 0) throw new UserException("training example with no tokens");
        int nv = prompt == null ? 0 : prompt.length / model.config.hidden();
        List<Gemma3Model.Input> inputs = new ArrayList<>();
        int rows = 0;
        for (Example e : batch) rows += nv + e.ids().length;
        int[] targets = new int[rows];
        int at = 0;
        for (Example e : batch) {
            inputs.add(new Gemma3Model.Input(model.newCache(), prompt, e.ids()));
            int[] lab = new int[nv + e.labels().length];
            java.util.Arrays.fill(lab, 0, nv, CrossEntropy.IGNORE);
            System.arraycopy(e.labels(), 0, lab, nv, e.labels().length);
            int[] t = CrossEntropy.shiftLabels(lab);
            System.arraycopy(t, 0, targets, at, t.length);
            at += t.length;
        }
        return new Batch(inputs, targets);
    }
}
