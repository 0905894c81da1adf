package dev.peft4j.api;

import java.nio.file.Path;

/**
 * How {@link Peft4j#load(String, LoadOptions)} loads a model: an optional PEFT adapter (prompt tuning, P-tuning, prefix tuning,
 * LoRA or (IA)³; a directory or a Hub repo id), whether to merge it, how to hold the weights, the kernel thread count, an
 * optional tokenizer directory and quantization. Immutable; make one with {@link #builder()}.
 */
public final class LoadOptions {
    private final String adapter;
    private final boolean merge;
    private final WeightDtype dtype;
    private final int threads;
    private final Path tokenizer;
    private final Quantization quantization;

    private LoadOptions(Builder b) {
        this.adapter = b.adapter;
        this.merge = b.merge;
        this.dtype = b.dtype;
        this.threads = b.threads;
        this.tokenizer = b.tokenizer;
        this.quantization = b.quantization;
    }

    /**
     * No adapter, weights as stored, all cores.
     *
     * @return no adapter, weights as stored, all cores
     */
    public static LoadOptions defaults() { return builder().build(); }

    /**
     * A builder holding the defaults.
     *
     * @return a builder holding the defaults
     */
    public static Builder builder() { return new Builder(); }

    /**
     * The adapter directory or Hub repo id, or null for none.
     *
     * @return the adapter directory or Hub repo id, or null for none
     */
    public String adapter() { return adapter; }
    /**
     * Whether a LoRA or (IA)³ adapter is folded into (float32 copies of) the weights.
     *
     * @return whether a LoRA or (IA)³ adapter is folded into (float32 copies of) the weights
     */
    public boolean merge() { return merge; }
    /**
     * How the base weights are held.
     *
     * @return how the base weights are held
     */
    public WeightDtype dtype() { return dtype; }
    /**
     * Kernel threads, or 0 for the default (all cores, or {@code PEFT4J_THREADS}).
     *
     * @return kernel threads, or 0 for the default (all cores, or {@code PEFT4J_THREADS})
     */
    public int threads() { return threads; }
    /**
     * The tokenizer directory, or null for the model directory.
     *
     * @return the tokenizer directory, or null for the model directory
     */
    public Path tokenizer() { return tokenizer; }
    /**
     * The weight quantization.
     *
     * @return the weight quantization
     */
    public Quantization quantization() { return quantization; }

    /** Collects options. */
    public static final class Builder {
        private String adapter;
        private boolean merge;
        private WeightDtype dtype = WeightDtype.AUTO;
        private int threads;
        private Path tokenizer;
        private Quantization quantization = Quantization.NONE;

        private Builder() {}

        /**
         * Sets a PEFT adapter directory or Hub repo id ({@code user/adapter[@revision]}), or null.
         *
         * @param dirOrRepoId a PEFT adapter directory or Hub repo id ({@code user/adapter[@revision]}), or null
         * @return this
         */
        public Builder adapter(String dirOrRepoId) { this.adapter = dirOrRepoId; return this; }
        /**
         * Sets a PEFT adapter directory, or null.
         *
         * @param dir a PEFT adapter directory, or null
         * @return this
         */
        public Builder adapter(Path dir) { this.adapter = dir == null ? null : dir.toString(); return this; }
        /**
         * Sets fold a LoRA or (IA)³ adapter into the weights (faster generation; no effect on other adapters).
         *
         * @param on fold a LoRA or (IA)³ adapter into the weights (faster generation; no effect on other adapters)
         * @return this
         */
        public Builder merge(boolean on) { this.merge = on; return this; }
        /**
         * Sets how to hold the base weights.
         *
         * @param d how to hold the base weights
         * @return this
         */
        public Builder dtype(WeightDtype d) { this.dtype = d == null ? WeightDtype.AUTO : d; return this; }
        /**
         * The kernels' thread count is fixed once per JVM when the first model loads (results are bit-identical for a given
         * count); asking for another count later throws a {@link Peft4jException}.
         *
         * @param n kernel threads (&gt;= 1), or 0 for the default
         * @return this
         */
        public Builder threads(int n) { this.threads = n; return this; }
        /**
         * Sets a directory with tokenizer.json (and tokenizer_config.json), or null for the model's.
         *
         * @param dir a directory with tokenizer.json (and tokenizer_config.json), or null for the model's
         * @return this
         */
        public Builder tokenizer(Path dir) { this.tokenizer = dir; return this; }
        /**
         * Sets weight quantization ({@link Quantization#Q8} is not available yet).
         *
         * @param q weight quantization ({@link Quantization#Q8} is not available yet)
         * @return this
         */
        public Builder quantization(Quantization q) { this.quantization = q == null ? Quantization.NONE : q; return this; }

        /**
         * The options.
         *
         * @return the options
         * @throws Peft4jException when threads is negative
         */
        public LoadOptions build() {
            if (threads < 0) throw new Peft4jException("threads: expected >= 1 (or 0 for the default), got " + threads);
            return new LoadOptions(this);
        }
    }
}
