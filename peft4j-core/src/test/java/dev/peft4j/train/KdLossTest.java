package dev.peft4j.train;

import dev.peft4j.tensor.Matrix;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The distillation loss against an independent float64 transcription of TRL's {@code generalized_jsd_loss} (log_softmax,
 * {@code F.kl_div(input, target, log_target=True)} = Σ exp(target)·(target − input), the mixture as a logsumexp), finite
 * differences in double precision, and the chunked float32 implementation (several vocabulary chunks, softcap, T = 1 and 2).
 */
class KdLossTest {
    static final double[] BETAS = {0, 0.5, 1, 0.1, 0.9};
    static final double[] TEMPS = {1, 2};
    int savedChunk;

    @BeforeEach
    void smallChunks() { savedChunk = CrossEntropy.maxChunkFloats; CrossEntropy.maxChunkFloats = 7 * 2 * 37; }

    @AfterEach
    void restore() { CrossEntropy.maxChunkFloats = savedChunk; }

    // ----- the independent reference: TRL's code, line by line, in double

    static double[] logSoftmax(double[] x) {
        double mx = Double.NEGATIVE_INFINITY;
        for (double v : x) mx = Math.max(mx, v);
        double s = 0;
        for (double v : x) s += Math.exp(v - mx);
        double lse = mx + Math.log(s);
        double[] o = new double[x.length];
        for (int i = 0; i < x.length; i++) o[i] = x[i] - lse;
        return o;
    }

    /** F.kl_div(input, target, reduction="none", log_target=True).sum(-1) */
    static double klDiv(double[] input, double[] target) {
        double s = 0;
        for (int i = 0; i < input.length; i++) s += Math.exp(target[i]) * (target[i] - input[i]);
        return s;
    }

    static double trl(double[] studentLogits, double[] teacherLogits, double beta, double temperature) {
        int V = studentLogits.length;
        double[] sl = new double[V], tl = new double[V];
        for (int i = 0; i < V; i++) { sl[i] = studentLogits[i] / temperature; tl[i] = teacherLogits[i] / temperature; }
        double[] s = logSoftmax(sl), t = logSoftmax(tl);
        if (beta == 0) return klDiv(s, t);
        if (beta == 1) return klDiv(t, s);
        double[] mix = new double[V];
        for (int i = 0; i < V; i++) {
            double a = s[i] + Math.log(1 - beta), b = t[i] + Math.log(beta);
            double mx = Math.max(a, b);
            mix[i] = mx + Math.log(Math.exp(a - mx) + Math.exp(b - mx));
        }
        double klTeacher = klDiv(mix, t), klStudent = klDiv(mix, s);
        return beta * klTeacher + (1 - beta) * klStudent;
    }

    /** Central differences of {@link #trl} with respect to the student logits. */
    static double[] fd(double[] zs, double[] zt, double beta, double T) {
        double[] g = new double[zs.length];
        double h = 1e-6;
        for (int i = 0; i < zs.length; i++) {
            double keep = zs[i];
            zs[i] = keep + h;
            double up = trl(zs, zt, beta, T);
            zs[i] = keep - h;
            double dn = trl(zs, zt, beta, T);
            zs[i] = keep;
            g[i] = (up - dn) / (2 * h);
        }
        return g;
    }

    static double[] randn(SplittableRandom r, int n, double sd) {
        double[] x = new double[n];
        for (int i = 0; i < n; i++) x[i] = r.nextGaussian() * sd;
        return x;
    }

    @Test
    void rowDefinitionMatchesTrlAndFiniteDifferences() {
        SplittableRandom r = new SplittableRandom(3);
        for (double beta : BETAS) for (double T : TEMPS) {
            double[] zs = randn(r, 50, 2), zt = randn(r, 50, 2);
            double[] dz = new double[50];
            double l = KdLoss.rowLossAndGrad(zs, zt, beta, T, dz);
            double ref = trl(zs, zt, beta, T);
            assertEquals(ref, l, 1e-12 * Math.max(1, Math.abs(ref)), "loss beta " + beta + " T " + T);
            assertTrue(ref > 1e-3, "a non-trivial divergence");
            double[] g = fd(zs, zt, beta, T);
            for (int i = 0; i < 50; i++) assertEquals(g[i], dz[i], 1e-7, "d/dz[" + i + "] beta " + beta + " T " + T);
        }
    }

    @Test
    void fixedValuesPinTheConvention() {
        // beta 0 is KL(teacher || student), beta 1 is KL(student || teacher): with p = (0.5, 0.5), q = (0.9, 0.1)
        double[] zs = {0, 0}, zt = {Math.log(0.9), Math.log(0.1)};
        double forward = 0.9 * Math.log(0.9 / 0.5) + 0.1 * Math.log(0.1 / 0.5);
        double reverse = 0.5 * Math.log(0.5 / 0.9) + 0.5 * Math.log(0.5 / 0.1);
        assertEquals(forward, KdLoss.rowLossAndGrad(zs, zt, 0, 1, null), 1e-15);
        assertEquals(reverse, KdLoss.rowLossAndGrad(zs, zt, 1, 1, null), 1e-15);
        double m0 = 0.5 * 0.5 + 0.5 * 0.9, m1 = 0.5 * 0.5 + 0.5 * 0.1;
        double jsd = 0.5 * (0.9 * Math.log(0.9 / m0) + 0.1 * Math.log(0.1 / m1)) + 0.5 * (0.5 * Math.log(0.5 / m0) + 0.5 * Math.log(0.5 / m1));
        assertEquals(jsd, KdLoss.rowLossAndGrad(zs, zt, 0.5, 1, null), 1e-15);
    }

    // ----- chunked float32 implementation against the reference

    record Case(float[] hs, float[] ht, float[] ws, float[] wt, int H, int Ht, int V, int N, int[] rows) {}

    static Case randomCase(long seed, int V, boolean sameModel) {
        SplittableRandom r = new SplittableRandom(seed);
        int H = 12, Ht = sameModel ? 12 : 20, N = 9;
        int[] rows = {0, 2, 3, 5, 8};
        float[] hs = f(randn(r, N * H, 1)), ws = f(randn(r, V * H, 0.5));
        float[] ht = sameModel ? null : f(randn(r, rows.length * Ht, 1)), wt = sameModel ? ws : f(randn(r, V * Ht, 0.5));
        if (sameModel) {
            ht = new float[rows.length * H];
            for (int m = 0; m < rows.length; m++) System.arraycopy(hs, rows[m] * H, ht, m * H, H);
        }
        return new Case(hs, ht, ws, wt, H, Ht, V, N, rows);
    }

    static float[] f(double[] x) {
        float[] o = new float[x.length];
        for (int i = 0; i < x.length; i++) o[i] = (float) x[i];
        return o;
    }

    static double[] logits(float[] h, int off, float[] w, int H, int V, Double cap) {
        double[] z = new double[V];
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int i = 0; i < H; i++) s += (double) h[off + i] * w[v * H + i];
            z[v] = cap == null ? s : cap * Math.tanh(s / cap);
        }
        return z;
    }

    @Test
    void chunkedLossAndGradientsMatchTheReference() {
        for (Double cap : new Double[]{null, 3.0}) for (double beta : new double[]{0, 0.5, 1}) for (double T : TEMPS) {
            Case c = randomCase(11, 301, false);
            int M = c.rows.length;
            float[] dHidden = new float[c.N * c.H], dHead = new float[c.V * c.H];
            float gradScale = 0.25f;
            double got = KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), cap,
                    new KdLoss.DenseTeacher(c.ht, c.Ht, Matrix.heap(c.V, c.Ht, c.wt), cap), beta, T, false, gradScale, dHidden, dHead);
            double want = 0;
            double[] wantDh = new double[c.N * c.H], wantDw = new double[c.V * c.H];
            for (int m = 0; m < M; m++) {
                double[] zs = logits(c.hs, c.rows[m] * c.H, c.ws, c.H, c.V, cap), zt = logits(c.ht, m * c.Ht, c.wt, c.Ht, c.V, cap);
                want += trl(zs, zt, beta, T);
                double[] dz = fd(zs, zt, beta, T);
                for (int v = 0; v < c.V; v++) {
                    double d = dz[v] * gradScale;
                    if (cap != null) d *= 1 - (zs[v] / cap) * (zs[v] / cap);
                    for (int i = 0; i < c.H; i++) {
                        wantDh[c.rows[m] * c.H + i] += d * c.ws[v * c.H + i];
                        wantDw[v * c.H + i] += d * c.hs[c.rows[m] * c.H + i];
                    }
                }
            }
            String what = "beta " + beta + " T " + T + " cap " + cap;
            assertEquals(want, got, 2e-5 * Math.max(1, want), "loss " + what);
            assertClose(wantDh, dHidden, 2e-5, "d hidden " + what);
            assertClose(wantDw, dHead, 2e-5, "d head " + what);
            // with d(hidden) only (the fused pass), the same gradient
            float[] dHiddenOnly = new float[c.N * c.H];
            double fused = KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), cap,
                    new KdLoss.DenseTeacher(c.ht, c.Ht, Matrix.heap(c.V, c.Ht, c.wt), cap), beta, T, false, gradScale, dHiddenOnly, null);
            assertEquals(want, fused, 2e-5 * Math.max(1, want), "loss (d hidden only) " + what);
            assertClose(wantDh, dHiddenOnly, 2e-5, "d hidden only " + what);
            // the loss alone (no gradients) is the same number
            double only = KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), cap,
                    new KdLoss.DenseTeacher(c.ht, c.Ht, Matrix.heap(c.V, c.Ht, c.wt), cap), beta, T, false, 1f, null, null);
            assertEquals(got, only, 1e-5 * Math.max(1, got), "loss without gradients " + what);
            double t2 = KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), cap,
                    new KdLoss.DenseTeacher(c.ht, c.Ht, Matrix.heap(c.V, c.Ht, c.wt), cap), beta, T, true, 1f, null, null);
            assertEquals(only * T * T, t2, 1e-6 * Math.max(1, t2), "T^2 scaling " + what);
        }
    }

    static void assertClose(double[] want, float[] got, double tol, String what) {
        double scale = 0;
        for (double w : want) scale = Math.max(scale, Math.abs(w));
        assertTrue(scale > 1e-6, what + ": a non-zero gradient");
        for (int i = 0; i < want.length; i++) {
            if (Math.abs(want[i] - got[i]) > tol * Math.max(scale, 1e-3)) fail(what + " [" + i + "]: expected " + want[i] + ", got " + got[i]);
        }
    }

    @Test
    void teacherEqualToStudentGivesZeroLossAndZeroGradient() {
        for (double beta : new double[]{0, 0.5, 1}) for (double T : TEMPS) {
            Case c = randomCase(5, 257, true);
            float[] dHidden = new float[c.N * c.H], dHead = new float[c.V * c.H];
            double l = KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), null,
                    new KdLoss.DenseTeacher(c.ht, c.H, Matrix.heap(c.V, c.H, c.wt), null), beta, T, false, 1f, dHidden, dHead);
            assertEquals(0, l, 1e-6, "loss beta " + beta + " T " + T);
            for (float g : dHidden) assertEquals(0, g, 1e-6, "d hidden beta " + beta);
            for (float g : dHead) assertEquals(0, g, 1e-6, "d head beta " + beta);
            float[] dOnly = new float[c.N * c.H];
            KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), null,
                    new KdLoss.DenseTeacher(c.ht, c.H, Matrix.heap(c.V, c.H, c.wt), null), beta, T, false, 1f, dOnly, null);
            for (float g : dOnly) assertEquals(0, g, 1e-6, "d hidden (fused) beta " + beta);
        }
    }

    // ----- the top-k (teacher cache) approximation

    /** The coarse-grained divergence over {top-k ids..., rest}, in double, straight from the definition. */
    static double coarse(double[] zs, KdLoss.SparseTeacher te, int m, double beta, double T) {
        int k = te.k();
        double[] s = logSoftmax(scale(zs, 1 / T));
        double[] P = new double[k + 1], Q = new double[k + 1];
        double pt = 0;
        for (int i = 0; i < k; i++) {
            P[i] = Math.exp(s[te.ids()[m * k + i]]);
            Q[i] = Math.exp(te.logProbs()[m * k + i]);
            pt += P[i];
        }
        P[k] = Math.max(KdLoss.REST_FLOOR, 1 - pt);
        Q[k] = Math.max(KdLoss.REST_FLOOR, Math.exp(te.restLogMass()[m]));
        double l = 0;
        for (int c = 0; c <= k; c++) {
            if (beta == 0) l += Q[c] * Math.log(Q[c] / P[c]);
            else if (beta == 1) l += P[c] * Math.log(P[c] / Q[c]);
            else {
                double mix = (1 - beta) * P[c] + beta * Q[c];
                l += beta * Q[c] * Math.log(Q[c] / mix) + (1 - beta) * P[c] * Math.log(P[c] / mix);
            }
        }
        return l;
    }

    static double[] scale(double[] x, double a) {
        double[] o = x.clone();
        for (int i = 0; i < o.length; i++) o[i] *= a;
        return o;
    }

    @Test
    void topKTeacherIsTheExactCoarseGrainedDivergence() {
        for (double beta : new double[]{0, 0.5, 1}) for (double T : TEMPS) {
            Case c = randomCase(21, 203, false);
            int M = c.rows.length, k = 8;
            KdLoss.DenseTeacher dense = new KdLoss.DenseTeacher(c.ht, c.Ht, Matrix.heap(c.V, c.Ht, c.wt), null);
            KdLoss.SparseTeacher sp = KdLoss.topK(dense, M, k, T);
            // the top-k are the k largest teacher log-probs, in descending order, and the rest is the remaining mass
            for (int m = 0; m < M; m++) {
                double[] t = logSoftmax(scale(logits(c.ht, m * c.Ht, c.wt, c.Ht, c.V, null), 1 / T));
                double[] sorted = t.clone();
                java.util.Arrays.sort(sorted);
                double top = 0;
                for (int i = 0; i < k; i++) {
                    assertEquals(sorted[c.V - 1 - i], sp.logProbs()[m * k + i], 1e-5, "top-" + i);
                    assertEquals(t[sp.ids()[m * k + i]], sp.logProbs()[m * k + i], 1e-5);
                    top += Math.exp(t[sp.ids()[m * k + i]]);
                }
                assertEquals(Math.log(1 - top), sp.restLogMass()[m], 1e-4);
            }
            float[] dHidden = new float[c.N * c.H], dHead = new float[c.V * c.H];
            float gs = 0.5f;
            double got = KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), null, sp, beta, T, false, gs, dHidden, dHead);
            double want = 0;
            double[] wantDh = new double[c.N * c.H], wantDw = new double[c.V * c.H];
            for (int m = 0; m < M; m++) {
                double[] zs = logits(c.hs, c.rows[m] * c.H, c.ws, c.H, c.V, null);
                want += coarse(zs, sp, m, beta, T);
                for (int v = 0; v < c.V; v++) {   // finite differences of the coarse-grained reference
                    double keep = zs[v], h = 1e-6;
                    zs[v] = keep + h;
                    double up = coarse(zs, sp, m, beta, T);
                    zs[v] = keep - h;
                    double dn = coarse(zs, sp, m, beta, T);
                    zs[v] = keep;
                    double d = (up - dn) / (2 * h) * gs;
                    for (int i = 0; i < c.H; i++) {
                        wantDh[c.rows[m] * c.H + i] += d * c.ws[v * c.H + i];
                        wantDw[v * c.H + i] += d * c.hs[c.rows[m] * c.H + i];
                    }
                }
            }
            String what = "top-k beta " + beta + " T " + T;
            assertEquals(want, got, 2e-5 * Math.max(1, want), "loss " + what);
            assertClose(wantDh, dHidden, 1e-4, "d hidden " + what);
            assertClose(wantDw, dHead, 1e-4, "d head " + what);
            // never above the full divergence (data-processing inequality)
            double full = KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), null, dense, beta, T, false, 1f, null, null);
            assertTrue(got <= full + 1e-5, what + ": coarse " + got + " <= full " + full);
            // with k = V it is the full divergence
            KdLoss.SparseTeacher all = KdLoss.topK(dense, M, c.V, T);
            double viaAll = KdLoss.lossAndGrad(c.hs, c.H, c.rows, Matrix.heap(c.V, c.H, c.ws), null, all, beta, T, false, 1f, null, null);
            assertEquals(full, viaAll, 1e-4 * Math.max(1, full), what + ": k = V");
        }
    }

    @Test
    void vectorLogMatchesMath() {
        SplittableRandom r = new SplittableRandom(1);
        for (int i = 0; i < 10000; i++) {
            float x = (float) Math.exp(r.nextDouble(-87, 88));
            float l = KdLoss.log(x);
            assertEquals(Math.log(x), l, 2e-7 * Math.max(1, Math.abs(Math.log(x))), "log " + x);
            float[] a = new float[jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.length()];
            java.util.Arrays.fill(a, x);
            float lv = KdLoss.log(jdk.incubator.vector.FloatVector.fromArray(jdk.incubator.vector.FloatVector.SPECIES_PREFERRED, a, 0)).lane(0);
            assertEquals(l, lv, 0f, "vector and scalar log agree bit for bit at " + x);
        }
    }
}
