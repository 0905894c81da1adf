package dev.peft4j.api;

/**
 * The log-likelihood of a continuation given a context, as lm-evaluation-harness computes it ({@code loglikelihood}):
 * trailing whitespace of the context moves to the continuation, the continuation's tokens are those of
 * {@code context + continuation} after the context's, and their log-probabilities are summed.
 *
 * @param logprob natural-log probability of the continuation's tokens (a sum, so it is at most 0)
 * @param greedy  whether greedy decoding would produce exactly these tokens
 * @param tokens  number of continuation tokens scored
 */
public record LogLikelihood(double logprob, boolean greedy, int tokens) {
    /**
     * A (context, continuation) pair for {@link Model#logLikelihoods}.
     *
     * @param context      text the continuation follows (BOS is added, as lm-eval does for Gemma)
     * @param continuation the text to score
     */
    public record Request(String context, String continuation) {}
}
