package dev.peft4j.tensor;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static org.junit.jupiter.api.Assertions.*;

/** The vector fp16 widening (Q8 panel scales) gives Float.float16ToFloat's value for every one of the 65,536 fp16 bit patterns. */
class F16VectorTest {
    @Test
    void everyHalfWidensExactly() {
        MemorySegment s = Arena.ofAuto().allocate(2L * 65536, 64);
        for (int i = 0; i < 65536; i++) s.set(Matrix.LE_SHORT, 2L * i, (short) i);
        float[] got = new float[Matrix.L];
        for (int i = 0; i < 65536; i += Matrix.L) {
            Matrix.f16(s, 2L * i).intoArray(got, 0);
            for (int j = 0; j < Matrix.L; j++) {
                float want = Float.float16ToFloat((short) (i + j));
                if (Float.isNaN(want)) assertTrue(Float.isNaN(got[j]), "fp16 0x" + Integer.toHexString(i + j));
                else assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(got[j]), "fp16 0x" + Integer.toHexString(i + j));
            }
        }
    }
}
