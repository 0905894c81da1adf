package dev.peft4j.api;

/** Weight quantization at load ({@link LoadOptions.Builder#quantization}). */
public enum Quantization {
    /** No quantization (the default). */
    NONE,
    /**
     * 8-bit weights with a scale per block. Not available in this build yet: loading with it throws a
     * {@link Peft4jException} that says so.
     */
    Q8
}
