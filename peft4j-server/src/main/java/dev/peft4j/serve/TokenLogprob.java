package dev.peft4j.serve;

/**
 * A token and its log-probability under the model (log-softmax of the raw logits, before any sampling rule), with the
 * {@code topIds.length} most likely tokens of that position and theirs (descending). {@code logprob} is NaN for the first
 * prompt token, which has no distribution.
 */
public record TokenLogprob(int token, float logprob, int[] topIds, float[] topLogprobs) {
    public boolean hasLogprob() { return !Float.isNaN(logprob); }
}
