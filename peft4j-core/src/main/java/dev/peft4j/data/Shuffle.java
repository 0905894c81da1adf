package dev.peft4j.data;

import java.util.SplittableRandom;

/**
 * Deterministic shuffling. The permutation for ({@code seed}, {@code epoch}) is a Fisher–Yates shuffle (Durstenfeld,
 * from the last index down, swapping {@code i} with a uniform {@code j} in {@code [0, i]}) driven by
 * {@code new SplittableRandom(seed + epoch * 0x9E3779B97F4A7C15L)}. Because it is a pure function of the seed and the
 * epoch, a resumed run only needs {@code (seed, epoch, position)} to continue with exactly the same data order;
 * {@link SplittableRandom}'s algorithm is fixed by its specification, so the order is the same on every JVM.
 */
public final class Shuffle {
    private Shuffle() {}

    public static int[] permutation(int n, long seed, int epoch) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) p[i] = i;
        shuffle(p, rng(seed, epoch));
        return p;
    }

    static SplittableRandom rng(long seed, int epoch) {
        return new SplittableRandom(seed + epoch * 0x9E3779B97F4A7C15L);
    }

    static void shuffle(int[] a, SplittableRandom r) {
        for (int i = a.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            int t = a[i]; a[i] = a[j]; a[j] = t;
        }
    }
}
