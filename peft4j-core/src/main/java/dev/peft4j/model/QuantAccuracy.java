package dev.peft4j.model;

import java.util.List;

/**
 * How far a quantized model's next-token distributions are from the float model's on the same tokens: the fraction of
 * positions whose top-1 token agrees, and the mean (and largest) KL divergence KL(float ‖ quantized) in nats, softmax in
 * double precision. Sequences run in chunks of positions through KV-cached sessions, so only a chunk of logits rows is held.
 */
public final class QuantAccuracy {
    /**
     * Agreement over {@code positions} next-token predictions; {@code medianMargin}: the median gap between the float model's
     * two largest logits (a random-weight model's distributions are nearly flat, so its top-1 flips for tiny changes).
     * {@code logitNoise}: the quantization's noise on a logit, the RMS over all positions and tokens of the quantized minus
     * the float logit (each row's mean difference removed: a shift changes no probability). {@code maxFlipMargin}: the
     * largest float margin at a position whose top-1 changed. {@code decided}: the positions whose float margin is at least
     * 4 x logitNoise (the gap between two logits moves by about √2 x logitNoise), and {@code decidedAgreement} the top-1
     * agreement there.
     */
    public record Result(long positions, double top1Agreement, double meanKl, double maxKl, double medianMargin,
                         double logitNoise, double maxFlipMargin, long decided, double decidedAgreement) {}

    private QuantAccuracy() {}

    /** Compares {@code reference} (float) and {@code quantized} on each sequence, every position predicting the next token. */
    public static Result compare(CausalLM reference, CausalLM quantized, List<int[]> sequences, int chunk) {
        int V = reference.vocabSize();
        if (quantized.vocabSize() != V) throw new IllegalArgumentException("vocabulary sizes differ");
        long n = 0, agree = 0;
        double klSum = 0, klMax = 0, sq = 0, maxFlip = 0;
        long values = 0;
        List<Double> margins = new java.util.ArrayList<>();
        List<double[]> marginAgree = new java.util.ArrayList<>();   // {float margin, 1 if the top-1 agrees}
        for (int[] seq : sequences) {
            CausalLM.Session a = reference.newSession(), b = quantized.newSession();
            for (int t0 = 0; t0 < seq.length; t0 += chunk) {
                int[] part = java.util.Arrays.copyOfRange(seq, t0, Math.min(seq.length, t0 + chunk));
                float[] la = a.appendAll(part), lb = b.appendAll(part);
                for (int r = 0; r < part.length; r++) {
                    int o = r * V;
                    boolean same = dev.peft4j.model.Sampler.argmax(la, o, V) == dev.peft4j.model.Sampler.argmax(lb, o, V);
                    if (same) agree++;
                    double m = margin(la, o, V);
                    margins.add(m);
                    marginAgree.add(new double[]{m, same ? 1 : 0});
                    if (!same) maxFlip = Math.max(maxFlip, m);
                    double mean = 0;
                    for (int i = 0; i < V; i++) mean += (double) lb[o + i] - la[o + i];
                    mean /= V;
                    for (int i = 0; i < V; i++) { double d = (double) lb[o + i] - la[o + i] - mean; sq += d * d; }
                    values += V;
                    double kl = kl(la, lb, o, V);
                    klSum += kl;
                    klMax = Math.max(klMax, kl);
                    n++;
                }
            }
        }
        java.util.Collections.sort(margins);
        double noise = values == 0 ? 0 : Math.sqrt(sq / values);
        long decided = 0, decidedAgree = 0;
        for (double[] ma : marginAgree) {
            if (ma[0] >= 4 * noise) { decided++; decidedAgree += (long) ma[1]; }
        }
        return new Result(n, n == 0 ? 1 : (double) agree / n, n == 0 ? 0 : klSum / n, klMax, margins.isEmpty() ? 0 : margins.get(margins.size() / 2),
                noise, maxFlip, decided, decided == 0 ? 1 : (double) decidedAgree / decided);
    }

    /** The largest logit minus the second largest. */
    static double margin(float[] a, int o, int V) {
        float m1 = Float.NEGATIVE_INFINITY, m2 = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < V; i++) {
            float v = a[o + i];
            if (v > m1) { m2 = m1; m1 = v; } else if (v > m2) m2 = v;
        }
        return m1 - m2;
    }

    /** KL(softmax(p) ‖ softmax(q)) of one row. */
    static double kl(float[] p, float[] q, int o, int V) {
        double mp = Double.NEGATIVE_INFINITY, mq = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < V; i++) { mp = Math.max(mp, p[o + i]); mq = Math.max(mq, q[o + i]); }
        double zp = 0, zq = 0;
        for (int i = 0; i < V; i++) { zp += Math.exp(p[o + i] - mp); zq += Math.exp(q[o + i] - mq); }
        double lzp = Math.log(zp) + mp, lzq = Math.log(zq) + mq;
        double kl = 0;
        for (int i = 0; i < V; i++) {
            double lp = p[o + i] - lzp, lq = q[o + i] - lzq;
            kl += Math.exp(lp) * (lp - lq);
        }
        return Math.max(0, kl);
    }
}
