package dev.peft4j.api;

/** How the base model's weights are held in memory ({@link LoadOptions.Builder#dtype}). Compute is always float32. */
public enum WeightDtype {
    /** As stored in the checkpoint (F32, BF16 or F16), memory-mapped, never copied: the least memory, the default. */
    AUTO,
    /** Converted to float32 copies on the heap (twice the memory of bf16 weights; no conversion in the matrix products). */
    F32
}
