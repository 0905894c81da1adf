package dev.peft4j.tensor;

/** Element types of safetensors files that peft4j reads and writes. */
public enum DType {
    F32(4), BF16(2), F16(2), F64(8), I32(4), I64(8), I16(2), I8(1), U8(1), BOOL(1);

    public final int bytes;

    DType(int bytes) { this.bytes = bytes; }

    /** Parses a safetensors dtype name; returns null when unknown. */
    public static DType parse(String s) {
        for (DType d : values()) if (d.name().equals(s)) return d;
        return null;
    }
}
