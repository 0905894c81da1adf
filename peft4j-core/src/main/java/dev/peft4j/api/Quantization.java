package dev.peft4j.api;

/** Weight quantization at load ({@link LoadOptions.Builder#quantization}). */
public enum Quantization {
    /** No quantization (the default). */
    NONE,
    /**
     * 8-bit weights, quantized at load into off-heap memory: llama.cpp's Q8_0 (per block of 32 weights of a row, one fp16
     * scale) for every linear and the embedding/output head; norms and adapters stay float32.
     */
    Q8
}
