package dev.peft4j.train;

import dev.peft4j.io.SafeTensors;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * torch.optim.AdamW (single-tensor, amsgrad off, maximize off): per parameter with decay, p ← p·(1 − lr·wd); then
 * m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², p ← p − lr/(1−β1^t) · m / (√v / √(1−β2^t) + eps).
 * The state (step, m, v per parameter) can be saved to and restored from a safetensors file.
 */
public final class AdamW {
    public final double beta1, beta2, eps, weightDecay;
    private long step;
    private final Map<String, float[]> m = new LinkedHashMap<>(), v = new LinkedHashMap<>();

    public AdamW(double beta1, double beta2, double eps, double weightDecay) {
        this.beta1 = beta1;
        this.beta2 = beta2;
        this.eps = eps;
        this.weightDecay = weightDecay;
    }

    /** transformers' Trainer defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0. */
    public static AdamW defaults(double weightDecay) { return new AdamW(0.9, 0.999, 1e-8, weightDecay); }

    public long step() { return step; }

    /** One update of every parameter from its gradient, at learning rate {@code lr}. */
    public void update(Params params, double lr) {
        step++;
        double bc1 = 1 - Math.pow(beta1, step);
        double bc2 = 1 - Math.pow(beta2, step);
        final float stepSize = (float) (lr / bc1);
        final float bc2Sqrt = (float) Math.sqrt(bc2);
        for (Params.Param p : params) {
            float[] mm = m.computeIfAbsent(p.name(), k -> new float[p.data().length]);
            float[] vv = v.computeIfAbsent(p.name(), k -> new float[p.data().length]);
            float[] w = p.data(), g = p.grad();
            // torch computes these scalars in double (Python floats) and the kernels use them as float32
            float decay = p.decay() ? (float) (1 - lr * weightDecay) : 1f;
            float b2 = (float) beta2, w1 = (float) (1 - beta1), w2 = (float) (1 - beta2), e = (float) eps;
            dev.peft4j.tensor.Parallel.forRange(w.length, 1 << 15, (a, b) -> {
                for (int i = a; i < b; i++) {
                    float gi = g[i];
                    w[i] *= decay;
                    mm[i] += (gi - mm[i]) * w1;
                    vv[i] = vv[i] * b2 + w2 * gi * gi;
                    float denom = (float) Math.sqrt(vv[i]) / bc2Sqrt + e;
                    w[i] -= stepSize * (mm[i] / denom);
                }
            });
        }
    }

    /** Writes step, m ({@code exp_avg.<name>}) and v ({@code exp_avg_sq.<name>}) to a safetensors file (atomically). */
    public void save(Path file, Params params) throws IOException {
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        for (Params.Param p : params) {
            float[] mm = m.getOrDefault(p.name(), new float[p.data().length]);
            float[] vv = v.getOrDefault(p.name(), new float[p.data().length]);
            e.put("exp_avg." + p.name(), SafeTensors.Entry.f32(mm, p.shape()));
            e.put("exp_avg_sq." + p.name(), SafeTensors.Entry.f32(vv, p.shape()));
        }
        SafeTensors.write(file, e, Map.of("step", Long.toString(step), "beta1", Double.toString(beta1), "beta2", Double.toString(beta2),
                "eps", Double.toString(eps), "weight_decay", Double.toString(weightDecay)));
    }

    /** Restores the state written by {@link #save}; every parameter must be present with the same size. */
    public void load(Path file, Params params) {
        try (SafeTensors st = SafeTensors.open(file)) {
            String s = st.metadata().get("step");
            if (s == null) throw new UserException(file + ": optimizer state has no 'step' in its metadata");
            try {
                step = Long.parseLong(s);
            } catch (NumberFormatException ex) {
                throw new UserException(file + ": optimizer 'step' is not a number: " + s);
            }
            for (Params.Param p : params) {
                m.put(p.name(), tensor(st, file, "exp_avg." + p.name(), p.data().length));
                v.put(p.name(), tensor(st, file, "exp_avg_sq." + p.name(), p.data().length));
            }
        }
    }

    private static float[] tensor(SafeTensors st, Path file, String name, int n) {
        if (!st.has(name)) throw new UserException(file + ": optimizer state has no tensor " + name);
        float[] a = st.get(name).toFloats();
        if (a.length != n) throw new UserException(file + ": tensor " + name + " has " + a.length + " values, the parameter has " + n);
        return a;
    }

    /** The first moment of a parameter (null before its first update). */
    public float[] expAvg(String name) { return m.get(name); }

    /** The second moment of a parameter (null before its first update). */
    public float[] expAvgSq(String name) { return v.get(name); }
}
