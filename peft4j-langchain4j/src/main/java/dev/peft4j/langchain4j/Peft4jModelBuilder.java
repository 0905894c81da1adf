package dev.peft4j.langchain4j;

import dev.peft4j.api.LoadOptions;
import dev.peft4j.api.Model;

import java.util.List;

/**
 * Options shared by {@link Peft4jChatModel}, {@link Peft4jStreamingChatModel} and {@link Peft4jLanguageModel}: which model
 * (a directory or Hub repo id to load, or an already loaded {@link Model} to share), load options (adapter, dtype, threads) and
 * default sampling parameters (a request's own parameters override them).
 *
 * @param <B> the concrete builder
 */
public abstract class Peft4jModelBuilder<B extends Peft4jModelBuilder<B>> {
    /** Output tokens when neither the builder nor the request sets a maximum. */
    public static final int DEFAULT_MAX_TOKENS = 256;

    String modelPath;
    Model model;
    LoadOptions loadOptions = LoadOptions.defaults();
    String modelName;
    Double temperature, topP, repetitionPenalty;
    Integer topK, maxTokens;
    List<String> stopSequences;
    Long seed;

    Peft4jModelBuilder() {}

    @SuppressWarnings("unchecked")
    private B self() { return (B) this; }

    /**
     * Sets a Hugging Face model directory or Hub repo id to load (closed with this model).
     *
     * @param dirOrRepoId a Hugging Face model directory or Hub repo id to load (closed with this model)
     * @return this
     */
    public B modelPath(String dirOrRepoId) { this.modelPath = dirOrRepoId; return self(); }
    /**
     * Sets an already loaded model to share (the caller closes it).
     *
     * @param loaded an already loaded model to share (the caller closes it)
     * @return this
     */
    public B model(Model loaded) { this.model = loaded; return self(); }
    /**
     * Sets adapter, merge, dtype, threads, tokenizer for {@link #modelPath}.
     *
     * @param options adapter, merge, dtype, threads, tokenizer for {@link #modelPath}
     * @return this
     */
    public B loadOptions(LoadOptions options) { this.loadOptions = options == null ? LoadOptions.defaults() : options; return self(); }
    /**
     * Sets a PEFT adapter for {@link #modelPath} (shortcut for {@link LoadOptions.Builder#adapter(String)}).
     *
     * @param dirOrRepoId a PEFT adapter for {@link #modelPath} (shortcut for {@link LoadOptions.Builder#adapter(String)})
     * @return this
     */
    public B adapter(String dirOrRepoId) {
        LoadOptions o = loadOptions;
        this.loadOptions = LoadOptions.builder().adapter(dirOrRepoId).merge(o.merge()).dtype(o.dtype()).threads(o.threads())
                .tokenizer(o.tokenizer()).quantization(o.quantization()).build();
        return self();
    }
    /**
     * Sets the model name reported in responses (default: the model path).
     *
     * @param name the model name reported in responses (default: the model path)
     * @return this
     */
    public B modelName(String name) { this.modelName = name; return self(); }
    /**
     * Sets default temperature (0 = greedy, the default).
     *
     * @param t default temperature (0 = greedy, the default)
     * @return this
     */
    public B temperature(Double t) { this.temperature = t; return self(); }
    /**
     * Sets default nucleus mass (1 = off).
     *
     * @param p default nucleus mass (1 = off)
     * @return this
     */
    public B topP(Double p) { this.topP = p; return self(); }
    /**
     * Sets default top-k (0 = off).
     *
     * @param k default top-k (0 = off)
     * @return this
     */
    public B topK(Integer k) { this.topK = k; return self(); }
    /**
     * Sets default maximum of output tokens (default {@value #DEFAULT_MAX_TOKENS}).
     *
     * @param n default maximum of output tokens (default {@value #DEFAULT_MAX_TOKENS})
     * @return this
     */
    public B maxTokens(Integer n) { this.maxTokens = n; return self(); }
    /**
     * Sets default stop sequences.
     *
     * @param stops default stop sequences
     * @return this
     */
    public B stopSequences(List<String> stops) { this.stopSequences = stops; return self(); }
    /**
     * Sets sampling seed (default 0).
     *
     * @param s sampling seed (default 0)
     * @return this
     */
    public B seed(Long s) { this.seed = s; return self(); }
    /**
     * Sets transformers' repetition penalty (1 = off).
     *
     * @param p transformers' repetition penalty (1 = off)
     * @return this
     */
    public B repetitionPenalty(Double p) { this.repetitionPenalty = p; return self(); }
}
