package dev.peft4j.train;

import java.nio.file.Path;
import java.util.List;

/**
 * Everything of a training run that is not a data setting ({@link dev.peft4j.data.DataConfig}): model, output, method and its
 * options, optimisation and checkpointing. Fields default to {@code peft4j train}'s defaults; a field of another method than
 * {@link #method} is ignored by the trainer (the CLI refuses it).
 */
public final class TrainConfig {
    /** Base model: a directory or a Hub repo id. */
    public Path model;
    /** Tokenizer directory; null for the model directory. */
    public Path tokenizer;
    /** Output directory (adapter or checkpoint, checkpoints/, metrics, loss curve). */
    public Path output;
    /** Continue the run in {@link #output} from its last checkpoint. */
    public boolean resume;
    /** prompt-tuning, p-tuning, lora, ia3, full or distill. */
    public String method;

    /** Distillation: the teacher model, a directory or a Hub repo id (same vocabulary as the student). */
    public Path teacher;
    /** Distillation: what is trained in the student ({@link #model}): full, lora or prompt-tuning (with their options). */
    public String student = "full";
    /** Distillation: loss = kdAlpha·KD + (1 − kdAlpha)·CE on the labels. */
    public double kdAlpha = 0.5;
    /** Distillation: β of TRL's generalized JSD (0 = forward KL(teacher‖student), 1 = reverse KL). */
    public double kdBeta = 0.5;
    /** Distillation: both logits are divided by this temperature. */
    public double kdTemperature = 1.0;
    /** Distillation: multiply KD by T² (Hinton et al.). */
    public boolean kdScaleT2;
    /** Distillation: folder of the teacher's cached top-k log-probabilities (null: run the teacher on every batch). */
    public Path teacherCache;
    /** Distillation with {@link #teacherCache}: log-probabilities kept per position (the rest of the mass is one bucket). */
    public int teacherTopK = 64;

    /** Prompt tuning / P-tuning: virtual tokens. */
    public int numVirtualTokens = 20;
    /** Prompt tuning init: random, sample-vocab or text:"...". */
    public String init = "random";
    /** P-tuning: hidden size of the MLP prompt encoder (0: the model's hidden size). */
    public int encoderHiddenSize;

    /** LoRA rank. */
    public int loraR = 8;
    /** LoRA alpha. */
    public double loraAlpha = 16;
    /** LoRA / (IA)3 targets: names, all-linear, or a full-match regex; null for PEFT's defaults for Gemma 3. */
    public List<String> targetModules;
    /** (IA)3: targets whose input is scaled; null for down_proj. */
    public List<String> feedforwardModules;
    /** Rank-stabilised LoRA scaling alpha/sqrt(r). */
    public boolean useRslora;
    /** LoRA init: true (kaiming-uniform A, zero B) or gaussian. */
    public String initLoraWeights = "true";
    /** LoRA dropout on the adapter input while training. */
    public double loraDropout;

    /** Epochs (ignored when {@link #maxSteps} is positive). */
    public int epochs = 1;
    /** Optimizer steps; 0 to use {@link #epochs}. */
    public int maxSteps;
    /** Micro-batches per optimizer step. */
    public int gradAccum = 1;
    /** Peak learning rate. */
    public double lr = 3e-4;
    /** constant, linear or cosine. */
    public String schedule = "linear";
    /** Linear warmup from 0 over N optimizer steps. */
    public int warmupSteps;
    /** AdamW decoupled weight decay. */
    public double weightDecay;
    /** Clip the global gradient norm (0: off). */
    public double maxGradNorm = 1.0;
    /** Validation loss every N steps (and at the end; 0: only at the end). */
    public int evalEvery;
    /** Checkpoint every N steps (and at the end; 0: only at the end). */
    public int saveEvery;
    /** Checkpoints kept. */
    public int keepCheckpoints = 2;
    /** Full fine-tuning: save the model in bf16 instead of f32. */
    public boolean saveBf16;
    /**
     * The frozen base's weights: as stored, or Q8 (quantized at load, QLoRA-style: the adapter's trainable weights stay float32
     * master weights). Not with full fine-tuning, which trains every weight.
     */
    public dev.peft4j.model.Quantization quantize = dev.peft4j.model.Quantization.NONE;
    /** Replace the earlier run that {@link #output} holds (a folder without a run is never deleted). */
    public boolean overwrite;

    public TrainConfig() { }

    public TrainConfig(Path model, Path output, String method) {
        this.model = model;
        this.output = output;
        this.method = method;
    }
}
