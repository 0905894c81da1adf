package dev.peft4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.data.Batch;
import dev.peft4j.data.Batcher;
import dev.peft4j.data.DataConfig;
import dev.peft4j.data.TrainingData;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.CheckpointWriter;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.model.Models;
import dev.peft4j.peft.AdapterKeys;
import dev.peft4j.peft.AdapterWriter;
import dev.peft4j.peft.IA3Config;
import dev.peft4j.peft.PromptEncoderConfig;
import dev.peft4j.peft.LoraConfig;
import dev.peft4j.peft.LoraInit;
import dev.peft4j.peft.LoraTarget;
import dev.peft4j.peft.PromptInit;
import dev.peft4j.peft.PromptTuningConfig;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.AtomicFiles;
import dev.peft4j.util.Fmt;
import dev.peft4j.util.LossCurveSvg;
import dev.peft4j.util.MetricsWriter;
import dev.peft4j.util.RunSummary;
import dev.peft4j.util.TrainingProgress;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;

/**
 * The training loop of {@code peft4j train}: prompt tuning, P-tuning, LoRA, (IA)³ or full fine-tuning of a Gemma 3 model on
 * instruction data,
 * with gradient accumulation, AdamW, a learning-rate schedule, clipping, validation loss, atomic checkpoints every N steps
 * (adapter or weights + optimizer state + data position) and exact resume: a killed run resumed from its last checkpoint ends
 * with the same result as an uninterrupted one (same seed, same thread count).
 *
 * <p>Output directory: the PEFT adapter (adapter_config.json + adapter_model.safetensors) or, for full fine-tuning, a Hugging
 * Face checkpoint; plus training_args.json, metrics.jsonl, loss_curve.svg, train_summary.json and checkpoints/step-N/.
 */
public final class Trainer {
    /** Called after each optimizer step (after any checkpoint); tests use it to simulate a crash. */
    public interface StepHook { void after(long step); }

    /**
     * What a {@link Listener} sees after each optimizer step (after any checkpoint of that step).
     *
     * @param tokensPerSecond training tokens per second of this process (a resumed run counts from its restart)
     * @param etaSeconds      estimated seconds to the last step at this process's pace
     * @param valLoss         the validation loss computed at this step, or null when none was
     */
    public record Progress(long step, long totalSteps, int epoch, double loss, double lr, double gradNorm, long tokens,
                           double tokensPerSecond, double etaSeconds, Double valLoss) {}

    /** Receives {@link Progress} after every optimizer step, on the training thread. */
    public interface Listener { void onStep(Progress p); }

    private static final ObjectMapper JSON = new ObjectMapper();

    private final TrainConfig o;
    private final DataConfig data;
    private final PrintStream log;
    /** --overwrite of an earlier run: it is deleted only once the model, data and settings have loaded without error. */
    private boolean replaceEarlierRun;
    private StepHook hook = s -> { };
    private Listener listener = p -> { };
    private java.util.function.BooleanSupplier cancelRequested = () -> false;
    private boolean cancelled;
    private boolean consoleProgress = true;
    // the adapter config of the run's method (set in run())
    private PromptTuningConfig ptCfg;
    private LoraConfig loraCfg;
    private IA3Config ia3Cfg;
    private PromptEncoderConfig peCfg;
    private PromptEncoder encoder;
    /** P-tuning checkpoints: the encoder's tensors (PEFT's adapter file holds only its outputs). */
    static final String ENCODER_FILE = "prompt_encoder.safetensors";

    public Trainer(TrainConfig o, DataConfig data, PrintStream log) {
        this.o = o;
        this.data = data;
        this.log = log;
    }

    public Trainer onStep(StepHook h) {
        this.hook = h;
        return this;
    }

    /** Receives every step's progress (the console progress on stderr is separate: {@link #consoleProgress}). */
    public Trainer listener(Listener l) {
        this.listener = l;
        return this;
    }

    /**
     * Checked after every optimizer step: when it returns true the run stops cleanly after writing a checkpoint of that step
     * (the final adapter is not written), so the same settings with {@code resume} continue it and end exactly as an
     * uninterrupted run. {@link #cancelled()} then says so.
     */
    public Trainer cancelWhen(java.util.function.BooleanSupplier c) {
        this.cancelRequested = c;
        return this;
    }

    /** Whether the last {@link #run} stopped early because {@link #cancelWhen} asked it to. */
    public boolean cancelled() { return cancelled; }

    /** Whether to draw the progress line on stderr (default true). */
    public Trainer consoleProgress(boolean on) {
        this.consoleProgress = on;
        return this;
    }

    /** The result of a run. */
    public record Result(long steps, double finalLoss, Double finalValLoss, Path output) {}

    public Result run() throws IOException {
        validate();
        cancelled = false;
        Path out = o.output;
        ObjectNode args = argsJson();
        Path ckptRoot = out.resolve("checkpoints");
        Path resumeFrom = prepareOutput(out, args, ckptRoot);

        Path modelDir = Models.resolve(o.model, "model");
        Gemma3Model model = Gemma3Model.load(modelDir, o.quantize);
        if (kind().equals("full") && model.weights.embed.dtype == dev.peft4j.tensor.DType.Q8_0) {
            model.weights.close();
            throw new UserException(modelDir + ": a q8 checkpoint cannot be fully fine-tuned (its weights are 8-bit); train an adapter, or start from the float checkpoint");
        }
        Path tokDir = o.tokenizer != null ? o.tokenizer : modelDir;
        try (Tokenizer tok = Tokenizer.load(tokDir)) {
            return train(out, args, ckptRoot, resumeFrom, modelDir, model, tok);
        } finally {
            model.weights.close();   // the memory-mapped checkpoint files
        }
    }

    private Result train(Path out, ObjectNode args, Path ckptRoot, Path resumeFrom, Path modelDir, Gemma3Model model, Tokenizer tok)
            throws IOException {
        TrainingData td = data.prepare(tok);
        log.println("data: " + td.summary());
        if (td.train().isEmpty()) throw new UserException(data.data + ": no training examples left after filtering and the split");
        Batcher batcher = data.batcher(td.train(), tok);
        int stepsPerEpoch = Math.max(1, (batcher.batchesPerEpoch() + o.gradAccum - 1) / o.gradAccum);
        long total = o.maxSteps > 0 ? o.maxSteps : (long) o.epochs * stepsPerEpoch;

        int H = model.config.hidden();
        SplittableRandom rng = new SplittableRandom(data.seed);
        float[] prompt = null;
        Params params;
        switch (kind()) {
            case "prompt-tuning" -> {
                ptCfg = promptConfig(modelDir);
                prompt = initPrompt(model, tok, rng);
                params = Params.promptTuning(prompt, H);
            }
            case "lora" -> {
                loraCfg = loraConfig(modelDir);
                attachLora(model, loraCfg, rng);
                params = Params.lora(model);
            }
            case "p-tuning" -> {
                peCfg = pTuningConfig(modelDir);
                encoder = PromptEncoder.init(o.numVirtualTokens, H, peCfg.encoderHiddenSize(), new SplittableRandom(rng.nextLong()));
                prompt = encoder.output();
                params = encoder.params();
            }
            case "ia3" -> {
                ia3Cfg = ia3Config(modelDir);
                for (IA3Config.Target t : ia3Cfg.resolve(model.weights.linears().stream().map(l -> l.name).toList())) {
                    Linear l = model.weights.linears().stream().filter(x -> x.name.equals(t.moduleName())).findFirst().orElseThrow();
                    float[] ones = new float[t.feedforward() ? l.in() : l.out()];
                    java.util.Arrays.fill(ones, 1f);   // init_ia3_weights=True
                    l.ia3 = new Linear.Ia3(ones, t.feedforward());
                }
                params = Params.ia3(model);
            }
            default -> params = Params.full(model);
        }
        AdamW opt = AdamW.defaults(o.weightDecay);
        LrSchedule sched = LrSchedule.of(o.schedule, o.lr, o.warmupSteps, (int) Math.min(Integer.MAX_VALUE, total));
        TrainStep ts = encoder != null ? TrainStep.pTuning(model, params, encoder, opt, sched, o.maxGradNorm, data.seed)
                : new TrainStep(model, params, prompt, opt, sched, o.maxGradNorm, data.seed);
        if (o.method.equals("distill")) ts.distillation(openDistillation(model));
        try {
            return loop(out, args, ckptRoot, resumeFrom, modelDir, model, tok, td, batcher, stepsPerEpoch, total, H, prompt, params, opt, sched, ts);
        } finally {
            if (ts.distillation() != null) ts.distillation().close();
        }
    }

    private Result loop(Path out, ObjectNode args, Path ckptRoot, Path resumeFrom, Path modelDir, Gemma3Model model, Tokenizer tok,
                        TrainingData td, Batcher batcher, int stepsPerEpoch, long total, int H, float[] prompt, Params params,
                        AdamW opt, LrSchedule sched, TrainStep ts) throws IOException {

        long step = 0;
        long tokensBefore = 0;
        double elapsedBefore = 0;
        if (resumeFrom != null) {
            ObjectNode state = (ObjectNode) JSON.readTree(resumeFrom.resolve("trainer_state.json").toFile());
            restoreParams(resumeFrom, params, prompt, H);
            opt.load(resumeFrom.resolve("optimizer.safetensors"), params);
            batcher.restore(Batcher.State.fromJson(state.get("data_position").toString()));
            step = state.get("step").asLong();
            tokensBefore = state.path("tokens").asLong();
            elapsedBefore = state.path("elapsed_s").asDouble();
            truncateMetrics(out.resolve("metrics.jsonl"), step);
            log.printf("resumed from %s at step %d of %d%n", resumeFrom, step, total);
        } else {
            if (replaceEarlierRun) {
                AtomicFiles.deleteTree(out);
                Files.createDirectories(out);
            }
            AtomicFiles.writeString(out.resolve("training_args.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(args) + "\n");
        }
        log.printf("training: %s on %s, %s trainable parameters, %d examples (%d validation), %d steps (%d per epoch), batch %d x %d accumulation, %d threads%n",
                o.method, modelDir, Fmt.count(params.numel()), td.train().size(), td.validation().size(), total, stepsPerEpoch,
                data.batchSize, o.gradAccum, Parallel.threads());

        double lastLoss = Double.NaN;
        Double lastVal = null;
        long tokens = 0;
        long t0 = System.nanoTime();
        try (MetricsWriter metrics = new MetricsWriter(out.resolve("metrics.jsonl"));
             TrainingProgress progress = consoleProgress ? TrainingProgress.onStderr(total, step)
                     : new TrainingProgress(new PrintStream(java.io.OutputStream.nullOutputStream()), total, step, false, System::nanoTime)) {
            long startStep = step;
            while (step < total) {
                List<List<TrainStep.Example>> micro = new ArrayList<>();
                int numItems = 0, batchTokens = 0;
                int epoch = batcher.epoch();
                // as transformers' Trainer: an update never reaches into the next epoch; the last one of an epoch takes
                // the remaining micro-batches, even fewer than --grad-accum
                for (int k = 0; k < o.gradAccum && batcher.epoch() == epoch; k++) {
                    Batch b = batcher.next();
                    micro.add(examples(b));
                    numItems += b.targetTokens();
                    batchTokens += b.tokens();
                }
                params.zeroGrad();
                double loss = 0;
                for (List<TrainStep.Example> m : micro) loss += ts.accumulate(m, Math.max(1, numItems), null);
                double norm = o.maxGradNorm > 0 ? GradClip.clip(params, o.maxGradNorm) : GradClip.globalNorm(params);
                double lr = sched.lr(opt.step());
                opt.update(params, lr);
                step++;
                tokens += batchTokens;
                lastLoss = loss;
                double secs = (System.nanoTime() - t0) / 1e9;
                Map<String, Object> rec = new LinkedHashMap<>();
                rec.put("step", step);
                rec.put("epoch", batcher.epoch());
                rec.put("loss", loss);
                if (ts.distillation() != null) {
                    double[] terms = ts.distillation().takeTerms();
                    rec.put("kd_loss", terms[0]);
                    rec.put("ce_loss", terms[1]);
                }
                rec.put("lr", lr);
                rec.put("grad_norm", norm);
                rec.put("tokens", tokensBefore + tokens);
                rec.put("tokens_per_s", tokens / Math.max(1e-9, secs));
                boolean last = step == total;
                Double valNow = null;
                if ((o.evalEvery > 0 && step % o.evalEvery == 0) || (last && !td.validation().isEmpty())) {
                    if (!td.validation().isEmpty()) {
                        lastVal = validationLoss(ts, td, tok);
                        valNow = lastVal;
                        rec.put("val_loss", lastVal);
                        progress.message(String.format("step %d: validation loss %s", step, Fmt.loss(lastVal)));
                    }
                }
                metrics.write(rec);
                progress.update(step, loss, lr, tokens);
                if ((o.saveEvery > 0 && step % o.saveEvery == 0) || last) {
                    checkpoint(ckptRoot, step, model, params, prompt, opt, batcher, tokensBefore + tokens, elapsedBefore + secs);
                    if (last || o.evalEvery > 0) LossCurveSvg.writeFromMetrics(out.resolve("metrics.jsonl"), out.resolve("loss_curve.svg"), title(modelDir));
                }
                double eta = (total - step) * secs / Math.max(1, step - startStep);
                listener.onStep(new Progress(step, total, batcher.epoch(), loss, lr, norm, tokensBefore + tokens,
                        tokens / Math.max(1e-9, secs), eta, valNow));
                hook.after(step);
                if (!last && cancelRequested.getAsBoolean()) {
                    if (!(o.saveEvery > 0 && step % o.saveEvery == 0)) {
                        checkpoint(ckptRoot, step, model, params, prompt, opt, batcher, tokensBefore + tokens, elapsedBefore + secs);
                    }
                    cancelled = true;
                    break;
                }
            }
        }
        if (cancelled) {
            LossCurveSvg.writeFromMetrics(out.resolve("metrics.jsonl"), out.resolve("loss_curve.svg"), title(modelDir));
            log.printf("training cancelled after step %d of %d; checkpoint in %s (continue with resume)%n", step, total, ckptRoot);
            return new Result(step, lastLoss, lastVal, out);
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        // the final result at the top of the output directory
        saveResult(out, model, prompt);
        LossCurveSvg.writeFromMetrics(out.resolve("metrics.jsonl"), out.resolve("loss_curve.svg"), title(modelDir));
        ObjectNode summary = JSON.createObjectNode();
        summary.put("method", o.method);
        summary.put("steps", step);
        summary.put("final_loss", lastLoss);
        if (lastVal != null) summary.put("final_val_loss", lastVal);
        summary.put("examples_train", td.train().size());
        summary.put("examples_validation", td.validation().size());
        summary.put("examples_used", td.summary().used());
        summary.put("examples_skipped", td.summary().skippedTotal());
        summary.put("examples_truncated", td.summary().truncated());
        summary.put("tokens_this_run", tokens);
        summary.put("seconds_this_run", secs);
        summary.put("tokens_per_s", tokens / Math.max(1e-9, secs));
        summary.put("threads", Parallel.threads());
        summary.put("trainable_parameters", params.numel());
        summary.put("tokens_total", tokensBefore + tokens);
        summary.put("seconds_total", elapsedBefore + secs);
        if (ts.distillation() != null) {
            summary.put("teacher", String.valueOf(o.teacher));
            summary.put("teacher_cache_hits", ts.distillation().cacheHits());
            summary.put("teacher_cache_misses", ts.distillation().cacheMisses());
        }
        AtomicFiles.writeString(out.resolve("train_summary.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(summary) + "\n");
        RunSummary rs = new RunSummary("training finished")
                .add("method", o.method)
                .add("steps", step + " of " + total)
                .add("final train loss", Fmt.loss(lastLoss))
                .add("final validation loss", lastVal == null ? "-" : Fmt.loss(lastVal))
                .add("examples", td.summary().used() + " used, " + td.summary().skippedTotal() + " skipped, " + td.summary().truncated() + " truncated")
                .add("time", Fmt.duration(secs))
                .add("throughput", Fmt.rate(tokens / Math.max(1e-9, secs)) + " tokens/s")
                .add("output", out.toString());
        log.println(rs.render());
        return new Result(step, lastLoss, lastVal, out);
    }

    // ------------------------------------------------------------------ setup

    private void validate() {
        if (!List.of("prompt-tuning", "p-tuning", "lora", "ia3", "full", "distill").contains(o.method)) {
            throw new UserException("--method: expected prompt-tuning, p-tuning, lora, ia3, full or distill, got '" + o.method + "'");
        }
        if (o.quantize != dev.peft4j.model.Quantization.NONE && kind().equals("full")) {
            throw new UserException("--quantize: full fine-tuning trains every weight in float32; quantize a frozen base only (--method lora, ia3, prompt-tuning or p-tuning)");
        }
        if (o.method.equals("distill")) validateDistillation();
        if (o.encoderHiddenSize < 0) throw new UserException("--encoder-hidden-size: expected >= 1 (or 0 for the hidden size), got " + o.encoderHiddenSize);
        if (o.feedforwardModules != null && !kind().equals("ia3")) throw new UserException("--feedforward-modules: only used with --method ia3");
        if (o.maxSteps <= 0 && o.epochs <= 0) throw new UserException("give --epochs E (> 0) or --max-steps N (> 0)");
        if (o.gradAccum < 1) throw new UserException("--grad-accum: expected >= 1, got " + o.gradAccum);
        if (data.batchSize < 1) throw new UserException("--batch-size: expected >= 1, got " + data.batchSize);
        if (!(o.lr > 0)) throw new UserException("--lr: expected > 0, got " + o.lr);
        if (o.warmupSteps < 0) throw new UserException("--warmup-steps: expected >= 0, got " + o.warmupSteps);
        if (o.weightDecay < 0) throw new UserException("--weight-decay: expected >= 0, got " + o.weightDecay);
        if (o.numVirtualTokens < 1) throw new UserException("--num-virtual-tokens: expected >= 1, got " + o.numVirtualTokens);
        if (o.loraR < 1) throw new UserException("--lora-r: expected >= 1, got " + o.loraR);
        if (o.loraDropout < 0 || o.loraDropout >= 1) throw new UserException("--lora-dropout: expected a value in [0, 1), got " + o.loraDropout);
        if (!o.initLoraWeights.equals("true") && !o.initLoraWeights.equals("gaussian")) {
            throw new UserException("--init-lora-weights: expected true or gaussian, got '" + o.initLoraWeights + "'");
        }
        if (o.maxGradNorm < 0) throw new UserException("--max-grad-norm: expected >= 0 (0 = off), got " + o.maxGradNorm);
        if (o.evalEvery < 0) throw new UserException("--eval-every: expected >= 0 (0 = only at the end), got " + o.evalEvery);
        if (o.saveEvery < 0) throw new UserException("--save-every: expected >= 0 (0 = only at the end), got " + o.saveEvery);
        if (o.keepCheckpoints < 1) throw new UserException("--keep-checkpoints: expected >= 1, got " + o.keepCheckpoints);
        if (o.output == null) throw new UserException("--output: an output directory is required");
        if (Files.exists(o.output) && !Files.isDirectory(o.output)) {
            throw new UserException("--output: " + o.output + " is a file, expected a directory");
        }
        LrSchedule.of(o.schedule, o.lr, 0, 1);   // an unknown --schedule fails here, before the data and model load
    }

    /** Checks the output directory; returns the checkpoint to resume from (or null for a fresh run). */
    private Path prepareOutput(Path out, ObjectNode args, Path ckptRoot) throws IOException {
        Path argsFile = out.resolve("training_args.json");
        boolean hasRun = Files.isRegularFile(argsFile);
        if (o.resume) {
            if (!hasRun) throw new UserException(out + ": nothing to resume (no training_args.json); start without --resume");
            JsonNode before = JSON.readTree(argsFile.toFile());
            List<String> diff = differences(before, args);
            if (!diff.isEmpty()) {
                throw new UserException(out + ": --resume with different settings than the run there (" + String.join(", ", diff) + ")");
            }
            Path last = latestCheckpoint(ckptRoot);
            if (last == null) {
                log.println("no checkpoint in " + ckptRoot + " yet: starting from the beginning");
                return null;
            }
            return last;
        }
        if (Files.isDirectory(out)) {
            boolean empty;
            try (Stream<Path> s = Files.list(out)) {
                empty = s.findAny().isEmpty();
            }
            if (!empty && !hasRun) {
                // --overwrite replaces a run, never an arbitrary folder (a mistyped --output must not delete someone's files)
                throw new UserException(out + ": directory is not empty and holds no peft4j run (no training_args.json); choose another --output");
            }
            if (!empty && !o.overwrite) {
                JsonNode before = JSON.readTree(argsFile.toFile());
                boolean same = differences(before, args).isEmpty();
                throw new UserException(out + ": already holds " + (same ? "a run with these settings; continue it with --resume" : "a different run")
                        + " (or use another --output, or --overwrite to replace it)");
            }
            replaceEarlierRun = !empty;
        }
        Files.createDirectories(out);
        return null;
    }

    private static List<String> differences(JsonNode a, JsonNode b) {
        List<String> d = new ArrayList<>();
        var names = new java.util.TreeSet<String>();
        a.fieldNames().forEachRemaining(names::add);
        b.fieldNames().forEachRemaining(names::add);
        for (String n : names) {
            if (n.equals("resume") || n.equals("overwrite")) continue;
            if (!a.path(n).toString().equals(b.path(n).toString())) d.add(n + ": " + a.path(n) + " -> " + b.path(n));
        }
        return d;
    }

    /** Whether the run in {@code output} has a checkpoint to resume from. */
    public static boolean hasCheckpoint(Path output) throws IOException {
        return latestCheckpoint(output.resolve("checkpoints")) != null;
    }

    static Path latestCheckpoint(Path root) throws IOException {
        List<Path> all = checkpoints(root);
        for (int i = all.size() - 1; i >= 0; i--) if (Files.isRegularFile(all.get(i).resolve("trainer_state.json"))) return all.get(i);
        return null;
    }

    /** The {@code step-N} folders under {@code root}, oldest (smallest N) first; by number, so step-1000000 follows step-999999. */
    static List<Path> checkpoints(Path root) throws IOException {
        if (!Files.isDirectory(root)) return List.of();
        try (Stream<Path> s = Files.list(root)) {
            return s.filter(p -> p.getFileName().toString().matches("step-\\d+"))
                    .sorted(Comparator.comparingLong(p -> Long.parseLong(p.getFileName().toString().substring(5))))
                    .toList();
        }
    }

    private ObjectNode argsJson() {
        ObjectNode a = JSON.createObjectNode();
        a.put("model", String.valueOf(o.model));
        a.put("method", o.method);
        if (o.quantize != dev.peft4j.model.Quantization.NONE) a.put("quantize", o.quantize.id());
        if (o.method.equals("distill")) distillationArgs(a);
        if (kind().equals("prompt-tuning")) {
            a.put("num_virtual_tokens", o.numVirtualTokens);
            a.put("init", o.init);
        }
        if (kind().equals("p-tuning")) {
            a.put("num_virtual_tokens", o.numVirtualTokens);
            a.put("encoder_hidden_size", o.encoderHiddenSize);
        }
        if (kind().equals("lora")) {
            a.put("lora_r", o.loraR);
            a.put("lora_alpha", o.loraAlpha);
            var t = a.putArray("target_modules");
            targetModules().forEach(t::add);
            a.put("use_rslora", o.useRslora);
            a.put("init_lora_weights", o.initLoraWeights);
        }
        if (kind().equals("ia3")) {
            var t = a.putArray("target_modules");
            targetModules().forEach(t::add);
            var f = a.putArray("feedforward_modules");
            feedforwardModules().forEach(f::add);
        }
        a.put("epochs", o.epochs);
        a.put("max_steps", o.maxSteps);
        a.put("batch_size", data.batchSize);
        a.put("grad_accum", o.gradAccum);
        a.put("lr", o.lr);
        a.put("schedule", o.schedule);
        a.put("warmup_steps", o.warmupSteps);
        a.put("weight_decay", o.weightDecay);
        a.put("max_grad_norm", o.maxGradNorm);
        a.put("eval_every", o.evalEvery);
        a.put("save_every", o.saveEvery);
        a.put("seed", data.seed);
        a.put("data", String.valueOf(data.data));
        if (data.data != null && data.data.getFileName().toString().toLowerCase(java.util.Locale.ROOT).contains("databricks-dolly")) {
            a.put("dataset", "databricks/databricks-dolly-15k");   // the model card's `datasets:` entry
        }
        a.put("template", data.template);
        a.put("max_seq_len", data.maxSeqLen);
        a.put("truncate", data.truncate);
        a.put("val_size", data.valSize);
        a.put("fields", data.fields);
        if (data.categories != null) {
            var c = a.putArray("categories");
            data.categories.forEach(c::add);
        }
        a.put("bucket", data.bucket);
        a.put("threads", Parallel.threads());
        return a;
    }

    // ------------------------------------------------------------------ distillation

    /** What the run trains: the method, or for distillation the student's method (full, lora or prompt-tuning). */
    private String kind() {
        return "distill".equals(o.method) ? o.student : o.method;
    }

    private void validateDistillation() {
        if (o.teacher == null) throw new UserException("--teacher: --method distill needs a teacher model (a directory or a Hub repo id)");
        if (!List.of("full", "lora", "prompt-tuning").contains(o.student)) {
            throw new UserException("--student: expected full, lora or prompt-tuning, got '" + o.student + "'");
        }
        if (!(o.kdAlpha >= 0 && o.kdAlpha <= 1)) throw new UserException("--kd-alpha: expected a value in [0, 1], got " + o.kdAlpha);
        if (!(o.kdBeta >= 0 && o.kdBeta <= 1)) throw new UserException("--kd-beta: expected a value in [0, 1], got " + o.kdBeta);
        if (!(o.kdTemperature > 0)) throw new UserException("--kd-temperature: expected > 0, got " + o.kdTemperature);
        if (o.teacherTopK < 1) throw new UserException("--teacher-top-k: expected >= 1, got " + o.teacherTopK);
        if (o.teacherCache != null && Files.exists(o.teacherCache) && !Files.isDirectory(o.teacherCache)) {
            throw new UserException("--teacher-cache: " + o.teacherCache + " is a file, expected a directory");
        }
    }

    private void distillationArgs(ObjectNode a) {
        a.put("student", o.student);
        a.put("teacher", String.valueOf(o.teacher));
        a.put("kd_alpha", o.kdAlpha);
        a.put("kd_beta", o.kdBeta);
        a.put("kd_temperature", o.kdTemperature);
        a.put("kd_scale_t2", o.kdScaleT2);
        // the cache folder itself does not change the result; whether the top-k approximation is used does
        a.put("teacher_top_k", o.teacherCache != null ? o.teacherTopK : 0);
    }

    /** Loads the teacher (memory-mapped, forward only) and opens its cache. */
    private Distillation openDistillation(Gemma3Model student) {
        Path dir = Models.resolve(o.teacher, "teacher");
        Gemma3Model teacher = Gemma3Model.load(dir);
        try {
            TeacherCache cache = o.teacherCache == null ? null
                    : TeacherCache.open(o.teacherCache, teacher, o.kdTemperature, Math.min(o.teacherTopK, teacher.config.vocabSize()));
            log.printf("teacher: %s (%d layers, hidden %d)%s%n", dir, teacher.config.layers(), teacher.config.hidden(),
                    cache == null ? "" : ", top-" + o.teacherTopK + " cache " + cache.folder());
            return new Distillation(teacher, student, o.kdAlpha, o.kdBeta, o.kdTemperature, o.kdScaleT2, cache, o.teacherTopK);
        } catch (RuntimeException e) {
            teacher.weights.close();
            throw e;
        }
    }

    private String baseName(Path modelDir) {
        return o.model.toString();
    }

    private PromptTuningConfig promptConfig(Path modelDir) throws IOException {
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("num_virtual_tokens", o.numVirtualTokens);
        v.put("base_model_name_or_path", baseName(modelDir));
        String init = o.init;
        if (init.startsWith("text:")) {
            v.put("prompt_tuning_init", "TEXT");
            v.put("prompt_tuning_init_text", init.substring(5));
            v.put("tokenizer_name_or_path", o.tokenizer != null ? o.tokenizer.toString() : baseName(modelDir));
        } else if (init.equals("random")) {
            v.put("prompt_tuning_init", "RANDOM");
        } else if (init.equals("sample-vocab")) {
            v.put("prompt_tuning_init", "SAMPLE_VOCAB");
        } else {
            throw new UserException("--init: expected random, sample-vocab or text:\"...\", got '" + init + "'");
        }
        return PromptTuningConfig.create(v).withModelConfig(JSON.readTree(modelDir.resolve("config.json").toFile()));
    }

    private float[] initPrompt(Gemma3Model model, Tokenizer tok, SplittableRandom rng) {
        int n = o.numVirtualTokens;
        String init = o.init;
        if (init.startsWith("text:")) {
            String text = init.substring(5);
            if (text.isEmpty()) throw new UserException("--init text: the init text is empty");
            return PromptInit.text(model, tok.encode(text, tok.addsBos()), n);
        }
        if (init.equals("sample-vocab")) return PromptInit.sampleVocab(model, n, rng);
        return PromptInit.random(n, model.config.hidden(), rng);
    }

    /** --target-modules, or the method's PEFT default for gemma3_text. */
    private List<String> targetModules() {
        if (o.targetModules != null) return o.targetModules;
        return kind().equals("ia3") ? IA3Config.GEMMA3_DEFAULT_TARGETS : LoraConfig.GEMMA3_DEFAULT_TARGETS;
    }

    /** --feedforward-modules, or PEFT's default for gemma3_text (down_proj). */
    private List<String> feedforwardModules() {
        return o.feedforwardModules != null ? o.feedforwardModules : IA3Config.GEMMA3_DEFAULT_FEEDFORWARD;
    }

    /** A module list as PEFT takes it: one "all-linear" or regex entry becomes a string, else a list. */
    private static Object modulesValue(List<String> tm) {
        if (tm.size() == 1 && (tm.get(0).equals(LoraConfig.ALL_LINEAR) || tm.get(0).matches(".*[\\\\^$*+?()\\[\\]|].*"))) {
            return tm.get(0);   // "all-linear" or a full-match regex
        }
        return tm;
    }

    private PromptEncoderConfig pTuningConfig(Path modelDir) throws IOException {
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("num_virtual_tokens", o.numVirtualTokens);
        v.put("encoder_reparameterization_type", "MLP");
        if (o.encoderHiddenSize > 0) v.put("encoder_hidden_size", o.encoderHiddenSize);
        v.put("base_model_name_or_path", baseName(modelDir));
        return PromptEncoderConfig.create(v).withModelConfig(JSON.readTree(modelDir.resolve("config.json").toFile()));
    }

    private IA3Config ia3Config(Path modelDir) {
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("target_modules", modulesValue(targetModules()));
        if (o.feedforwardModules != null) v.put("feedforward_modules", modulesValue(o.feedforwardModules));
        v.put("base_model_name_or_path", baseName(modelDir));
        IA3Config c = IA3Config.create(v);
        c.requireSupported();
        return c;
    }

    private LoraConfig loraConfig(Path modelDir) {
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("r", o.loraR);
        v.put("lora_alpha", o.loraAlpha);
        v.put("target_modules", modulesValue(targetModules()));
        v.put("use_rslora", o.useRslora);
        v.put("lora_dropout", o.loraDropout);
        v.put("init_lora_weights", o.initLoraWeights.equals("gaussian") ? "gaussian" : Boolean.TRUE);
        v.put("base_model_name_or_path", baseName(modelDir));
        LoraConfig c = LoraConfig.create(v);
        c.requireSupported();
        return c;
    }

    private void attachLora(Gemma3Model model, LoraConfig cfg, SplittableRandom rng) {
        Map<String, Linear> byName = new LinkedHashMap<>();
        for (Linear l : model.weights.linears()) byName.put(l.name, l);
        List<LoraTarget> targets = cfg.resolve(List.copyOf(byName.keySet()));
        Object init = cfg.initLoraWeights();
        for (LoraTarget t : targets) {
            Linear l = byName.get(t.moduleName());
            java.util.random.RandomGenerator g = new SplittableRandom(rng.nextLong());
            l.lora = new Linear.Lora(t.r(), (float) t.scaling(), LoraInit.initA(init, t.r(), l.in(), g), LoraInit.initB(init, l.out(), t.r(), g), l.in(), l.out());
            l.lora.dropout = (float) o.loraDropout;
        }
    }

    private static List<TrainStep.Example> examples(Batch b) {
        List<TrainStep.Example> ex = new ArrayList<>(b.size());
        for (int i = 0; i < b.size(); i++) {
            int len = 0;
            for (int m : b.attentionMask()[i]) len += m;
            int[] ids = new int[len], lab = new int[len];
            int k = 0;
            for (int t = 0; t < b.seqLen(); t++) {
                if (b.attentionMask()[i][t] == 0) continue;
                ids[k] = b.inputIds()[i][t];
                lab[k++] = b.labels()[i][t];
            }
            ex.add(new TrainStep.Example(ids, lab));
        }
        return ex;
    }

    /** Mean loss over all predicted tokens of the validation set (as transformers' eval loss with num_items_in_batch). */
    private double validationLoss(TrainStep ts, TrainingData td, Tokenizer tok) {
        double sum = 0;
        long n = 0;
        Batcher vb = Batcher.inOrder(td.validation(), data.batchSize, tok.padId());
        for (Batch b : vb.epochBatches(0)) {
            int items = b.targetTokens();
            if (items == 0) continue;
            sum += ts.loss(examples(b)) * items;
            n += items;
        }
        return n == 0 ? Double.NaN : sum / n;
    }

    // ------------------------------------------------------------------ saving

    private String title(Path modelDir) {
        return "peft4j " + o.method + " on " + modelDir.getFileName();
    }

    private void saveResult(Path dir, Gemma3Model model, float[] prompt) throws IOException {
        switch (kind()) {
            case "prompt-tuning" -> AdapterWriter.promptTuning(dir, ptCfg, prompt, model.config.hidden());
            case "lora" -> AdapterWriter.lora(dir, loraCfg, model);
            case "ia3" -> AdapterWriter.ia3(dir, ia3Cfg, model);
            case "p-tuning" -> AdapterWriter.promptEncoder(dir, peCfg, encoder.forward(), model.config.hidden());
            default -> CheckpointWriter.save(model, dir, o.saveBf16);
        }
    }

    private void checkpoint(Path root, long step, Gemma3Model model, Params params, float[] prompt,
                            AdamW opt, Batcher batcher, long tokens, double elapsed) throws IOException {
        Path dir = root.resolve(String.format("step-%06d", step));
        AtomicFiles.writeDirectory(dir, tmp -> {
            if (kind().equals("full")) {
                Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
                for (Params.Param p : params) e.put(p.name(), SafeTensors.Entry.f32(p.data(), p.shape()));
                SafeTensors.write(tmp.resolve("model.safetensors"), e, null);
            } else {
                saveResult(tmp, model, prompt);
            }
            if (encoder != null) {   // the adapter holds only the encoder outputs; resuming needs the encoder itself
                Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
                for (Params.Param p : params) e.put(p.name(), SafeTensors.Entry.f32(p.data(), p.shape()));
                SafeTensors.write(tmp.resolve(ENCODER_FILE), e, null);
            }
            opt.save(tmp.resolve("optimizer.safetensors"), params);
            ObjectNode st = JSON.createObjectNode();
            st.put("step", step);
            st.put("tokens", tokens);
            st.put("elapsed_s", elapsed);
            st.set("data_position", JSON.readTree(batcher.state().toJson()));
            Files.writeString(tmp.resolve("trainer_state.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(st) + "\n");
        });
        // keep the newest checkpoints only
        List<Path> all = checkpoints(root);
        for (int i = 0; i < all.size() - Math.max(1, o.keepCheckpoints); i++) AtomicFiles.deleteTree(all.get(i));
    }

    /** Loads trainable values saved in a checkpoint into the live parameter arrays. */
    private void restoreParams(Path ckpt, Params params, float[] prompt, int H) {
        Path f = ckpt.resolve(kind().equals("full") ? "model.safetensors" : encoder != null ? ENCODER_FILE : "adapter_model.safetensors");
        try (SafeTensors st = SafeTensors.open(f)) {
            for (Params.Param p : params) {
                String key = kind().equals("prompt-tuning") ? AdapterKeys.PROMPT_EMBEDDINGS : p.name();
                if (!st.has(key)) throw new UserException(f + ": checkpoint lacks tensor " + key);
                float[] v = st.get(key).toFloats();
                if (v.length != p.data().length) throw new UserException(f + ": tensor " + key + " has " + v.length + " values, expected " + p.data().length);
                System.arraycopy(v, 0, p.data(), 0, v.length);
            }
        }
    }

    private static void truncateMetrics(Path metrics, long step) throws IOException {
        if (!Files.isRegularFile(metrics)) return;
        StringBuilder sb = new StringBuilder();
        for (String line : Files.readAllLines(metrics)) {
            if (line.isBlank()) continue;
            JsonNode n = JSON.readTree(line);
            if (n.path("step").asLong() <= step) sb.append(line).append('\n');
        }
        AtomicFiles.writeString(metrics, sb.toString());
    }
}
