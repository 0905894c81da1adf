package dev.peft4j.serve;

import java.util.List;

/**
 * How one request is decoded, in the OpenAI / vLLM terms: {@code maxTokens} new tokens at most (0 only with {@code echo}),
 * transformers' sampling rules ({@link dev.peft4j.model.Sampler}: temperature 0 = greedy), stop strings, {@code ignoreEos},
 * {@code logprobs} = how many alternatives to return per token (null: no log-probabilities), {@code echo} = return the
 * prompt too (with {@code logprobs}: the prompt tokens' log-probabilities, the first one null), {@code n} choices.
 */
public record SamplingParams(int maxTokens, float temperature, float topP, int topK, float minP, float repetitionPenalty,
                             Long seed, List<String> stop, boolean ignoreEos, Integer logprobs, boolean echo, int n) {
    public SamplingParams {
        stop = stop == null ? List.of() : List.copyOf(stop);
    }

    /** Greedy decoding of {@code maxTokens} tokens, nothing else. */
    public static SamplingParams greedy(int maxTokens) {
        return new SamplingParams(maxTokens, 0f, 1f, 0, 0f, 1f, null, List.of(), false, null, false, 1);
    }

    public SamplingParams withLogprobs(Integer top, boolean echo) {
        return new SamplingParams(maxTokens, temperature, topP, topK, minP, repetitionPenalty, seed, stop, ignoreEos, top, echo, n);
    }

    public SamplingParams withIgnoreEos(boolean ignore) {
        return new SamplingParams(maxTokens, temperature, topP, topK, minP, repetitionPenalty, seed, stop, ignore, logprobs, echo, n);
    }

    public SamplingParams withN(int choices) {
        return new SamplingParams(maxTokens, temperature, topP, topK, minP, repetitionPenalty, seed, stop, ignoreEos, logprobs, echo, choices);
    }

    /** Prompt-token log-probabilities are computed (lm-eval's log-likelihood requests). */
    public boolean promptLogprobs() { return echo && logprobs != null; }
}
