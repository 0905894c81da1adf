package dev.peft4j.model;

import java.util.List;

/**
 * What evaluation, generation and training-free scoring need from a causal language model
 * (a base model, optionally with an adapter applied). Token ids include BOS where the caller wants it;
 * the model never adds tokens itself. Any prompt-tuning virtual tokens are handled inside and are invisible here:
 * positions and logits rows refer to the caller's tokens only.
 */
public interface CausalLM {
    int vocabSize();

    /** Longest sequence (in caller tokens) the model accepts. */
    int maxPositions();

    /**
     * Runs each sequence from scratch (batched internally) and returns, per sequence i, the logits rows
     * for positions {@code from[i] .. seq.length-1}, row-major: float[(len - from) * vocabSize()].
     * Row t holds the distribution of the token at position t+1.
     */
    List<float[]> logits(List<int[]> sequences, int[] from);

    /**
     * The rows {@link #logits} returns, without a copy per sequence: sequences sharing a prefix may share its rows. The default
     * wraps {@link #logits}; a model overrides it to compute each shared row once and hand out large blocks.
     */
    default LogitRows logitRows(List<int[]> sequences, int[] from) {
        return LogitRows.of(vocabSize(), logits(sequences, from));
    }

    /** A fresh KV-cached session for incremental decoding. */
    Session newSession();

    interface Session {
        /**
         * Appends tokens (at least one) and returns the logits row [vocab] after the last appended token. The array belongs to
         * the session and is overwritten by its next {@code append} (copy it to keep it); callers may modify it.
         */
        float[] append(int[] tokens);

        /** Appends tokens and returns logits rows for all of them: float[tokens.length * vocab]. */
        float[] appendAll(int[] tokens);

        /** Number of caller tokens consumed so far. */
        int length();

        /** An independent copy sharing nothing mutable (for scoring several continuations of one context). */
        Session fork();

        /**
         * Sizes the session's caches for {@code tokens} caller tokens in all, so that appending up to that many allocates no
         * cache memory on the way (a hint; appending more still works).
         */
        default void reserve(int tokens) {}

        /**
         * Forgets the caller tokens from {@code length} on, as if they had never been appended (speculative decoding rolls
         * back the draft tokens the model did not confirm). At least the length before the last {@code append}.
         */
        default void truncate(int length) { throw new UnsupportedOperationException("this session cannot be truncated"); }
    }
}
