package dev.peft4j.model;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class SamplerTest {
    static float[] logits() { return new float[]{1f, 3f, 2.5f, -1f, 0f, 2.9f}; }

    static Sampler s(float t, int k, float p, float minP, float rep, long seed) {
        return new Sampler(new Sampler.Options(t, k, p, minP, rep, seed));
    }

    @Test
    void greedyAndTopK1PickTheArgmax() {
        assertEquals(1, s(0, 0, 1, 0, 1, 0).next(logits(), new int[0], 0));
        for (long seed = 0; seed < 20; seed++) assertEquals(1, s(1.5f, 1, 1, 0, 1, seed).next(logits(), new int[0], 0));
    }

    @Test
    void sameSeedSameDrawsAndDrawsStayInTopK() {
        int diff = 0;
        for (long seed = 0; seed < 50; seed++) {
            int a = s(1f, 3, 1, 0, 1, seed).next(logits(), new int[0], 0);
            int b = s(1f, 3, 1, 0, 1, seed).next(logits(), new int[0], 0);
            assertEquals(a, b);
            assertTrue(a == 1 || a == 5 || a == 2, "outside top-3: " + a);
            if (a != 1) diff++;
        }
        assertTrue(diff > 0, "sampling never left the argmax");
    }

    @Test
    void topPKeepsSmallestSetReachingP() {
        // probabilities at T=1: token 1 alone has about 0.34 of the mass, so top_p 0.3 keeps only it
        for (long seed = 0; seed < 30; seed++) assertEquals(1, s(1f, 0, 0.3f, 0, 1, seed).next(logits(), new int[0], 0));
    }

    @Test
    void minPDropsUnlikelyTokens() {
        // min_p 0.9: only tokens with p >= 0.9 * p_max survive: token 1 (3.0) and token 5 (2.9, ratio e^-0.1 = 0.905)
        for (long seed = 0; seed < 40; seed++) {
            int t = s(1f, 0, 1, 0.9f, 1, seed).next(logits(), new int[0], 0);
            assertTrue(t == 1 || t == 5, "got " + t);
        }
    }

    @Test
    void repetitionPenaltyDividesPositiveAndMultipliesNegativeLogits() {
        float[] l = logits();
        // penalise token 1 (3.0 -> 1.5) and token 3 (-1 -> -2): greedy now picks token 5 (2.9)
        assertEquals(5, s(0, 0, 1, 0, 2f, 0).next(l, new int[]{1, 3, 1}, 3));
        assertEquals(1.5f, l[1]);
        assertEquals(-2f, l[3]);
    }

    @Test
    void radixSortAndPrimitiveHeapGiveTheComparisonSortAndPriorityQueueOrders() {
        java.util.Random r = new java.util.Random(3);
        for (int n : new int[]{10, 5000, 70000}) {
            float[] v = new float[n];
            for (int i = 0; i < n; i++) v[i] = r.nextInt(4) == 0 ? (float) r.nextInt(50) : (float) (r.nextGaussian() * 10);   // many ties
            v[n / 2] = -0.0f;
            v[n / 3] = 0.0f;
            long[] keys = new long[n];
            for (int i = 0; i < n; i++) {
                int b = Float.floatToIntBits(v[i]);
                keys[i] = ((long) ~(b ^ ((b >> 31) & 0x7fffffff)) << 32) | i;
            }
            long[] want = keys.clone();
            java.util.Arrays.sort(want);
            Sampler.sortKeys(keys, n, new long[n], new int[257]);
            assertArrayEquals(want, keys, "n " + n);
            for (int k : new int[]{1, 7, 40, 1000}) {
                if (k >= n) continue;
                java.util.PriorityQueue<Integer> pq = new java.util.PriorityQueue<>(k + 1,
                        (a, b) -> v[a] != v[b] ? Float.compare(v[a], v[b]) : Integer.compare(b, a));
                for (int i = 0; i < n; i++) {
                    if (pq.size() < k) pq.add(i);
                    else if (v[i] > v[pq.peek()]) { pq.poll(); pq.add(i); }
                }
                int[] ref = new int[pq.size()];
                for (int i = ref.length - 1; i >= 0; i--) ref[i] = pq.poll();
                assertArrayEquals(ref, Sampler.topIndices(v, k), "n " + n + " k " + k);
            }
            int best = 0;
            for (int i = 1; i < n; i++) if (v[i] > v[best]) best = i;
            assertEquals(best, Sampler.argmax(v, 0, n));
        }
    }

    /** argmax (vectorized) gives the plain scan's answer: the first of tied maxima, NaN never chosen, any length and offset. */
    @Test
    void argmaxIsTheFirstLargestLikeAPlainScan() {
        java.util.SplittableRandom r = new java.util.SplittableRandom(4);
        for (int n : new int[]{1, 5, 16, 17, 63, 64, 100, 130, 1000}) {
            for (int trial = 0; trial < 20; trial++) {
                float[] v = new float[n + 3];
                for (int i = 0; i < v.length; i++) v[i] = (float) r.nextInt(7) - 3;        // many ties
                if (trial % 4 == 1) v[3 + r.nextInt(n)] = Float.NaN;
                if (trial % 4 == 2) java.util.Arrays.fill(v, Float.NEGATIVE_INFINITY);
                if (trial % 4 == 3) v[3 + r.nextInt(n)] = 100f;                        // one largest, anywhere
                int best = 0;
                float bv = Float.NEGATIVE_INFINITY;
                for (int i = 0; i < n; i++) if (v[3 + i] > bv) { bv = v[3 + i]; best = i; }
                assertEquals(best, Sampler.argmax(v, 3, n), "n " + n + " trial " + trial);
            }
        }
    }
}
