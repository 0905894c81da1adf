package dev.peft4j.eval;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Expected values printed by CPython 3.11 ({@code random.Random(seed)}), not by this code. */
class PyRandomTest {
    private static List<Integer> range(int n) { return IntStream.range(0, n).boxed().toList(); }

    @Test
    void getrandbitsMatchesCPython() {
        PyRandom r = new PyRandom(1234);
        long[] expected = {4150886329L, 3342196574L, 1892932127L, 501869158L, 32175636L};
        for (long e : expected) assertEquals(e, r.getrandbits(32));
        PyRandom r7 = new PyRandom(1234);
        for (long e : new long[]{123, 99, 56, 14, 0}) assertEquals(e, r7.getrandbits(7));
        assertEquals(3626764237L, new PyRandom(0).getrandbits(32));
        assertEquals(2166296868L, new PyRandom((1L << 40) + 5).getrandbits(32)); // two-word key
    }

    @Test
    void sampleMatchesCPythonOnOneStream() {
        // r = random.Random(1234); r.sample(range(10),3), r.sample(range(10),3), r.sample(range(200),6),
        // r.sample(range(39905),11), r.sample(range(5),5)
        PyRandom r = new PyRandom(1234);
        assertEquals(List.of(7, 1, 0), r.sample(range(10), 3));
        assertEquals(List.of(1, 0, 9), r.sample(range(10), 3));
        assertEquals(List.of(25, 196, 90, 60, 4, 7), r.sample(range(200), 6));
        assertEquals(List.of(1038, 22681, 31735, 30379, 9735, 5982, 11999, 7498, 958, 32970, 31899), r.sample(range(39905), 11));
        assertEquals(List.of(1, 0, 2, 4, 3), r.sample(range(5), 5));
    }

    @Test
    void streamContinuesAfterSample() {
        PyRandom r = new PyRandom(1234);
        r.sample(range(10), 3);
        assertEquals(389311301L, r.getrandbits(32));
    }
}
