package dev.peft4j.cli;

import dev.peft4j.train.TrainConfig;
import dev.peft4j.train.Trainer;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Fine-tune a Gemma 3 model on instruction data (Dolly, Alpaca, any JSONL): prompt tuning, P-tuning, LoRA, (IA)³ or full.",
                "Writes a PEFT adapter (or a Hugging Face checkpoint for full fine-tuning), checkpoints, metrics.jsonl and loss_curve.svg."})
public final class TrainCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "base model directory or Hub repo id") Path model;
    @Option(names = "--tokenizer", description = "tokenizer directory (default: the model directory)") Path tokenizer;
    @Mixin DataArgs data;
    @Option(names = "--quantize", description = "quantize the frozen base at load: q8 (8-bit blocks of 32, QLoRA-style; not with --method full)") String quantize;
    @Option(names = "--method", required = true, description = "prompt-tuning, p-tuning, lora, ia3, full or distill") String method;

    @Option(names = "--teacher", description = "distill: the teacher model, a directory or Hub repo id with the student's vocabulary (e.g. google/gemma-3-1b-pt)") Path teacher;
    @Option(names = "--student", defaultValue = "full", description = "distill: what is trained in --model: full, lora or prompt-tuning, with their options (default ${DEFAULT-VALUE})") String student;
    @Option(names = "--kd-alpha", defaultValue = "0.5", description = "distill: loss = a*KD + (1-a)*CE on the labels (default ${DEFAULT-VALUE})") double kdAlpha;
    @Option(names = "--kd-beta", defaultValue = "0.5", description = "distill: beta of TRL's generalized JSD: 0 = forward KL(teacher||student), 1 = reverse KL (default ${DEFAULT-VALUE})") double kdBeta;
    @Option(names = "--kd-temperature", defaultValue = "1.0", description = "distill: both models' logits are divided by T (default ${DEFAULT-VALUE})") double kdTemperature;
    @Option(names = "--kd-scale-t2", description = "distill: multiply the KD term by T^2 (Hinton et al.)") boolean kdScaleT2;
    @Option(names = "--teacher-cache", description = "distill: folder for the teacher's top-k log-probabilities per example; later epochs and runs skip the teacher") Path teacherCache;
    @Option(names = "--teacher-top-k", defaultValue = "64", description = "distill with --teacher-cache: log-probabilities kept per token, the rest of the mass is one bucket (default ${DEFAULT-VALUE})") int teacherTopK;

    @Option(names = "--num-virtual-tokens", defaultValue = "20", description = "prompt tuning / P-tuning: virtual tokens (default ${DEFAULT-VALUE})") int numVirtualTokens;
    @Option(names = "--init", defaultValue = "random", description = "prompt tuning init: random, sample-vocab or text:\"...\" (default ${DEFAULT-VALUE})") String init;

    @Option(names = "--encoder-hidden-size", defaultValue = "0", description = "P-tuning: hidden size of the MLP prompt encoder (default 0: the model's hidden size)") int encoderHiddenSize;

    @Option(names = "--lora-r", defaultValue = "8", description = "LoRA rank (default ${DEFAULT-VALUE})") int loraR;
    @Option(names = "--lora-alpha", defaultValue = "16", description = "LoRA alpha (default ${DEFAULT-VALUE})") double loraAlpha;
    @Option(names = "--lora-dropout", defaultValue = "0", description = "LoRA dropout on the adapter input while training (default ${DEFAULT-VALUE})") double loraDropout;
    @Option(names = "--target-modules", split = ",",
            description = "LoRA / (IA)³ targets: names (q_proj,v_proj), all-linear, or a full-match regex (default: PEFT's for Gemma 3, "
                    + "q_proj,v_proj for LoRA, q_proj,v_proj,down_proj for (IA)³)") List<String> targetModules;
    @Option(names = "--feedforward-modules", split = ",",
            description = "(IA)³: targets whose input (not output) is scaled: names or a full-match regex (default down_proj)") List<String> feedforwardModules;
    @Option(names = "--use-rslora", description = "rank-stabilised LoRA scaling alpha/sqrt(r)") boolean useRslora;
    @Option(names = "--init-lora-weights", defaultValue = "true", description = "true (kaiming-uniform A, zero B) or gaussian (default ${DEFAULT-VALUE})") String initLoraWeights;

    @Option(names = "--epochs", defaultValue = "1", description = "epochs (ignored when --max-steps is given; default ${DEFAULT-VALUE})") int epochs;
    @Option(names = "--max-steps", defaultValue = "0", description = "optimizer steps (default 0: use --epochs)") int maxSteps;
    @Option(names = "--grad-accum", defaultValue = "1", description = "micro-batches per optimizer step (default ${DEFAULT-VALUE})") int gradAccum;
    @Option(names = "--lr", defaultValue = "3e-4", description = "peak learning rate (default ${DEFAULT-VALUE})") double lr;
    @Option(names = "--schedule", defaultValue = "linear", description = "constant, linear or cosine (default ${DEFAULT-VALUE})") String schedule;
    @Option(names = "--warmup-steps", defaultValue = "0", description = "linear warmup from 0 over N optimizer steps (default ${DEFAULT-VALUE})") int warmupSteps;
    @Option(names = "--weight-decay", defaultValue = "0.0", description = "AdamW decoupled weight decay (default ${DEFAULT-VALUE})") double weightDecay;
    @Option(names = "--max-grad-norm", defaultValue = "1.0", description = "clip the global gradient norm (0: off; default ${DEFAULT-VALUE})") double maxGradNorm;
    @Option(names = "--eval-every", defaultValue = "0", description = "validation loss every N steps (and at the end; default 0: only at the end)") int evalEvery;
    @Option(names = "--save-every", defaultValue = "0", description = "checkpoint every N steps (and at the end; default 0: only at the end)") int saveEvery;
    @Option(names = "--keep-checkpoints", defaultValue = "2", description = "checkpoints kept (default ${DEFAULT-VALUE})") int keepCheckpoints;
    @Option(names = "--save-dtype", defaultValue = "f32", description = "full fine-tuning: dtype of the saved model, f32 or bf16 (default ${DEFAULT-VALUE})") String saveDtype;
    @Option(names = "--output", required = true, description = "output directory") Path output;
    @Option(names = "--resume", description = "continue the run in --output from its last checkpoint") boolean resume;
    @Option(names = "--overwrite", description = "replace the earlier run that --output holds (a folder without a run is never deleted)") boolean overwrite;

    @Spec CommandSpec spec;

    /** Options that only some methods use: giving one to another method is a mistake, not something to ignore silently. */
    /** Distillation's own options (--method distill only). */
    static final List<String> DISTILL_OPTIONS = List.of("--teacher", "--student", "--kd-alpha", "--kd-beta", "--kd-temperature",
            "--kd-scale-t2", "--teacher-cache", "--teacher-top-k");
    private static final Map<String, List<String>> METHOD_OPTIONS = Map.of(
            "--num-virtual-tokens", List.of("prompt-tuning", "p-tuning"),
            "--init", List.of("prompt-tuning"),
            "--encoder-hidden-size", List.of("p-tuning"),
            "--lora-r", List.of("lora"),
            "--lora-alpha", List.of("lora"),
            "--lora-dropout", List.of("lora"),
            "--use-rslora", List.of("lora"),
            "--init-lora-weights", List.of("lora"),
            "--target-modules", List.of("lora", "ia3"),
            "--save-dtype", List.of("full"));

    @Override
    public Integer call() throws Exception {
        for (String d : DISTILL_OPTIONS) {
            if (spec.commandLine().getParseResult().hasMatchedOption(d) && !method.equals("distill")) {
                throw new UserException(d + ": only used with --method distill, not " + method);
            }
        }
        // the trained part's options: with --method distill they belong to --student
        String trained = method.equals("distill") ? student : method;
        for (var e : METHOD_OPTIONS.entrySet()) {
            if (spec.commandLine().getParseResult().hasMatchedOption(e.getKey()) && !e.getValue().contains(trained)) {
                throw new UserException(e.getKey() + ": only used with --method " + String.join(" or ", e.getValue())
                        + (method.equals("distill") ? " (or --student " + e.getValue().get(0) + ")" : "") + ", not " + trained);
            }
        }
        if (!saveDtype.equals("f32") && !saveDtype.equals("bf16")) throw new UserException("--save-dtype: expected f32 or bf16, got '" + saveDtype + "'");
        new Trainer(options(), data.toConfig(), System.out).run();
        return 0;
    }

    TrainConfig options() {
        TrainConfig c = new TrainConfig(model, output, method);
        c.tokenizer = tokenizer;
        c.resume = resume;
        c.numVirtualTokens = numVirtualTokens;
        c.init = init;
        c.encoderHiddenSize = encoderHiddenSize;
        c.loraR = loraR;
        c.loraAlpha = loraAlpha;
        c.targetModules = targetModules;
        c.feedforwardModules = feedforwardModules;
        c.useRslora = useRslora;
        c.initLoraWeights = initLoraWeights;
        c.loraDropout = loraDropout;
        c.epochs = epochs;
        c.maxSteps = maxSteps;
        c.gradAccum = gradAccum;
        c.lr = lr;
        c.schedule = schedule;
        c.warmupSteps = warmupSteps;
        c.weightDecay = weightDecay;
        c.maxGradNorm = maxGradNorm;
        c.evalEvery = evalEvery;
        c.saveEvery = saveEvery;
        c.keepCheckpoints = keepCheckpoints;
        c.saveBf16 = saveDtype.equals("bf16");
        c.teacher = teacher;
        c.student = student;
        c.kdAlpha = kdAlpha;
        c.kdBeta = kdBeta;
        c.kdTemperature = kdTemperature;
        c.kdScaleT2 = kdScaleT2;
        c.teacherCache = teacherCache;
        c.teacherTopK = teacherTopK;
        c.overwrite = overwrite;
        c.quantize = dev.peft4j.model.Quantization.parse(quantize);
        return c;
    }
}
