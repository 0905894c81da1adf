package dev.peft4j.model;

import java.util.List;

/**
 * How far a quantized model's next-token distributions are from the float model's on the same tokens: the fraction of
 * positions whose top-1 token agrees, and the mean (and largest) KL divergence KL(float ‖ quantized) in nats, softmax in
 * double precision. Sequences run in chunks of positions through KV-cached sessions, so only a chunk of logits rows is held.
 */
public final class QuantAccuracy {
    /** Agreement over {@code positions} next-token predictions. */
    public record Result(long positions, double top1Agreement, double meanKl, double maxKl) {}

    private QuantAccuracy() {}

    /** Compares {@code reference} (float) and {@code quantized} on each sequence, every position predicting the next token. */
    public static Result compare(CausalLM reference, CausalLM quantized, List<int[]> sequences, int chunk) {
        int V = reference.vocabSize();
        if (quantized.vocabSize() != V) throw new IllegalArgumentException("vocabulary sizes differ");
        long n = 0, agree = 0;
        double klSum = 0, klMax = 0;
        for (int[] seq : sequences) {
            CausalLM.Session a = reference.newSession(), b = quantized.newSession();
            for (int t0 = 0; t0 < seq.length; t0 += chunk) {
                int[] part = java.util.Arrays.copyOfRange(seq, t0, Math.min(seq.length, t0 + chunk));
                float[] la = a.appendAll(part), lb = b.appendAll(part);
                for (int r = 0; r < part.length; r++) {
                    int o = r * V;
                    if (dev.peft4j.model.Sampler.argmax(la, o, V) == dev.peft4j.model.Sampler.argmax(lb, o, V)) agree++;
                    double kl = kl(la, lb, o, V);
                    klSum += kl;
                    klMax = Math.max(klMax, kl);
                    n++;
                }
            }
        }
        return new Result(n, n == 0 ? 1 : (double) agree / n, n == 0 ? 0 : klSum / n, klMax);
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
