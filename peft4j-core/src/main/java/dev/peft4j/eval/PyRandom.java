package dev.peft4j.eval;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * CPython's {@code random.Random}: the MT19937 generator seeded from an int exactly as {@code random.seed(int)} does
 * ({@code init_by_array} over the 32-bit words of |seed|), with {@code getrandbits}, {@code _randbelow} and
 * {@code sample}, so that lm-eval's few-shot choice ({@code Random(1234).sample(pool, n)}) is reproduced exactly.
 */
public final class PyRandom {
    private static final int N = 624, M = 397;
    private final int[] mt = new int[N];
    private int mti;

    public PyRandom(long seed) {
        BigInteger s = BigInteger.valueOf(seed).abs();
        int words = Math.max(1, (s.bitLength() + 31) / 32);
        int[] key = new int[words];
        for (int i = 0; i < words; i++) key[i] = s.shiftRight(32 * i).intValue();
        initByArray(key);
    }

    private void initGenrand(int s) {
        mt[0] = s;
        for (mti = 1; mti < N; mti++) {
            mt[mti] = 1812433253 * (mt[mti - 1] ^ (mt[mti - 1] >>> 30)) + mti;
        }
    }

    private void initByArray(int[] key) {
        initGenrand(19650218);
        int i = 1, j = 0;
        for (int k = Math.max(N, key.length); k > 0; k--) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >>> 30)) * 1664525)) + key[j] + j;
            i++; j++;
            if (i >= N) { mt[0] = mt[N - 1]; i = 1; }
            if (j >= key.length) j = 0;
        }
        for (int k = N - 1; k > 0; k--) {
            mt[i] = (mt[i] ^ ((mt[i - 1] ^ (mt[i - 1] >>> 30)) * 1566083941)) - i;
            i++;
            if (i >= N) { mt[0] = mt[N - 1]; i = 1; }
        }
        mt[0] = 0x80000000;
        mti = N;
    }

    /** Next 32-bit output as an unsigned value in a long. */
    public long nextUint32() {
        if (mti >= N) {
            for (int kk = 0; kk < N; kk++) {
                int y = (mt[kk] & 0x80000000) | (mt[(kk + 1) % N] & 0x7fffffff);
                mt[kk] = mt[(kk + M) % N] ^ (y >>> 1) ^ ((y & 1) != 0 ? 0x9908b0df : 0);
            }
            mti = 0;
        }
        int y = mt[mti++];
        y ^= (y >>> 11);
        y ^= (y << 7) & 0x9d2c5680;
        y ^= (y << 15) & 0xefc60000;
        y ^= (y >>> 18);
        return y & 0xffffffffL;
    }

    /** {@code getrandbits(k)} for 1 <= k <= 32. */
    public long getrandbits(int k) {
        if (k < 1 || k > 32) throw new IllegalArgumentException("k must be in 1..32");
        return nextUint32() >>> (32 - k);
    }

    /** {@code _randbelow_with_getrandbits(n)}: uniform in [0, n). */
    public int randbelow(int n) {
        int k = 32 - Integer.numberOfLeadingZeros(n); // n.bit_length()
        long r = getrandbits(k);
        while (r >= n) r = getrandbits(k);
        return (int) r;
    }

    /** {@code random.sample(population, k)} with CPython's algorithm (list pool for small n, set of indices otherwise). */
    public <T> List<T> sample(List<T> population, int k) {
        int n = population.size();
        if (k < 0 || k > n) throw new IllegalArgumentException("Sample larger than population or is negative");
        List<T> result = new ArrayList<>(k);
        int setsize = 21;
        if (k > 5) setsize += (int) Math.pow(4, Math.ceil(Math.log(k * 3) / Math.log(4)));
        if (n <= setsize) {
            List<T> pool = new ArrayList<>(population);
            for (int i = 0; i < k; i++) {
                int j = randbelow(n - i);
                result.add(pool.get(j));
                pool.set(j, pool.get(n - i - 1));
            }
        } else {
            Set<Integer> selected = new HashSet<>();
            for (int i = 0; i < k; i++) {
                int j = randbelow(n);
                while (selected.contains(j)) j = randbelow(n);
                selected.add(j);
                result.add(population.get(j));
            }
        }
        return result;
    }
}
