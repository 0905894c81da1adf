package dev.peft4j.api;

import java.util.ArrayList;
import java.util.List;

/**
 * Sampling options and stop conditions, as transformers' {@code generate} takes them: repetition penalty, then temperature,
 * top-k, top-p and min-p, then a seeded draw (or argmax when the temperature is 0, the default). Generation stops at an EOS
 * token, at a stop string, or after {@link #maxNewTokens()} tokens. Immutable; make one with {@link #builder()}.
 *
 * <pre>{@code
 * GenerationOptions o = GenerationOptions.builder().maxNewTokens(64).temperature(0.7f).topP(0.95f).seed(1).stop("\n\n").build();
 * }</pre>
 */
public final class GenerationOptions {
    private final int maxNewTokens;
    private final float temperature, topP, minP, repetitionPenalty;
    private final int topK, promptLookup;
    private final long seed;
    private final List<String> stop;
    private final boolean stopAtEos, addBos;

    private GenerationOptions(Builder b) {
        this.maxNewTokens = b.maxNewTokens;
        this.temperature = b.temperature;
        this.topK = b.topK;
        this.topP = b.topP;
        this.minP = b.minP;
        this.repetitionPenalty = b.repetitionPenalty;
        this.seed = b.seed;
        this.stop = List.copyOf(b.stop);
        this.stopAtEos = b.stopAtEos;
        this.addBos = b.addBos;
        this.promptLookup = b.promptLookup;
    }

    /**
     * Options with every default: greedy, 128 new tokens, stop at EOS, no stop strings.
     *
     * @return options with every default: greedy, 128 new tokens, stop at EOS, no stop strings
     */
    public static GenerationOptions defaults() { return builder().build(); }

    /**
     * A builder holding the defaults.
     *
     * @return a builder holding the defaults
     */
    public static Builder builder() { return new Builder(); }

    /**
     * A builder holding these options, to change some of them.
     *
     * @return a builder holding these options, to change some of them
     */
    public Builder toBuilder() {
        Builder b = new Builder();
        b.maxNewTokens = maxNewTokens; b.temperature = temperature; b.topK = topK; b.topP = topP; b.minP = minP;
        b.repetitionPenalty = repetitionPenalty; b.seed = seed; b.stop.addAll(stop); b.stopAtEos = stopAtEos; b.addBos = addBos;
        b.promptLookup = promptLookup;
        return b;
    }

    /**
     * The most tokens to generate (default 128).
     *
     * @return the most tokens to generate (default 128)
     */
    public int maxNewTokens() { return maxNewTokens; }
    /**
     * The sampling temperature; 0 means greedy (default 0).
     *
     * @return the sampling temperature; 0 means greedy (default 0)
     */
    public float temperature() { return temperature; }
    /**
     * Keep only the K most likely tokens; 0 means off (default 0).
     *
     * @return keep only the K most likely tokens; 0 means off (default 0)
     */
    public int topK() { return topK; }
    /**
     * Nucleus sampling mass; 1 means off (default 1).
     *
     * @return nucleus sampling mass; 1 means off (default 1)
     */
    public float topP() { return topP; }
    /**
     * Drop tokens less likely than this times the top token's probability; 0 means off (default 0).
     *
     * @return drop tokens less likely than this times the top token's probability; 0 means off (default 0)
     */
    public float minP() { return minP; }
    /**
     * Transformers' repetition penalty on tokens of the prompt and output; 1 means off (default 1).
     *
     * @return transformers' repetition penalty on tokens of the prompt and output; 1 means off (default 1)
     */
    public float repetitionPenalty() { return repetitionPenalty; }
    /**
     * The sampling seed (default 0): the same seed gives the same text.
     *
     * @return the sampling seed (default 0): the same seed gives the same text
     */
    public long seed() { return seed; }
    /**
     * Stop strings: generation ends when the text contains one; the result's text ends before it.
     *
     * @return stop strings: generation ends when the text contains one; the result's text ends before it
     */
    public List<String> stop() { return stop; }
    /**
     * Whether an EOS token ends generation (default true).
     *
     * @return whether an EOS token ends generation (default true)
     */
    public boolean stopAtEos() { return stopAtEos; }
    /**
     * Whether {@link Model#generate(String, GenerationOptions)} puts BOS before the prompt text (default true).
     *
     * @return whether {@link Model#generate(String, GenerationOptions)} puts BOS before the prompt text (default true)
     */
    public boolean addBos() { return addBos; }

    /**
     * Draft tokens per step of prompt lookup (0 = off, the default): greedy decoding then checks up to this many tokens
     * copied from where the last tokens occurred earlier in the prompt or output, in one pass with the next token. The
     * generated tokens are the same; text that repeats its prompt (extraction, quoting, editing) comes faster.
     *
     * @return draft tokens per step of prompt lookup (0 = off)
     */
    public int promptLookup() { return promptLookup; }

    /** Collects options; {@link #build()} checks them. */
    public static final class Builder {
        private int maxNewTokens = 128;
        private float temperature = 0f, topP = 1f, minP = 0f, repetitionPenalty = 1f;
        private int topK = 0, promptLookup = 0;
        private long seed = 0;
        private final List<String> stop = new ArrayList<>();
        private boolean stopAtEos = true, addBos = true;

        private Builder() {}

        /**
         * Sets the most tokens to generate (&gt;= 0).
         *
         * @param n the most tokens to generate (&gt;= 0)
         * @return this
         */
        public Builder maxNewTokens(int n) { this.maxNewTokens = n; return this; }
        /**
         * Sets sampling temperature (&gt;= 0; 0 = greedy).
         *
         * @param t sampling temperature (&gt;= 0; 0 = greedy)
         * @return this
         */
        public Builder temperature(float t) { this.temperature = t; return this; }
        /**
         * Sets keep the K most likely tokens (&gt;= 0; 0 = off).
         *
         * @param k keep the K most likely tokens (&gt;= 0; 0 = off)
         * @return this
         */
        public Builder topK(int k) { this.topK = k; return this; }
        /**
         * Sets nucleus mass in (0, 1] (1 = off).
         *
         * @param p nucleus mass in (0, 1] (1 = off)
         * @return this
         */
        public Builder topP(float p) { this.topP = p; return this; }
        /**
         * Sets min-p in [0, 1] (0 = off).
         *
         * @param p min-p in [0, 1] (0 = off)
         * @return this
         */
        public Builder minP(float p) { this.minP = p; return this; }
        /**
         * Sets repetition penalty (&gt; 0; 1 = off).
         *
         * @param p repetition penalty (&gt; 0; 1 = off)
         * @return this
         */
        public Builder repetitionPenalty(float p) { this.repetitionPenalty = p; return this; }
        /**
         * Sets sampling seed.
         *
         * @param s sampling seed
         * @return this
         */
        public Builder seed(long s) { this.seed = s; return this; }
        /**
         * Sets stop strings to add (empty strings are ignored).
         *
         * @param strings stop strings to add (empty strings are ignored)
         * @return this
         */
        public Builder stop(String... strings) {
            for (String s : strings) if (s != null && !s.isEmpty()) stop.add(s);
            return this;
        }
        /**
         * Sets stop strings to add (empty strings are ignored).
         *
         * @param strings stop strings to add (empty strings are ignored)
         * @return this
         */
        public Builder stop(List<String> strings) { return stop(strings.toArray(new String[0])); }
        /**
         * Sets whether an EOS token ends generation.
         *
         * @param on whether an EOS token ends generation
         * @return this
         */
        public Builder stopAtEos(boolean on) { this.stopAtEos = on; return this; }
        /**
         * Sets whether to put BOS before a text prompt.
         *
         * @param on whether to put BOS before a text prompt
         * @return this
         */
        public Builder addBos(boolean on) { this.addBos = on; return this; }
        /**
         * Sets the draft tokens per step of prompt lookup (&gt;= 0; 0 = off; greedy decoding only), see
         * {@link GenerationOptions#promptLookup()}.
         *
         * @param n draft tokens per step (&gt;= 0; 0 = off)
         * @return this
         */
        public Builder promptLookup(int n) { this.promptLookup = n; return this; }

        /**
         * Checks the options and makes them.
         *
         * @return the options
         * @throws Peft4jException naming the option that is out of range
         */
        public GenerationOptions build() {
            if (maxNewTokens < 0) throw new Peft4jException("maxNewTokens: expected a number >= 0, got " + maxNewTokens);
            if (!(temperature >= 0)) throw new Peft4jException("temperature: expected >= 0 (0 = greedy), got " + temperature);
            if (topK < 0) throw new Peft4jException("topK: expected >= 0 (0 = off), got " + topK);
            if (!(topP > 0 && topP <= 1)) throw new Peft4jException("topP: expected a value in (0, 1], got " + topP);
            if (!(minP >= 0 && minP <= 1)) throw new Peft4jException("minP: expected a value in [0, 1], got " + minP);
            if (!(repetitionPenalty > 0)) throw new Peft4jException("repetitionPenalty: expected > 0 (1 = off), got " + repetitionPenalty);
            if (promptLookup < 0) throw new Peft4jException("promptLookup: expected >= 0 (0 = off), got " + promptLookup);
            if (promptLookup > 0 && temperature > 0) throw new Peft4jException("promptLookup: needs greedy decoding (temperature 0), got temperature " + temperature);
            return new GenerationOptions(this);
        }
    }
}
