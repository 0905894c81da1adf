package dev.peft4j.train;

import dev.peft4j.model.Gemma3Model;
import dev.peft4j.util.UserException;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Knowledge distillation for {@link TrainStep}: the teacher (a second {@link Gemma3Model}, weights memory-mapped, forward only,
 * no tape) and the mixed objective
 * <pre>
 *   loss = kdAlpha · KD(student, teacher) + (1 − kdAlpha) · CE(student, labels)
 * </pre>
 * where KD is {@link KdLoss} (TRL's generalized JSD with β = kdBeta and temperature kdTemperature, times T² with kdScaleT2)
 * and both terms are means over the tokens that have a label (summed over the micro-batches of an optimizer step and divided by
 * their total, as the cross-entropy). KD is computed on the tokens the student predicts from real input tokens; with prompt
 * tuning the teacher sees the sequence without the virtual tokens.
 *
 * <p>With a {@link TeacherCache} the teacher's distribution is ALWAYS its cached top-k plus a rest bucket (computed and stored
 * on a miss, read on a hit), so a run gives the same result whether the cache was warm or cold; see {@link KdLoss} for the
 * exact approximation.
 */
public final class Distillation implements AutoCloseable {
    public final Gemma3Model teacher;
    public final double alpha, beta, temperature;
    public final boolean scaleT2;
    private final TeacherCache cache;
    private final int topK;
    private double kdSum, ceSum;
    private long kdTokens;
    private long cacheHits, cacheMisses;
    private long teacherNanos, kdNanos, ceNanos;

    /**
     * @param cache the top-k cache, or null to run the teacher on every batch (full-vocabulary KD)
     */
    public Distillation(Gemma3Model teacher, Gemma3Model student, double alpha, double beta, double temperature, boolean scaleT2,
                        TeacherCache cache, int topK) {
        if (teacher.config.vocabSize() != student.config.vocabSize()) {
            throw new UserException("--teacher: its vocabulary has " + teacher.config.vocabSize() + " tokens, the student's (--model) "
                    + student.config.vocabSize() + "; teacher and student must share the tokenizer's vocabulary");
        }
        if (!(alpha >= 0 && alpha <= 1)) throw new UserException("--kd-alpha: expected a value in [0, 1], got " + alpha);
        if (!(beta >= 0 && beta <= 1)) throw new UserException("--kd-beta: expected a value in [0, 1], got " + beta);
        if (!(temperature > 0)) throw new UserException("--kd-temperature: expected > 0, got " + temperature);
        this.teacher = teacher;
        this.alpha = alpha;
        this.beta = beta;
        this.temperature = temperature;
        this.scaleT2 = scaleT2;
        this.cache = cache;
        this.topK = topK;
    }

    /** Mean KD and CE terms over the labelled tokens since the last call (NaN when none), then resets them. */
    public double[] takeTerms() {
        double[] r = {kdTokens == 0 ? Double.NaN : kdSum / kdTokens, kdTokens == 0 ? Double.NaN : ceSum / kdTokens};
        kdSum = ceSum = 0;
        kdTokens = 0;
        return r;
    }

    /** Seconds spent so far in the teacher's forward passes, the KD loss + gradient, and the CE loss + gradient. */
    public double[] seconds() { return new double[]{teacherNanos / 1e9, kdNanos / 1e9, ceNanos / 1e9}; }

    public long cacheHits() { return cacheHits; }
    public long cacheMisses() { return cacheMisses; }

    /**
     * Adds the gradients of (1 − α)·CE/denom and α·KD/denom to {@code dHidden} (and {@code dHead}) and returns
     * (1 − α)·Σ CE + α·Σ KD over the labelled rows.
     *
     * @param batch   the examples, in the order of the student's rows
     * @param nv      virtual tokens before each example's rows (prompt tuning), else 0
     * @param hidden  the student's final-normed hidden states
     * @param targets the student's shifted targets (−100 = none)
     */
    double lossAndGrad(Gemma3Model student, List<TrainStep.Example> batch, int nv, float[] hidden, int[] targets, int denom,
                       float[] dHidden, float[] dHead) {
        int H = student.config.hidden();
        double ce = 0;
        long c0 = System.nanoTime();
        if (alpha < 1) {
            ce = CrossEntropy.lossAndGrad(hidden, H, targets, student.lmHead(), student.config.finalLogitSoftcap(),
                    (float) ((1 - alpha) / denom), dHidden, dHead);
        } else {
            ce = CrossEntropy.lossAndGrad(hidden, H, targets, student.lmHead(), student.config.finalLogitSoftcap(), 1f, null, null);
        }
        ceNanos += System.nanoTime() - c0;
        // the labelled rows with a teacher prediction: example i, position t < len (the teacher's row t)
        List<int[]> local = new ArrayList<>();   // per example: its labelled positions t
        List<Integer> rows = new ArrayList<>();
        int start = 0;
        for (TrainStep.Example e : batch) {
            int[] sh = CrossEntropy.shiftLabels(e.labels());
            List<Integer> ts = new ArrayList<>();
            for (int t = 0; t < sh.length; t++) {
                if (sh[t] == CrossEntropy.IGNORE) continue;
                ts.add(t);
                rows.add(start + nv + t);
            }
            local.add(ts.stream().mapToInt(Integer::intValue).toArray());
            start += nv + e.ids().length;
        }
        int[] rowArr = rows.stream().mapToInt(Integer::intValue).toArray();
        double kd = 0;
        if (rowArr.length > 0 && alpha > 0) {
            long t0 = System.nanoTime();
            KdLoss.Teacher te = cache != null ? sparseTeacher(batch, local) : denseTeacher(batch, local, null);
            long t1 = System.nanoTime();
            teacherNanos += t1 - t0;
            kd = KdLoss.lossAndGrad(hidden, H, rowArr, student.lmHead(), student.config.finalLogitSoftcap(), te, beta, temperature,
                    scaleT2, (float) (alpha / denom), dHidden, dHead);
            kdNanos += System.nanoTime() - t1;
        }
        kdSum += kd;
        ceSum += ce;
        kdTokens += rowArr.length;
        return (1 - alpha) * ce + alpha * kd;
    }

    /** The teacher's hidden states at the given positions of the given examples (all of them when {@code only} is null). */
    private KdLoss.DenseTeacher denseTeacher(List<TrainStep.Example> batch, List<int[]> local, boolean[] only) {
        List<Gemma3Model.Input> in = new ArrayList<>();
        for (int i = 0; i < batch.size(); i++) {
            if (only == null || only[i]) in.add(new Gemma3Model.Input(teacher.newCache(), null, batch.get(i).ids()));
        }
        float[] th = teacher.forward(in, null);
        int Ht = teacher.config.hidden();
        int M = 0;
        for (int i = 0; i < batch.size(); i++) if (only == null || only[i]) M += local.get(i).length;
        float[] sel = new float[M * Ht];
        int at = 0, start = 0;
        for (int i = 0; i < batch.size(); i++) {
            if (only != null && !only[i]) continue;
            for (int t : local.get(i)) System.arraycopy(th, (start + t) * Ht, sel, (at++) * Ht, Ht);
            start += batch.get(i).ids().length;
        }
        return new KdLoss.DenseTeacher(sel, Ht, teacher.lmHead(), teacher.config.finalLogitSoftcap());
    }

    /** The cached top-k of every example; the teacher runs once for the examples not cached yet. */
    private KdLoss.SparseTeacher sparseTeacher(List<TrainStep.Example> batch, List<int[]> local) {
        int n = batch.size();
        KdLoss.SparseTeacher[] per = new KdLoss.SparseTeacher[n];
        boolean[] miss = new boolean[n];
        boolean any = false;
        for (int i = 0; i < n; i++) {
            per[i] = cache.get(batch.get(i).ids(), batch.get(i).labels(), local.get(i).length);
            miss[i] = per[i] == null;
            any |= miss[i];
            if (miss[i]) cacheMisses++; else cacheHits++;
        }
        if (any) {
            KdLoss.DenseTeacher d = denseTeacher(batch, local, miss);
            int M = d.hidden().length / d.H();
            KdLoss.SparseTeacher all = KdLoss.topK(d, M, Math.min(topK, teacher.config.vocabSize()), temperature);
            int k = all.k(), at = 0;
            for (int i = 0; i < n; i++) {
                if (!miss[i]) continue;
                int m = local.get(i).length;
                per[i] = new KdLoss.SparseTeacher(k,
                        java.util.Arrays.copyOfRange(all.ids(), at * k, (at + m) * k),
                        java.util.Arrays.copyOfRange(all.logProbs(), at * k, (at + m) * k),
                        java.util.Arrays.copyOfRange(all.restLogMass(), at, at + m));
                cache.put(batch.get(i).ids(), batch.get(i).labels(), per[i]);
                at += m;
            }
        }
        int M = 0, k = per.length == 0 ? topK : per[0].k();
        for (KdLoss.SparseTeacher s : per) M += s.restLogMass().length;
        int[] ids = new int[M * k];
        float[] lp = new float[M * k], rest = new float[M];
        int at = 0;
        for (KdLoss.SparseTeacher s : per) {
            int m = s.restLogMass().length;
            System.arraycopy(s.ids(), 0, ids, at * k, m * k);
            System.arraycopy(s.logProbs(), 0, lp, at * k, m * k);
            System.arraycopy(s.restLogMass(), 0, rest, at, m);
            at += m;
        }
        return new KdLoss.SparseTeacher(k, ids, lp, rest);
    }

    /** Unmaps the teacher's weights. */
    @Override
    public void close() {
        teacher.weights.close();
    }

    /** The teacher's directory (for messages). */
    public Path teacherDir() { return teacher.dir; }
}
