package dev.peft4j.train;

/**
 * torch.nn.utils.clip_grad_norm_ (L2): total = ‖(‖g₁‖, ‖g₂‖, …)‖; every gradient is multiplied by
 * min(1, maxNorm / (total + 1e-6)). Returns the total norm before clipping.
 */
public final class GradClip {
    private GradClip() {}

    public static double globalNorm(Params params) {
        double ss = 0;
        for (Params.Param p : params) {
            double s = 0;
            for (float g : p.grad()) s += (double) g * g;
            ss += s;
        }
        return Math.sqrt(ss);
    }

    public static double clip(Params params, double maxNorm) {
        double total = globalNorm(params);
        double coef = Math.min(1.0, maxNorm / (total + 1e-6));
        if (coef < 1.0) {
            float cf = (float) coef;
            for (Params.Param p : params) {
                float[] g = p.grad();
                for (int i = 0; i < g.length; i++) g[i] *= cf;
            }
        }
        return total;
    }
}
