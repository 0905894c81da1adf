package dev.peft4j.tensor;

/**
 * Element types of the tensors peft4j reads and writes: the safetensors dtypes, plus {@link #Q8_0}, llama.cpp's 8-bit block
 * format for weight matrices (per block of 32 consecutive weights of a row: one fp16 scale d, then 32 int8 q; weight = d·q).
 */
public enum DType {
    F32(4), BF16(2), F16(2), F64(8), I32(4), I64(8), I16(2), I8(1), U8(1), BOOL(1),
    /** llama.cpp block_q8_0: 34 bytes per block of 32 weights (little-endian fp16 scale, then 32 signed bytes). */
    Q8_0(1);

    /** Bytes per element (for {@link #Q8_0}, which is stored in blocks, use {@link #storageBytes}). */
    public final int bytes;

    /** Weights per block of {@link #Q8_0} and the bytes of one block. */
    public static final int Q8_BLOCK = 32, Q8_BLOCK_BYTES = 34;

    DType(int bytes) { this.bytes = bytes; }

    /**
     * Bytes that {@code numel} elements take (for {@link #Q8_0}: numel/32 blocks of 34 bytes; numel must be a multiple of 32,
     * and a row of a Q8_0 matrix holds whole blocks, so a row of {@code cols} takes cols/32·34 bytes).
     */
    public long storageBytes(long numel) {
        if (this == Q8_0) {
            if (numel % Q8_BLOCK != 0) throw new IllegalArgumentException("Q8_0 needs a multiple of " + Q8_BLOCK + " elements, got " + numel);
            return numel / Q8_BLOCK * Q8_BLOCK_BYTES;
        }
        return numel * bytes;
    }

    /** Parses a dtype name (safetensors' names, and Q8_0); returns null when unknown. */
    public static DType parse(String s) {
        for (DType d : values()) if (d.name().equals(s)) return d;
        return null;
    }
}
