package dev.peft4j.train;

import dev.peft4j.tensor.MatMul;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.tensor.Parallel;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The knowledge-distillation loss of {@code peft4j train --method distill}: TRL's {@code GKDTrainer.generalized_jsd_loss},
 * computed over the vocabulary in chunks (never a rows x vocabulary matrix of either model).
 *
 * <h2>Definition (TRL, trl/trainer/gkd_trainer.py)</h2>
 * For one position with student logits z<sub>s</sub> and teacher logits z<sub>t</sub> (after Gemma's final-logit softcap when
 * the model has one), temperature T and β ∈ [0, 1]:
 * <pre>
 *   s = log_softmax(z_s / T),  t = log_softmax(z_t / T),  p = exp(s),  q = exp(t)
 *   β = 0:      jsd = Σ_v q_v (t_v − s_v)                       = KL(teacher ‖ student)   ("forward KL")
 *   β = 1:      jsd = Σ_v p_v (s_v − t_v)                       = KL(student ‖ teacher)   ("reverse KL")
 *   otherwise:  m_v = log((1 − β)·p_v + β·q_v)                  (TRL: logsumexp of s + log(1−β) and t + log β)
 *               jsd = β·Σ_v q_v (t_v − m_v) + (1 − β)·Σ_v p_v (s_v − m_v)  = β·KL(q ‖ M) + (1 − β)·KL(p ‖ M)
 * </pre>
 * (TRL writes these with {@code F.kl_div(input, target, log_target=True)} = Σ exp(target)·(target − input).) The loss of a
 * batch is Σ jsd over the positions that have a label (−100 positions are dropped), divided by their number (TRL's
 * {@code reduction="batchmean"} with labels; here the division is the caller's {@code gradScale}, as for the cross-entropy, so
 * gradient accumulation gives the mean over all labelled tokens of the optimizer step). With {@code scaleT2} the result is
 * multiplied by T² (Hinton et al.; TRL does not).
 *
 * <h2>Gradient with respect to the student logits</h2>
 * With u = z_s/T, ∂jsd/∂u_j = p_j·(g_j − Σ_v p_v g_v) where g = ∂jsd/∂p (treating p as free):
 * β = 0: p_j − q_j; β = 1: p_j·(s_j − t_j − jsd); otherwise (1 − β)·p_j·((s_j − m_j) − KL(p ‖ M)); then ∂/∂z = (1/T)·∂/∂u
 * (times the softcap derivative 1 − tanh² when the model softcaps).
 *
 * <h2>Teacher given as top-k (the teacher cache)</h2>
 * With {@link SparseTeacher} the teacher distribution is known only at its k most likely tokens (log-probabilities at
 * temperature T) plus the remaining mass as one bucket. The loss is then the same divergence computed exactly on the
 * <em>coarse-grained</em> distributions over k + 1 categories: each top-k token on its own, and "every other token" as one
 * category (student mass P_rest = 1 − Σ_topk p, teacher mass Q_rest = 1 − Σ_topk q, both floored at 1e-12). By the
 * data-processing inequality this never exceeds the full-vocabulary divergence, and equals it when the teacher puts no mass
 * outside its top k. The gradient is the exact gradient of that coarse-grained loss: within the rest bucket it is spread
 * over the tokens in proportion to the student's own probabilities.
 *
 * <p>Passes over the vocabulary (each recomputes the chunk's logits with the head): dense teacher, β = 0: 2 (log-sum-exp,
 * then loss and gradient); other β: 2 when only d(hidden) is wanted (log-sum-exp; loss, the per-row constant and two gradient
 * sums combined at the end), 3 when d(head) is wanted too (full fine-tuning of a tied head). Top-k teacher: 2. Without
 * gradients one pass less.
 */
public final class KdLoss {
    private KdLoss() {}

    /** Floor of the probability masses of the rest bucket (top-k teacher). */
    public static final double REST_FLOOR = 1e-12;

    /** A teacher's view of the rows that have a label. */
    public sealed interface Teacher permits DenseTeacher, SparseTeacher {}

    /**
     * The teacher's final-normed hidden states of the labelled rows, compact [M, H] in the same order as the student's
     * labelled rows, and its output head (logits are recomputed chunk by chunk).
     */
    public record DenseTeacher(float[] hidden, int H, Matrix head, Double softcap) implements Teacher {}

    /**
     * Top-k teacher: per labelled row m, ids[m·k + i] and logProbs[m·k + i] (log q at temperature T) of its k most likely
     * tokens, and restLogMass[m] = log(1 − Σ q) of every other token.
     */
    public record SparseTeacher(int k, int[] ids, float[] logProbs, float[] restLogMass) implements Teacher {}

    // =================================================================== the definition, in double precision

    /**
     * The definition above for one position, in double precision: returns jsd (without T²) and, if {@code dz} is non-null,
     * writes ∂jsd/∂z_s into it (z_s are the student logits after any softcap).
     */
    public static double rowLossAndGrad(double[] zs, double[] zt, double beta, double T, double[] dz) {
        int V = zs.length;
        double[] s = logSoftmax(zs, T), t = logSoftmax(zt, T);
        double loss = 0, kl = 0;
        double[] m = new double[V];
        for (int v = 0; v < V; v++) {
            double p = Math.exp(s[v]), q = Math.exp(t[v]);
            if (beta == 0) loss += q * (t[v] - s[v]);
            else if (beta == 1) loss += p * (s[v] - t[v]);
            else {
                m[v] = Math.log((1 - beta) * p + beta * q);
                loss += beta * q * (t[v] - m[v]) + (1 - beta) * p * (s[v] - m[v]);
                kl += p * (s[v] - m[v]);
            }
        }
        if (dz != null) {
            for (int v = 0; v < V; v++) {
                double p = Math.exp(s[v]), q = Math.exp(t[v]);
                double g;
                if (beta == 0) g = p - q;
                else if (beta == 1) g = p * (s[v] - t[v] - loss);
                else g = (1 - beta) * p * ((s[v] - m[v]) - kl);
                dz[v] = g / T;
            }
        }
        return loss;
    }

    static double[] logSoftmax(double[] z, double T) {
        double mx = Double.NEGATIVE_INFINITY;
        for (double v : z) mx = Math.max(mx, v / T);
        double se = 0;
        for (double v : z) se += Math.exp(v / T - mx);
        double lse = mx + Math.log(se);
        double[] out = new double[z.length];
        for (int i = 0; i < z.length; i++) out[i] = z[i] / T - lse;
        return out;
    }

    // =================================================================== chunked, float32

    /**
     * Σ over the labelled rows of jsd (times T² with {@code scaleT2}), logits = softcap(hidden[row]·headᵀ). If {@code dHidden}
     * is non-null, ACCUMULATES gradScale·∂/∂hidden into it; if {@code dHead} [V, H] is non-null, accumulates gradScale·∂/∂head.
     *
     * @param hidden  the student's final-normed hidden states [N, H]
     * @param rows    the labelled rows of {@code hidden}, in the order of the teacher's rows
     * @param teacher the teacher's distribution at those rows
     */
    public static double lossAndGrad(float[] hidden, int H, int[] rows, Matrix head, Double softcap, Teacher teacher,
                                     double beta, double T, boolean scaleT2, float gradScale, float[] dHidden, float[] dHead) {
        if (!(beta >= 0 && beta <= 1)) throw new IllegalArgumentException("beta must be in [0, 1], got " + beta);
        if (!(T > 0)) throw new IllegalArgumentException("temperature must be > 0, got " + T);
        final int M = rows.length;
        if (M == 0) return 0;
        if (head.cols != H) throw new IllegalArgumentException("head has " + head.cols + " columns, hidden " + H);
        final float[] hs = new float[M * H];
        for (int m = 0; m < M; m++) System.arraycopy(hidden, rows[m] * H, hs, m * H, H);
        double t2 = scaleT2 ? T * T : 1.0;
        float scale = (float) (gradScale * t2 / T);
        boolean grads = dHidden != null || dHead != null;
        final float[] dhs = dHidden == null ? null : new float[M * H];
        double sum = switch (teacher) {
            case DenseTeacher d -> dense(hs, M, H, head, softcap, d, beta, T, grads ? scale : 0f, dhs, dHead);
            case SparseTeacher s -> sparse(hs, M, H, head, softcap, s, beta, T, grads ? scale : 0f, dhs, dHead);
        };
        if (dhs != null) {
            for (int m = 0; m < M; m++) {
                int ho = rows[m] * H;
                for (int i = 0; i < H; i++) dHidden[ho + i] += dhs[m * H + i];
            }
        }
        return sum * t2;
    }

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    /** z[lo, lo+n) ← softcap(z)/T in place (cap 0 = none); returns the maximum. */
    static float prep(float[] z, int lo, int n, float cap, float invT) {
        FloatVector mv = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector v = FloatVector.fromArray(F, z, lo + j);
            if (cap != 0f) v = dev.peft4j.tensor.Ops.tanh(v.div(cap)).mul(cap);
            v = v.mul(invT);
            v.intoArray(z, lo + j);
            mv = mv.max(v);
        }
        float mx = mv.reduceLanes(VectorOperators.MAX);
        for (; j < n; j++) {
            float v = z[lo + j];
            if (cap != 0f) v = cap * dev.peft4j.tensor.Ops.tanh(v / cap);
            v *= invT;
            z[lo + j] = v;
            mx = Math.max(mx, v);
        }
        return mx;
    }

    /** Softcap derivative from the prepared value u = softcap(z)/T: 1 − (u·T/cap)². */
    private static FloatVector capGrad(FloatVector u, float cap, float T) {
        FloatVector y = u.mul(T / cap);
        return y.mul(y).neg().add(1f);
    }

    private static final float LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f, SQRTHF = 0.707106781186547524f;

    /**
     * Natural log of positive normal floats with exact IEEE operations only (cephes logf), so that results do not depend on
     * whether the JIT intrinsifies a vector operation (resumed runs must be bit-identical).
     */
    static FloatVector log(FloatVector x) {
        IntVector bits = (IntVector) x.reinterpretAsInts();
        IntVector e = bits.lanewise(VectorOperators.LSHR, 23).and(0xff).sub(126);
        FloatVector m = bits.and(0x807fffff).or(0x3f000000).reinterpretAsFloats();   // [0.5, 1)
        var small = m.compare(VectorOperators.LT, SQRTHF);
        FloatVector ef = (FloatVector) e.convert(VectorOperators.I2F, 0);
        ef = ef.lanewise(VectorOperators.SUB, 1f, small);
        m = m.add(m, small).sub(1f);
        FloatVector z = m.mul(m);
        FloatVector y = m.fma(FloatVector.broadcast(F, 7.0376836292E-2f), FloatVector.broadcast(F, -1.1514610310E-1f));
        y = y.fma(m, FloatVector.broadcast(F, 1.1676998740E-1f));
        y = y.fma(m, FloatVector.broadcast(F, -1.2420140846E-1f));
        y = y.fma(m, FloatVector.broadcast(F, 1.4249322787E-1f));
        y = y.fma(m, FloatVector.broadcast(F, -1.6668057665E-1f));
        y = y.fma(m, FloatVector.broadcast(F, 2.0000714765E-1f));
        y = y.fma(m, FloatVector.broadcast(F, -2.4999993993E-1f));
        y = y.fma(m, FloatVector.broadcast(F, 3.3333331174E-1f));
        y = y.mul(m).mul(z);
        y = y.add(ef.mul(LN2_LO));
        y = y.sub(z.mul(0.5f));
        return m.add(y).add(ef.mul(LN2_HI));
    }

    /** Scalar twin of {@link #log(FloatVector)} (same operations). */
    static float log(float x) {
        int bits = Float.floatToRawIntBits(x);
        float ef = ((bits >>> 23) & 0xff) - 126;
        float m = Float.intBitsToFloat((bits & 0x807fffff) | 0x3f000000);
        if (m < SQRTHF) { ef -= 1f; m = m + m - 1f; } else m = m - 1f;
        float z = m * m;
        float y = Math.fma(m, 7.0376836292E-2f, -1.1514610310E-1f);
        y = Math.fma(y, m, 1.1676998740E-1f);
        y = Math.fma(y, m, -1.2420140846E-1f);
        y = Math.fma(y, m, 1.4249322787E-1f);
        y = Math.fma(y, m, -1.6668057665E-1f);
        y = Math.fma(y, m, 2.0000714765E-1f);
        y = Math.fma(y, m, -2.4999993993E-1f);
        y = Math.fma(y, m, 3.3333331174E-1f);
        y = y * m * z;
        y = y + ef * LN2_LO;
        y = y - z * 0.5f;
        return m + y + ef * LN2_HI;
    }

    /** Rows [v0, v0+c) of the head as a float32 heap matrix. */
    private static Matrix chunk(Matrix head, int v0, int c, float[] buf) {
        if (v0 == 0 && c == head.rows && head.onHeap()) return head;
        float[] b = buf.length == c * head.cols ? buf : new float[c * head.cols];
        head.rowsToFloat(v0, c, b, 0);
        return Matrix.heap(c, head.cols, b);
    }

    // ------------------------------------------------------------------ dense teacher

    private static double dense(float[] hs, int M, int H, Matrix head, Double softcap, DenseTeacher te, double beta, double T,
                                float scale, float[] dhs, float[] dHead) {
        final int V = head.rows;
        if (te.head().rows != V) {
            throw new IllegalArgumentException("teacher vocabulary " + te.head().rows + " differs from the student's " + V);
        }
        if (te.hidden().length != M * te.H()) throw new IllegalArgumentException("teacher rows do not match the student's labelled rows");
        final int C = Math.max(1, Math.min(V, CrossEntropy.maxChunkFloats / (2 * M)));
        final float[] zs = new float[M * C], zt = new float[M * C];
        final float[] wbuf = new float[C * H], tbuf = new float[C * te.H()];
        final float capS = softcap == null ? 0f : softcap.floatValue(), capT = te.softcap() == null ? 0f : te.softcap().floatValue();
        final float invT = (float) (1.0 / T), fT = (float) T;
        final float b = (float) beta;
        final boolean grads = scale != 0f;
        // pass 1: log-sum-exp of both
        final float[] mS = new float[M], mT = new float[M];
        final double[] sS = new double[M], sT = new double[M];
        java.util.Arrays.fill(mS, Float.NEGATIVE_INFINITY);
        java.util.Arrays.fill(mT, Float.NEGATIVE_INFINITY);
        for (int v0 = 0; v0 < V; v0 += C) {
            final int c = Math.min(C, V - v0);
            MatMul.xWt(hs, 0, M, chunk(head, v0, c, wbuf), zs, 0, false);
            MatMul.xWt(te.hidden(), 0, M, chunk(te.head(), v0, c, tbuf), zt, 0, false);
            Parallel.forRange(M, 8, (a, e) -> {
                for (int m = a; m < e; m++) {
                    int lo = m * c;
                    float cm = prep(zs, lo, c, capS, invT), nm = Math.max(mS[m], cm);
                    sS[m] = sS[m] * Math.exp(mS[m] - nm) + CrossEntropy.expSum(zs, lo, c, nm, null, 0f);
                    mS[m] = nm;
                    cm = prep(zt, lo, c, capT, invT);
                    nm = Math.max(mT[m], cm);
                    sT[m] = sT[m] * Math.exp(mT[m] - nm) + CrossEntropy.expSum(zt, lo, c, nm, null, 0f);
                    mT[m] = nm;
                }
            });
        }
        final float[] lseS = new float[M], lseT = new float[M];
        for (int m = 0; m < M; m++) {
            lseS[m] = (float) (mS[m] + Math.log(sS[m]));
            lseT[m] = (float) (mT[m] + Math.log(sT[m]));
        }
        // β > 0 and only d(hidden) wanted: one more pass suffices. d(hidden) = Σ_j p_j a_j W_j − K·Σ_j p_j W_j, both sums
        // accumulated in the pass that also finds the row constant K (as the fused cross-entropy does with its normalizer)
        final double[] loss = new double[M], kl = new double[M];
        if (grads && dHead == null && beta != 0) {
            final float[] dA = new float[M * H], dP = new float[M * H];
            for (int v0 = 0; v0 < V; v0 += C) {
                final int c = Math.min(C, V - v0);
                Matrix w = chunk(head, v0, c, wbuf);
                MatMul.xWt(hs, 0, M, w, zs, 0, false);
                MatMul.xWt(te.hidden(), 0, M, chunk(te.head(), v0, c, tbuf), zt, 0, false);
                Parallel.forRange(M, 8, (a, e) -> {
                    for (int m = a; m < e; m++) {
                        int lo = m * c;
                        prep(zs, lo, c, capS, invT);
                        prep(zt, lo, c, capT, invT);
                        double[] r = fusedRow(zs, zt, lo, c, lseS[m], lseT[m], b, scale, capS, fT);
                        loss[m] += r[0];
                        kl[m] += r[1];
                    }
                });
                BackMatMul.dx(zs, M, w, dA);
                BackMatMul.dx(zt, M, w, dP);
            }
            double sum = 0;
            for (int m = 0; m < M; m++) {
                sum += loss[m];
                float k = (float) (beta == 1 ? loss[m] : (1 - beta) * kl[m]);
                for (int i = 0; i < H; i++) dhs[m * H + i] += dA[m * H + i] - k * dP[m * H + i];
            }
            return sum;
        }
        // pass 2 (β > 0, or no gradient wanted): per-row loss and, for the gradient, the row constant
        boolean lossInGradPass = beta == 0 && grads;
        if (!lossInGradPass) {
            for (int v0 = 0; v0 < V; v0 += C) {
                final int c = Math.min(C, V - v0);
                MatMul.xWt(hs, 0, M, chunk(head, v0, c, wbuf), zs, 0, false);
                MatMul.xWt(te.hidden(), 0, M, chunk(te.head(), v0, c, tbuf), zt, 0, false);
                Parallel.forRange(M, 8, (a, e) -> {
                    for (int m = a; m < e; m++) {
                        int lo = m * c;
                        prep(zs, lo, c, capS, invT);
                        prep(zt, lo, c, capT, invT);
                        double[] r = rowStats(zs, zt, lo, c, lseS[m], lseT[m], b);
                        loss[m] += r[0];
                        kl[m] += r[1];
                    }
                });
            }
        }
        if (!grads) {
            double sum = 0;
            for (double l : loss) sum += l;
            return sum;
        }
        // pass 3: dlogits = scale · p_j (g_j − ḡ) · softcap', then d(hidden) and d(head)
        final float[] rowK = new float[M];
        for (int m = 0; m < M; m++) rowK[m] = (float) (beta == 1 ? loss[m] : (1 - beta) * kl[m]);
        final float[] dw = dHead == null ? null : new float[C * H];
        final double[] lossB0 = new double[M];
        for (int v0 = 0; v0 < V; v0 += C) {
            final int c = Math.min(C, V - v0);
            Matrix w = chunk(head, v0, c, wbuf);
            MatMul.xWt(hs, 0, M, w, zs, 0, false);
            MatMul.xWt(te.hidden(), 0, M, chunk(te.head(), v0, c, tbuf), zt, 0, false);
            Parallel.forRange(M, 8, (a, e) -> {
                for (int m = a; m < e; m++) {
                    int lo = m * c;
                    prep(zs, lo, c, capS, invT);
                    prep(zt, lo, c, capT, invT);
                    double l = gradRow(zs, zt, lo, c, lseS[m], lseT[m], b, rowK[m], scale, capS, fT);
                    if (beta == 0) lossB0[m] += l;
                }
            });
            if (dhs != null) BackMatMul.dx(zs, M, w, dhs);
            if (dw != null) {
                java.util.Arrays.fill(dw, 0, c * H, 0f);
                BackMatMul.dW(zs, hs, M, c, H, dw);
                for (int i = 0; i < c * H; i++) dHead[v0 * H + i] += dw[i];
            }
        }
        double sum = 0;
        for (int m = 0; m < M; m++) sum += lossInGradPass ? lossB0[m] : loss[m];
        return sum;
    }

    /** [loss part, KL(p‖M) part] of one row over one chunk of prepared logits. */
    private static double[] rowStats(float[] us, float[] ut, int lo, int n, float lseS, float lseT, float b) {
        FloatVector accL = FloatVector.zero(F), accK = FloatVector.zero(F);
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector s = FloatVector.fromArray(F, us, lo + j).sub(lseS);
            FloatVector t = FloatVector.fromArray(F, ut, lo + j).sub(lseT);
            FloatVector p = dev.peft4j.tensor.Ops.exp(s), q = dev.peft4j.tensor.Ops.exp(t);
            if (b == 0f) accL = accL.add(q.mul(t.sub(s)));
            else if (b == 1f) accL = accL.add(p.mul(s.sub(t)));
            else {
                FloatVector mix = p.mul(1f - b).add(q.mul(b)).max(Float.MIN_NORMAL);
                FloatVector lm = log(mix);
                FloatVector ks = p.mul(s.sub(lm));
                accL = accL.add(q.mul(t.sub(lm)).mul(b).add(ks.mul(1f - b)));
                accK = accK.add(ks);
            }
        }
        double l = dev.peft4j.tensor.Ops.hsum(accL), k = dev.peft4j.tensor.Ops.hsum(accK);
        for (; j < n; j++) {
            float s = us[lo + j] - lseS, t = ut[lo + j] - lseT;
            float p = dev.peft4j.tensor.Ops.exp(s), q = dev.peft4j.tensor.Ops.exp(t);
            if (b == 0f) l += q * (t - s);
            else if (b == 1f) l += p * (s - t);
            else {
                float lm = log(Math.max(Float.MIN_NORMAL, p * (1f - b) + q * b));
                float ks = p * (s - lm);
                l += b * (q * (t - lm)) + (1f - b) * ks;
                k += ks;
            }
        }
        return new double[]{l, k};
    }

    /**
     * One row of the fused pass: returns [loss part, KL(p‖M) part] and overwrites us with scale·p·a·softcap' (a = (1 − β)(s − m),
     * or s − t for β = 1) and ut with scale·p·softcap'.
     */
    private static double[] fusedRow(float[] us, float[] ut, int lo, int n, float lseS, float lseT, float b, float scale, float cap, float T) {
        FloatVector accL = FloatVector.zero(F), accK = FloatVector.zero(F);
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector u = FloatVector.fromArray(F, us, lo + j);
            FloatVector s = u.sub(lseS);
            FloatVector t = FloatVector.fromArray(F, ut, lo + j).sub(lseT);
            FloatVector p = dev.peft4j.tensor.Ops.exp(s), q = dev.peft4j.tensor.Ops.exp(t);
            FloatVector a;
            if (b == 1f) {
                a = s.sub(t);
                accL = accL.add(p.mul(a));
            } else {
                FloatVector lm = log(p.mul(1f - b).add(q.mul(b)).max(Float.MIN_NORMAL));
                FloatVector ks = p.mul(s.sub(lm));
                accL = accL.add(q.mul(t.sub(lm)).mul(b).add(ks.mul(1f - b)));
                accK = accK.add(ks);
                a = s.sub(lm).mul(1f - b);
            }
            FloatVector ps = p.mul(scale);
            if (cap != 0f) ps = ps.mul(capGrad(u, cap, T));
            ps.mul(a).intoArray(us, lo + j);
            ps.intoArray(ut, lo + j);
        }
        double l = dev.peft4j.tensor.Ops.hsum(accL), k = dev.peft4j.tensor.Ops.hsum(accK);
        for (; j < n; j++) {
            float u = us[lo + j], s = u - lseS, t = ut[lo + j] - lseT;
            float p = dev.peft4j.tensor.Ops.exp(s), q = dev.peft4j.tensor.Ops.exp(t);
            float a;
            if (b == 1f) {
                a = s - t;
                l += p * a;
            } else {
                float lm = log(Math.max(Float.MIN_NORMAL, p * (1f - b) + q * b));
                float ks = p * (s - lm);
                l += b * (q * (t - lm)) + (1f - b) * ks;
                k += ks;
                a = (1f - b) * (s - lm);
            }
            float ps = p * scale;
            if (cap != 0f) { float y = u * T / cap; ps *= 1f - y * y; }
            us[lo + j] = ps * a;
            ut[lo + j] = ps;
        }
        return new double[]{l, k};
    }

    /**
     * Overwrites us[lo, lo+n) with the logit gradient of one row (scale · p (g − ḡ) · softcap'); returns the row's loss part
     * for β = 0 (else 0).
     */
    private static double gradRow(float[] us, float[] ut, int lo, int n, float lseS, float lseT, float b, float rowK, float scale,
                                  float cap, float T) {
        FloatVector accL = FloatVector.zero(F);
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector u = FloatVector.fromArray(F, us, lo + j);
            FloatVector s = u.sub(lseS);
            FloatVector t = FloatVector.fromArray(F, ut, lo + j).sub(lseT);
            FloatVector p = dev.peft4j.tensor.Ops.exp(s), q = dev.peft4j.tensor.Ops.exp(t);
            FloatVector g;
            if (b == 0f) {
                g = p.sub(q);
                accL = accL.add(q.mul(t.sub(s)));
            } else if (b == 1f) {
                g = p.mul(s.sub(t).sub(rowK));
            } else {
                FloatVector lm = log(p.mul(1f - b).add(q.mul(b)).max(Float.MIN_NORMAL));
                g = p.mul(s.sub(lm).mul(1f - b).sub(rowK));
            }
            g = g.mul(scale);
            if (cap != 0f) g = g.mul(capGrad(u, cap, T));
            g.intoArray(us, lo + j);
        }
        double l = dev.peft4j.tensor.Ops.hsum(accL);
        for (; j < n; j++) {
            float u = us[lo + j], s = u - lseS, t = ut[lo + j] - lseT;
            float p = dev.peft4j.tensor.Ops.exp(s), q = dev.peft4j.tensor.Ops.exp(t);
            float g;
            if (b == 0f) {
                g = p - q;
                l += q * (t - s);
            } else if (b == 1f) {
                g = p * (s - t - rowK);
            } else {
                float lm = log(Math.max(Float.MIN_NORMAL, p * (1f - b) + q * b));
                g = p * ((1f - b) * (s - lm) - rowK);
            }
            g *= scale;
            if (cap != 0f) { float y = u * T / cap; g *= 1f - y * y; }
            us[lo + j] = g;
        }
        return l;
    }

    // ------------------------------------------------------------------ top-k teacher

    private static double sparse(float[] hs, int M, int H, Matrix head, Double softcap, SparseTeacher te, double beta, double T,
                                 float scale, float[] dhs, float[] dHead) {
        final int V = head.rows, k = te.k();
        if (te.restLogMass().length != M) throw new IllegalArgumentException("teacher rows do not match the student's labelled rows");
        final int C = Math.max(1, Math.min(V, CrossEntropy.maxChunkFloats / M));
        final float[] zs = new float[M * C], wbuf = new float[C * H];
        final float cap = softcap == null ? 0f : softcap.floatValue(), invT = (float) (1.0 / T), fT = (float) T;
        final float[] mS = new float[M];
        final double[] sS = new double[M];
        java.util.Arrays.fill(mS, Float.NEGATIVE_INFINITY);
        for (int v0 = 0; v0 < V; v0 += C) {
            final int c = Math.min(C, V - v0);
            MatMul.xWt(hs, 0, M, chunk(head, v0, c, wbuf), zs, 0, false);
            Parallel.forRange(M, 8, (a, e) -> {
                for (int m = a; m < e; m++) {
                    int lo = m * c;
                    float cm = prep(zs, lo, c, cap, invT), nm = Math.max(mS[m], cm);
                    sS[m] = sS[m] * Math.exp(mS[m] - nm) + CrossEntropy.expSum(zs, lo, c, nm, null, 0f);
                    mS[m] = nm;
                }
            });
        }
        // per row: the k+1 category masses, the loss, and the gradient coefficients
        final float[] lse = new float[M];
        final float[] uTop = new float[M * k];        // prepared student logits at the teacher's top-k ids
        final float[] coefTop = new float[M * k];     // extra gradient at the top-k ids: d_c − (G_rest − ḡ)·P_c
        final float[] coefRest = new float[M];        // (G_rest − ḡ): gradient = coefRest · p_j for every token
        double sum = 0;
        float[] w = new float[H];
        for (int m = 0; m < M; m++) {
            lse[m] = (float) (mS[m] + Math.log(sS[m]));
            double pTop = 0, qTop = 0;
            double[] P = new double[k + 1], Q = new double[k + 1];
            for (int i = 0; i < k; i++) {
                int id = te.ids()[m * k + i];
                head.rowsToFloat(id, 1, w, 0);
                float z = dev.peft4j.tensor.Ops.dot(hs, m * H, w, 0, H);
                float[] one = {z};
                prep(one, 0, 1, cap, invT);
                uTop[m * k + i] = one[0];
                P[i] = Math.exp(one[0] - lse[m]);
                Q[i] = Math.exp(te.logProbs()[m * k + i]);
                pTop += P[i];
                qTop += Q[i];
            }
            P[k] = Math.max(REST_FLOOR, 1 - pTop);
            Q[k] = Math.max(REST_FLOOR, Math.exp(te.restLogMass()[m]));
            double[] pg = new double[k + 1];   // P_c · G_c
            double l = 0, gbar = 0;
            for (int c = 0; c <= k; c++) {
                double lp = Math.log(P[c]), lq = Math.log(Q[c]);
                if (beta == 0) {
                    l += Q[c] * (lq - lp);
                    pg[c] = -Q[c];
                } else if (beta == 1) {
                    l += P[c] * (lp - lq);
                } else {
                    double lm = Math.log((1 - beta) * P[c] + beta * Q[c]);
                    l += beta * Q[c] * (lq - lm) + (1 - beta) * P[c] * (lp - lm);
                    pg[c] = (1 - beta) * P[c] * (lp - lm);
                }
            }
            if (beta == 1) for (int c = 0; c <= k; c++) pg[c] = P[c] * (Math.log(P[c]) - Math.log(Q[c]) + 1);
            for (int c = 0; c <= k; c++) gbar += pg[c];
            sum += l;
            double gRest = pg[k] / P[k];
            coefRest[m] = (float) (gRest - gbar);
            for (int i = 0; i < k; i++) coefTop[m * k + i] = (float) ((pg[i] - P[i] * gbar) - (gRest - gbar) * P[i]);
        }
        if (scale == 0f) return sum;
        final float[] dw = dHead == null ? null : new float[C * H];
        for (int v0 = 0; v0 < V; v0 += C) {
            final int c = Math.min(C, V - v0), base = v0;
            Matrix wc = chunk(head, v0, c, wbuf);
            MatMul.xWt(hs, 0, M, wc, zs, 0, false);
            Parallel.forRange(M, 8, (a, e) -> {
                for (int m = a; m < e; m++) {
                    int lo = m * c;
                    prep(zs, lo, c, cap, invT);
                    float coef = coefRest[m] * scale;
                    int j = 0;
                    for (; j + L <= c; j += L) {
                        FloatVector u = FloatVector.fromArray(F, zs, lo + j);
                        FloatVector g = dev.peft4j.tensor.Ops.exp(u.sub(lse[m])).mul(coef);
                        if (cap != 0f) g = g.mul(capGrad(u, cap, fT));
                        g.intoArray(zs, lo + j);
                    }
                    for (; j < c; j++) {
                        float u = zs[lo + j];
                        float g = dev.peft4j.tensor.Ops.exp(u - lse[m]) * coef;
                        if (cap != 0f) { float y = u * fT / cap; g *= 1f - y * y; }
                        zs[lo + j] = g;
                    }
                    for (int i = 0; i < k; i++) {
                        int id = te.ids()[m * k + i] - base;
                        if (id < 0 || id >= c) continue;
                        float g = coefTop[m * k + i] * scale;
                        if (cap != 0f) { float y = uTop[m * k + i] * fT / cap; g *= 1f - y * y; }
                        zs[lo + id] += g;
                    }
                }
            });
            if (dhs != null) BackMatMul.dx(zs, M, wc, dhs);
            if (dw != null) {
                java.util.Arrays.fill(dw, 0, c * H, 0f);
                BackMatMul.dW(zs, hs, M, c, H, dw);
                for (int i = 0; i < c * H; i++) dHead[v0 * H + i] += dw[i];
            }
        }
        return sum;
    }

    // ------------------------------------------------------------------ top-k of a dense teacher

    /**
     * The teacher's top-k log-probabilities at temperature T for each of its M rows (chunked, one pass), and the log of the
     * remaining mass (1 − Σ top-k, in double, floored at {@link #REST_FLOOR}). Ties are broken by the smaller token id.
     */
    public static SparseTeacher topK(DenseTeacher te, int M, int k, double T) {
        final int V = te.head().rows, H = te.H();
        if (k < 1 || k > V) throw new IllegalArgumentException("top-k must be in [1, " + V + "], got " + k);
        final int C = Math.max(1, Math.min(V, CrossEntropy.maxChunkFloats / Math.max(1, M)));
        final float[] z = new float[M * C], buf = new float[C * H];
        final float cap = te.softcap() == null ? 0f : te.softcap().floatValue(), invT = (float) (1.0 / T);
        final float[] mx = new float[M];
        final double[] se = new double[M];
        java.util.Arrays.fill(mx, Float.NEGATIVE_INFINITY);
        final float[] topV = new float[M * k];
        final int[] topI = new int[M * k];
        final int[] filled = new int[M];
        java.util.Arrays.fill(topV, Float.NEGATIVE_INFINITY);
        for (int v0 = 0; v0 < V; v0 += C) {
            final int c = Math.min(C, V - v0), base = v0;
            MatMul.xWt(te.hidden(), 0, M, chunk(te.head(), v0, c, buf), z, 0, false);
            Parallel.forRange(M, 8, (a, e) -> {
                for (int m = a; m < e; m++) {
                    int lo = m * c;
                    float cm = prep(z, lo, c, cap, invT), nm = Math.max(mx[m], cm);
                    se[m] = se[m] * Math.exp(mx[m] - nm) + CrossEntropy.expSum(z, lo, c, nm, null, 0f);
                    mx[m] = nm;
                    // a min-heap of size k per row (root = smallest kept value; among equal values, the larger id)
                    int o = m * k;
                    for (int j = 0; j < c; j++) {
                        float v = z[lo + j];
                        if (filled[m] < k) {
                            int i = filled[m]++;
                            topV[o + i] = v;
                            topI[o + i] = base + j;
                            siftUp(topV, topI, o, i);
                        } else if (v > topV[o]) {
                            topV[o] = v;
                            topI[o] = base + j;
                            siftDown(topV, topI, o, k);
                        }
                    }
                }
            });
        }
        final int[] ids = new int[M * k];
        final float[] lp = new float[M * k], rest = new float[M];
        for (int m = 0; m < M; m++) {
            double lse = mx[m] + Math.log(se[m]);
            Integer[] ord = new Integer[k];
            for (int i = 0; i < k; i++) ord[i] = i;
            final int o = m * k;
            java.util.Arrays.sort(ord, (x, y) -> topV[o + x] != topV[o + y] ? Float.compare(topV[o + y], topV[o + x]) : Integer.compare(topI[o + x], topI[o + y]));
            double q = 0;
            for (int i = 0; i < k; i++) {
                ids[o + i] = topI[o + ord[i]];
                lp[o + i] = (float) (topV[o + ord[i]] - lse);
                q += Math.exp(lp[o + i]);
            }
            rest[m] = (float) Math.log(Math.max(REST_FLOOR, 1 - q));
        }
        return new SparseTeacher(k, ids, lp, rest);
    }

    private static boolean less(float[] v, int[] id, int a, int b) {
        return v[a] < v[b] || (v[a] == v[b] && id[a] > id[b]);
    }

    private static void swap(float[] v, int[] id, int a, int b) {
        float t = v[a]; v[a] = v[b]; v[b] = t;
        int u = id[a]; id[a] = id[b]; id[b] = u;
    }

    private static void siftUp(float[] v, int[] id, int o, int i) {
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!less(v, id, o + i, o + p)) return;
            swap(v, id, o + i, o + p);
            i = p;
        }
    }

    private static void siftDown(float[] v, int[] id, int o, int n) {
        int i = 0;
        while (true) {
            int l = 2 * i + 1, r = l + 1, s = i;
            if (l < n && less(v, id, o + l, o + s)) s = l;
            if (r < n && less(v, id, o + r, o + s)) s = r;
            if (s == i) return;
            swap(v, id, o + i, o + s);
            i = s;
        }
    }
}
