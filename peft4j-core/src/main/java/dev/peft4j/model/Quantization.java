package dev.peft4j.model;

import dev.peft4j.util.UserException;

/** How a model's weights are held once loaded: as stored, or quantized to 8 bits at load time ({@code --quantize q8}). */
public enum Quantization {
    /** Weights as stored in the checkpoint (F32, BF16, F16, or Q8_0 for a checkpoint written by {@code peft4j quantize}). */
    NONE,
    /** llama.cpp's Q8_0 (blocks of 32 weights of a row, one fp16 scale each) for every linear and the embedding/output head. */
    Q8;

    /** The option's value for this quantization: "none" or "q8". */
    public String id() { return name().toLowerCase(java.util.Locale.ROOT); }

    /** Parses a {@code --quantize} value: null or "none" → NONE, "q8" (or "q8_0") → Q8; anything else is a user error. */
    public static Quantization parse(String s) {
        if (s == null || s.isBlank() || s.equalsIgnoreCase("none")) return NONE;
        if (s.equalsIgnoreCase("q8") || s.equalsIgnoreCase("q8_0")) return Q8;
        throw new UserException("--quantize: expected q8 (or none), got '" + s + "'");
    }
}
