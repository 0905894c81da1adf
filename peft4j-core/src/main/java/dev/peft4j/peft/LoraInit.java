package dev.peft4j.peft;

import java.util.random.RandomGenerator;

/**
 * PEFT's initial values for new adapters (row-major float arrays). Same distributions as PEFT/torch, not the same
 * random streams.
 */
public final class LoraInit {
    private LoraInit() {}

    /**
     * {@code init_lora_weights=True}: A {@code [r, in]} ← {@code nn.init.kaiming_uniform_(a=√5)}: fan_in = in,
     * gain = √(2/(1+a²)) = √(1/3), bound = gain·√(3/fan_in) = 1/√in; A ~ U(−bound, bound).
     */
    public static float[] kaimingUniformA(int r, int inFeatures, RandomGenerator rng) {
        double bound = kaimingUniformBound(inFeatures, Math.sqrt(5));
        float[] a = new float[r * inFeatures];
        for (int i = 0; i < a.length; i++) a[i] = (float) ((rng.nextDouble() * 2 - 1) * bound);
        return a;
    }

    /** torch {@code kaiming_uniform_} bound for leaky_relu with slope a: √(6 / ((1 + a²)·fan_in)). */
    public static double kaimingUniformBound(int fanIn, double a) {
        double gain = Math.sqrt(2.0 / (1 + a * a));
        return gain * Math.sqrt(3.0 / fanIn);
    }

    /** {@code init_lora_weights="gaussian"}: A {@code [r, in]} ← N(0, (1/r)²), i.e. std 1/r. */
    public static float[] gaussianA(int r, int inFeatures, RandomGenerator rng) {
        double std = 1.0 / r;
        float[] a = new float[r * inFeatures];
        for (int i = 0; i < a.length; i++) a[i] = (float) (rng.nextGaussian() * std);
        return a;
    }

    /** B {@code [out, r]} ← 0 (both init modes). */
    public static float[] zeroB(int outFeatures, int r) { return new float[outFeatures * r]; }

    /**
     * A for the config's {@code init_lora_weights}: true → kaiming-uniform, "gaussian" → N(0, 1/r²), false → the
     * nn.Linear default (also kaiming-uniform, a=√5).
     */
    public static float[] initA(Object initLoraWeights, int r, int inFeatures, RandomGenerator rng) {
        if (initLoraWeights instanceof Boolean) return kaimingUniformA(r, inFeatures, rng);
        if (initLoraWeights instanceof String s && s.equalsIgnoreCase("gaussian")) return gaussianA(r, inFeatures, rng);
        throw new dev.peft4j.util.UserException("init_lora_weights=" + initLoraWeights + " is not supported by peft4j (use true or \"gaussian\")");
    }

    /**
     * B for the config's {@code init_lora_weights}: zeros, except false (PEFT's debug mode) where B keeps the
     * nn.Linear default init U(−1/√r, 1/√r).
     */
    public static float[] initB(Object initLoraWeights, int outFeatures, int r, RandomGenerator rng) {
        if (Boolean.FALSE.equals(initLoraWeights)) return kaimingUniformA(outFeatures, r, rng);
        return zeroB(outFeatures, r);
    }
}
