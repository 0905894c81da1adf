package dev.peft4j.api;

/** Why generation stopped. */
public enum FinishReason {
    /** The model produced an end-of-sequence token (any EOS id of generation_config.json; in chat also {@code <end_of_turn>}). */
    EOS,
    /** The text reached one of {@link GenerationOptions#stop()}. */
    STOP,
    /** {@link GenerationOptions#maxNewTokens()} tokens were generated, or the context window is full. */
    LENGTH
}
