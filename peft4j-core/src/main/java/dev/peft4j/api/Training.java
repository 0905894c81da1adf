package dev.peft4j.api;

import dev.peft4j.data.DataConfig;
import dev.peft4j.train.TrainConfig;
import dev.peft4j.train.Trainer;

import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.List;

/**
 * A fine-tuning run with the options of {@code peft4j train}: prompt tuning, P-tuning, LoRA, (IA)³ or full fine-tuning of a
 * Gemma 3 model on instruction data (JSON Lines or a JSON array, Dolly or Alpaca fields). It writes a PEFT adapter that Python's
 * {@code peft} loads, plus metrics, a loss curve and checkpoints; a run is deterministic for a seed and thread count, and a
 * cancelled (or killed) run resumed from its last checkpoint ends exactly as an uninterrupted one.
 *
 * <pre>{@code
 * Training t = Training.builder()
 *         .model("google/gemma-3-270m").data(Path.of("databricks-dolly-15k.jsonl")).output(Path.of("runs/pt"))
 *         .method(Training.Method.PROMPT_TUNING).numVirtualTokens(20).epochs(1).batchSize(4).learningRate(3e-3)
 *         .listener(p -> System.out.printf("step %d loss %.3f%n", p.step(), p.loss()))
 *         .build();
 * TrainingResult r = t.run();          // t.cancel() from another thread (or the listener) stops it after a checkpoint
 * }</pre>
 */
public final class Training {
    /** The trained parameters. */
    public enum Method {
        /** Learned virtual-token embeddings before the input (PEFT PROMPT_TUNING). */
        PROMPT_TUNING("prompt-tuning"),
        /** Virtual tokens from an MLP prompt encoder (PEFT P_TUNING). */
        P_TUNING("p-tuning"),
        /** Low-rank updates of the target linear layers (PEFT LORA). */
        LORA("lora"),
        /** Learned scaling vectors of the target layers (PEFT IA3). */
        IA3("ia3"),
        /** Every weight (saved as a Hugging Face checkpoint). */
        FULL("full");

        final String cli;

        Method(String cli) { this.cli = cli; }
    }

    private final TrainConfig cfg;
    private final DataConfig data;
    private final TrainingListener listener;
    private final PrintStream log;
    private final boolean consoleProgress;
    private final int threads;
    private volatile boolean cancel;

    private Training(Builder b) {
        this.cfg = copy(b.cfg, new TrainConfig());   // a builder may go on to build other runs
        this.data = copy(b.data, new DataConfig());
        this.listener = b.listener;
        this.log = b.log;
        this.consoleProgress = b.consoleProgress;
        this.threads = b.threads;
    }

    /** A copy of a plain settings object (its public instance fields; lists in them are immutable). */
    private static <T> T copy(T from, T to) {
        try {
            for (java.lang.reflect.Field f : from.getClass().getFields()) {
                if (!java.lang.reflect.Modifier.isStatic(f.getModifiers())) f.set(to, f.get(from));
            }
        } catch (IllegalAccessException e) {
            throw new IllegalStateException(e);
        }
        return to;
    }

    /**
     * A builder holding {@code peft4j train}'s defaults.
     *
     * @return a builder holding {@code peft4j train}'s defaults
     */
    public static Builder builder() { return new Builder(); }

    /**
     * Trains (blocking) until the last step or a {@link #cancel()}.
     *
     * @return steps, losses, output directory, and whether the run was cancelled
     * @throws Peft4jException for a wrong option, a missing or unusable file, or an output directory that holds something else
     */
    public TrainingResult run() {
        cancel = false;
        return Guard.call(() -> {
            Guard.threads(threads);
            Trainer t = new Trainer(cfg, data, log).consoleProgress(consoleProgress).cancelWhen(() -> cancel);
            if (listener != null) {
                t.listener(p -> listener.onStep(new TrainingProgress(p.step(), p.totalSteps(), p.epoch(), p.loss(), p.lr(),
                        p.tokensPerSecond(), p.etaSeconds(), p.valLoss())));
            }
            Trainer.Result r = t.run();
            return new TrainingResult(r.steps(), r.finalLoss(), r.finalValLoss(), r.output(), t.cancelled());
        });
    }

    /**
     * Asks the run to stop: it finishes the current optimizer step, writes a checkpoint, and {@link #run()} returns a result
     * with {@code cancelled} true. Safe from any thread, including a {@link TrainingListener}.
     */
    public void cancel() { cancel = true; }

    /** Collects the options of a run; names follow {@code peft4j train}'s flags. */
    public static final class Builder {
        private final TrainConfig cfg = new TrainConfig();
        private final DataConfig data = new DataConfig();
        private TrainingListener listener;
        private PrintStream log = new PrintStream(OutputStream.nullOutputStream());
        private boolean consoleProgress;
        private int threads;

        private Builder() {
            cfg.method = Method.PROMPT_TUNING.cli;
        }

        // -------- what and where
        /**
         * Sets base model directory or Hub repo id.
         *
         * @param dirOrRepoId base model directory or Hub repo id
         * @return this
         */
        public Builder model(String dirOrRepoId) { cfg.model = Path.of(dirOrRepoId); return this; }
        /**
         * Sets base model directory.
         *
         * @param dir base model directory
         * @return this
         */
        public Builder model(Path dir) { cfg.model = dir; return this; }
        /**
         * Sets tokenizer directory (default: the model's).
         *
         * @param dir tokenizer directory (default: the model's)
         * @return this
         */
        public Builder tokenizer(Path dir) { cfg.tokenizer = dir; return this; }
        /**
         * Sets training data: JSON Lines or a JSON array of instruction records.
         *
         * @param file training data: JSON Lines or a JSON array of instruction records
         * @return this
         */
        public Builder data(Path file) { data.data = file; return this; }
        /**
         * Sets output directory (adapter, metrics, loss curve, checkpoints).
         *
         * @param dir output directory (adapter, metrics, loss curve, checkpoints)
         * @return this
         */
        public Builder output(Path dir) { cfg.output = dir; return this; }
        /**
         * Sets what to train (default prompt tuning).
         *
         * @param m what to train (default prompt tuning)
         * @return this
         */
        public Builder method(Method m) { cfg.method = m.cli; return this; }
        /**
         * Sets continue the run in the output directory from its last checkpoint (same settings).
         *
         * @param on continue the run in the output directory from its last checkpoint (same settings)
         * @return this
         */
        public Builder resume(boolean on) { cfg.resume = on; return this; }
        /**
         * Sets replace an earlier run in the output directory (a folder without a run is never deleted).
         *
         * @param on replace an earlier run in the output directory (a folder without a run is never deleted)
         * @return this
         */
        public Builder overwrite(boolean on) { cfg.overwrite = on; return this; }

        // -------- method options
        /**
         * Sets prompt tuning / P-tuning virtual tokens (default 20).
         *
         * @param n prompt tuning / P-tuning virtual tokens (default 20)
         * @return this
         */
        public Builder numVirtualTokens(int n) { cfg.numVirtualTokens = n; return this; }
        /**
         * Sets prompt-tuning init: {@code random}, {@code sample-vocab} or {@code text:...} (default random).
         *
         * @param init prompt-tuning init: {@code random}, {@code sample-vocab} or {@code text:...} (default random)
         * @return this
         */
        public Builder promptInit(String init) { cfg.init = init; return this; }
        /**
         * Sets P-tuning encoder hidden size (0: the model's hidden size).
         *
         * @param n P-tuning encoder hidden size (0: the model's hidden size)
         * @return this
         */
        public Builder encoderHiddenSize(int n) { cfg.encoderHiddenSize = n; return this; }
        /**
         * Sets LoRA rank (default 8).
         *
         * @param r LoRA rank (default 8)
         * @return this
         */
        public Builder loraR(int r) { cfg.loraR = r; return this; }
        /**
         * Sets LoRA alpha (default 16).
         *
         * @param alpha LoRA alpha (default 16)
         * @return this
         */
        public Builder loraAlpha(double alpha) { cfg.loraAlpha = alpha; return this; }
        /**
         * Sets LoRA dropout while training (default 0).
         *
         * @param p LoRA dropout while training (default 0)
         * @return this
         */
        public Builder loraDropout(double p) { cfg.loraDropout = p; return this; }
        /**
         * Sets rank-stabilised LoRA scaling alpha/sqrt(r).
         *
         * @param on rank-stabilised LoRA scaling alpha/sqrt(r)
         * @return this
         */
        public Builder useRslora(boolean on) { cfg.useRslora = on; return this; }
        /**
         * Sets LoRA init: {@code true} (kaiming-uniform A, zero B) or {@code gaussian}.
         *
         * @param init LoRA init: {@code true} (kaiming-uniform A, zero B) or {@code gaussian}
         * @return this
         */
        public Builder initLoraWeights(String init) { cfg.initLoraWeights = init; return this; }
        /**
         * Sets LoRA / (IA)³ targets: names, {@code all-linear} or one full-match regex (default: PEFT's for Gemma 3).
         *
         * @param modules LoRA / (IA)³ targets: names, {@code all-linear} or one full-match regex (default: PEFT's for Gemma 3)
         * @return this
         */
        public Builder targetModules(String... modules) { cfg.targetModules = List.of(modules); return this; }
        /**
         * Sets (IA)³ targets whose input is scaled (default down_proj).
         *
         * @param modules (IA)³ targets whose input is scaled (default down_proj)
         * @return this
         */
        public Builder feedforwardModules(String... modules) { cfg.feedforwardModules = List.of(modules); return this; }

        // -------- optimisation
        /**
         * Sets epochs (default 1; ignored when maxSteps is set).
         *
         * @param n epochs (default 1; ignored when maxSteps is set)
         * @return this
         */
        public Builder epochs(int n) { cfg.epochs = n; return this; }
        /**
         * Sets optimizer steps (0: use epochs).
         *
         * @param n optimizer steps (0: use epochs)
         * @return this
         */
        public Builder maxSteps(int n) { cfg.maxSteps = n; return this; }
        /**
         * Sets examples per micro-batch (default 8).
         *
         * @param n examples per micro-batch (default 8)
         * @return this
         */
        public Builder batchSize(int n) { data.batchSize = n; return this; }
        /**
         * Sets micro-batches per optimizer step (default 1).
         *
         * @param n micro-batches per optimizer step (default 1)
         * @return this
         */
        public Builder gradAccum(int n) { cfg.gradAccum = n; return this; }
        /**
         * Sets peak learning rate (default 3e-4).
         *
         * @param lr peak learning rate (default 3e-4)
         * @return this
         */
        public Builder learningRate(double lr) { cfg.lr = lr; return this; }
        /**
         * Sets {@code constant}, {@code linear} or {@code cosine} (default linear).
         *
         * @param s {@code constant}, {@code linear} or {@code cosine} (default linear)
         * @return this
         */
        public Builder schedule(String s) { cfg.schedule = s; return this; }
        /**
         * Sets linear warmup steps (default 0).
         *
         * @param n linear warmup steps (default 0)
         * @return this
         */
        public Builder warmupSteps(int n) { cfg.warmupSteps = n; return this; }
        /**
         * Sets AdamW decoupled weight decay (default 0).
         *
         * @param wd AdamW decoupled weight decay (default 0)
         * @return this
         */
        public Builder weightDecay(double wd) { cfg.weightDecay = wd; return this; }
        /**
         * Sets clip the global gradient norm (default 1; 0 = off).
         *
         * @param n clip the global gradient norm (default 1; 0 = off)
         * @return this
         */
        public Builder maxGradNorm(double n) { cfg.maxGradNorm = n; return this; }
        /**
         * Sets seed of the data split, shuffling and initialisation (default 42).
         *
         * @param seed seed of the data split, shuffling and initialisation (default 42)
         * @return this
         */
        public Builder seed(long seed) { data.seed = seed; return this; }
        /**
         * Sets kernel threads (see {@link LoadOptions.Builder#threads}); 0 for the default.
         *
         * @param n kernel threads (see {@link LoadOptions.Builder#threads}); 0 for the default
         * @return this
         */
        public Builder threads(int n) { this.threads = n; return this; }

        // -------- data
        /**
         * Sets field names: {@code auto} (default), {@code dolly} or {@code alpaca}.
         *
         * @param f field names: {@code auto} (default), {@code dolly} or {@code alpaca}
         * @return this
         */
        public Builder format(String f) { data.format = f; return this; }
        /**
         * Sets other field names, e.g. {@code instruction=prompt,response=answer}.
         *
         * @param mapping other field names, e.g. {@code instruction=prompt,response=answer}
         * @return this
         */
        public Builder fields(String mapping) { data.fields = mapping; return this; }
        /**
         * Sets keep only these categories.
         *
         * @param c keep only these categories
         * @return this
         */
        public Builder categories(String... c) { data.categories = List.of(c); return this; }
        /**
         * Sets prompt template: {@code dolly} (default), {@code alpaca}, {@code gemma-chat} or a template file.
         *
         * @param t prompt template: {@code dolly} (default), {@code alpaca}, {@code gemma-chat} or a template file
         * @return this
         */
        public Builder template(String t) { data.template = t; return this; }
        /**
         * Sets longest example in tokens (default 512); longer ones are skipped, or cut with truncate.
         *
         * @param n longest example in tokens (default 512); longer ones are skipped, or cut with truncate
         * @return this
         */
        public Builder maxSeqLen(int n) { data.maxSeqLen = n; return this; }
        /**
         * Sets cut long examples instead of skipping them.
         *
         * @param on cut long examples instead of skipping them
         * @return this
         */
        public Builder truncate(boolean on) { data.truncate = on; return this; }
        /**
         * Sets fail on the first bad row instead of skipping it.
         *
         * @param on fail on the first bad row instead of skipping it
         * @return this
         */
        public Builder strict(boolean on) { data.strict = on; return this; }
        /**
         * Sets validation set: a count ({@code "1000"}) or a fraction ({@code "0.05"}, the default); {@code "0"} for none.
         *
         * @param size validation set: a count ({@code "1000"}) or a fraction ({@code "0.05"}, the default); {@code "0"} for none
         * @return this
         */
        public Builder valSize(String size) { data.valSize = size; return this; }
        /**
         * Sets length bucketing window in batches (0 = off).
         *
         * @param n length bucketing window in batches (0 = off)
         * @return this
         */
        public Builder bucket(int n) { data.bucket = n; return this; }

        // -------- checkpoints and reporting
        /**
         * Sets validation loss every n steps (and at the end; 0 = only at the end).
         *
         * @param n validation loss every n steps (and at the end; 0 = only at the end)
         * @return this
         */
        public Builder evalEvery(int n) { cfg.evalEvery = n; return this; }
        /**
         * Sets checkpoint every n steps (and at the end; 0 = only at the end).
         *
         * @param n checkpoint every n steps (and at the end; 0 = only at the end)
         * @return this
         */
        public Builder saveEvery(int n) { cfg.saveEvery = n; return this; }
        /**
         * Sets checkpoints kept (default 2).
         *
         * @param n checkpoints kept (default 2)
         * @return this
         */
        public Builder keepCheckpoints(int n) { cfg.keepCheckpoints = n; return this; }
        /**
         * Sets full fine-tuning: save the model in bf16 instead of f32.
         *
         * @param on full fine-tuning: save the model in bf16 instead of f32
         * @return this
         */
        public Builder saveBf16(boolean on) { cfg.saveBf16 = on; return this; }
        /**
         * Sets receives every step's progress, or null.
         *
         * @param l receives every step's progress, or null
         * @return this
         */
        public Builder listener(TrainingListener l) { this.listener = l; return this; }
        /**
         * Sets where the run's log lines go (data summary, final summary); default: nowhere.
         *
         * @param out where the run's log lines go (data summary, final summary); default: nowhere
         * @return this
         */
        public Builder log(PrintStream out) { this.log = out == null ? new PrintStream(OutputStream.nullOutputStream()) : out; return this; }
        /**
         * Sets draw {@code peft4j train}'s progress line on stderr (default false).
         *
         * @param on draw {@code peft4j train}'s progress line on stderr (default false)
         * @return this
         */
        public Builder consoleProgress(boolean on) { this.consoleProgress = on; return this; }

        /**
         * The run (not started).
         *
         * @return the run (not started)
         * @throws Peft4jException when model, data or output is missing
         */
        public Training build() {
            if (cfg.model == null) throw new Peft4jException("model: expected the base model directory or Hub repo id");
            if (data.data == null) throw new Peft4jException("data: expected the training data file");
            if (cfg.output == null) throw new Peft4jException("output: expected the output directory");
            return new Training(this);
        }
    }
}
