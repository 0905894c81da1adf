package dev.peft4j.api;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * What {@link Model#evaluate} runs: lm-evaluation-harness task or group names ({@code mmlu}, {@code mmlu_formal_logic},
 * {@code hellaswag}, {@code arc_easy}, {@code arc_challenge}, {@code piqa}, {@code boolq}, {@code winogrande}, {@code triviaqa}),
 * the datasets folder (layout as in the README, section Evaluation), a limit, few-shot examples and batch size.
 * Immutable; make one with {@link #builder()}.
 */
public final class EvalOptions {
    /** Progress of an evaluation phase ({@code loglikelihood} or {@code generate_until}). */
    @FunctionalInterface
    public interface Progress {
        /**
         * Called as requests finish.
         *
         * @param phase {@code loglikelihood} or {@code generate_until}
         * @param done  requests finished
         * @param total requests of the phase
         */
        void onProgress(String phase, long done, long total);
    }

    private final List<String> tasks;
    private final Path dataDir;
    private final Double limit;
    private final int numFewshot, batchSize;
    private final Progress progress;

    private EvalOptions(Builder b) {
        this.tasks = List.copyOf(b.tasks);
        this.dataDir = b.dataDir;
        this.limit = b.limit;
        this.numFewshot = b.numFewshot;
        this.batchSize = b.batchSize;
        this.progress = b.progress;
    }

    /**
     * A builder with no tasks, data dir {@code data}, no limit, zero-shot, batch size 8.
     *
     * @return a builder with no tasks, data dir {@code data}, no limit, zero-shot, batch size 8
     */
    public static Builder builder() { return new Builder(); }

    /**
     * Task and group names.
     *
     * @return task and group names
     */
    public List<String> tasks() { return tasks; }
    /**
     * The datasets folder.
     *
     * @return the datasets folder
     */
    public Path dataDir() { return dataDir; }
    /**
     * The first N documents of each task, a fraction of them when below 1, or null for all.
     *
     * @return the first N documents of each task, a fraction of them when below 1, or null for all
     */
    public Double limit() { return limit; }
    /**
     * Few-shot examples per prompt.
     *
     * @return few-shot examples per prompt
     */
    public int numFewshot() { return numFewshot; }
    /**
     * Contexts per forward pass.
     *
     * @return contexts per forward pass
     */
    public int batchSize() { return batchSize; }
    /**
     * The progress listener, or null.
     *
     * @return the progress listener, or null
     */
    public Progress progress() { return progress; }

    /** Collects options; {@link #build()} checks them. */
    public static final class Builder {
        private final List<String> tasks = new ArrayList<>();
        private Path dataDir = Path.of("data");
        private Double limit;
        private int numFewshot, batchSize = 8;
        private Progress progress;

        private Builder() {}

        /**
         * Sets task or group names to add.
         *
         * @param names task or group names to add
         * @return this
         */
        public Builder tasks(String... names) { tasks.addAll(List.of(names)); return this; }
        /**
         * Sets task or group names to add.
         *
         * @param names task or group names to add
         * @return this
         */
        public Builder tasks(List<String> names) { tasks.addAll(names); return this; }
        /**
         * Sets the datasets folder.
         *
         * @param dir the datasets folder
         * @return this
         */
        public Builder dataDir(Path dir) { this.dataDir = dir; return this; }
        /**
         * Sets evaluate only the first n documents of each task.
         *
         * @param n evaluate only the first n documents of each task
         * @return this
         */
        public Builder limit(int n) { this.limit = (double) n; return this; }
        /**
         * Sets evaluate only this fraction (0, 1) of each task's documents.
         *
         * @param fraction evaluate only this fraction (0, 1) of each task's documents
         * @return this
         */
        public Builder limitFraction(double fraction) { this.limit = fraction; return this; }
        /**
         * Sets few-shot examples per prompt (they come from the task's few-shot split).
         *
         * @param k few-shot examples per prompt (they come from the task's few-shot split)
         * @return this
         */
        public Builder numFewshot(int k) { this.numFewshot = k; return this; }
        /**
         * Sets contexts per forward pass.
         *
         * @param b contexts per forward pass
         * @return this
         */
        public Builder batchSize(int b) { this.batchSize = b; return this; }
        /**
         * Sets receives progress, or null.
         *
         * @param p receives progress, or null
         * @return this
         */
        public Builder progress(Progress p) { this.progress = p; return this; }

        /**
         * The options.
         *
         * @return the options
         * @throws Peft4jException when no task is given or a number is out of range
         */
        public EvalOptions build() {
            if (tasks.isEmpty()) throw new Peft4jException("tasks: expected at least one task name, e.g. arc_easy");
            if (numFewshot < 0) throw new Peft4jException("numFewshot: expected 0 or more, got " + numFewshot);
            if (batchSize < 1) throw new Peft4jException("batchSize: expected at least 1, got " + batchSize);
            if (limit != null && !(limit > 0)) throw new Peft4jException("limit: expected a number of documents (1 or more) or a fraction in (0, 1), got " + limit);
            if (dataDir == null) throw new Peft4jException("dataDir: expected the datasets folder, got null");
            return new EvalOptions(this);
        }
    }
}
