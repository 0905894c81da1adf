package dev.peft4j.train;

import dev.peft4j.tensor.MatMul;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.util.UserException;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Cross-entropy of the output head over the vocabulary, computed in vocabulary chunks with an online log-sum-exp, only for
 * rows that have a target: no [rows x vocab] logits matrix is ever held. The backward pass recomputes each chunk's logits.
 * Final logit softcapping (c·tanh(z/c)) is applied in both directions when {@code softcap} is non-null.
 */
public final class CrossEntropy {
    public static final int IGNORE = -100;
    /**
     * Most floats one chunk of logits may hold (4 MB): small enough that a chunk's logits and its float32 head rows stay in
     * the last-level cache between the product that makes them and the one that reads them (1.5-2x faster than 64 MB chunks
     * at the 270M's shapes). A chunk's head rows are further capped at 4x this many floats.
     */
    static int maxChunkFloats = 1 << 20;

    private CrossEntropy() {}

    /**
     * Shifted targets of one sequence as transformers' ForCausalLMLoss builds them: row t predicts labels[t+1]; the last row
     * and rows whose next label is −100 have no target (−100).
     */
    public static int[] shiftLabels(int[] labels) {
        int[] t = new int[labels.length];
        for (int i = 0; i < labels.length; i++) t[i] = i + 1 < labels.length ? labels[i + 1] : IGNORE;
        return t;
    }

    /** Number of targets that count (not −100). */
    public static int count(int[] targets) {
        int n = 0;
        for (int t : targets) if (t != IGNORE) n++;
        return n;
    }

    /**
     * Sum over rows with a target of −log softmax(logits[row])[target], logits = softcap(hidden[row]·headᵀ).
     * If {@code dHidden} is non-null, ACCUMULATES gradScale · d(sum)/d(hidden) into it; if {@code dHead} [V, H] is non-null,
     * accumulates gradScale · d(sum)/d(head) into it (the output half of a tied embedding's gradient).
     *
     * @param hidden  [N, H] the final-normed hidden states
     * @param targets [N] target id per row, or −100
     */
    public static double lossAndGrad(float[] hidden, int H, int[] targets, Matrix head, Double softcap,
                                     float gradScale, float[] dHidden, float[] dHead) {
        final int V = head.rows;
        if (head.cols != H) throw new IllegalArgumentException("head has " + head.cols + " columns, hidden " + H);
        int M = 0;
        for (int t : targets) {
            if (t == IGNORE) continue;
            if (t < 0 || t >= V) throw new UserException("labels: token id " + t + " is outside the vocabulary (0.." + (V - 1) + ") and is not -100");
            M++;
        }
        if (M == 0) return 0;
        final int[] rows = new int[M], tgt = new int[M];
        for (int r = 0, m = 0; r < targets.length; r++) if (targets[r] != IGNORE) { rows[m] = r; tgt[m++] = targets[r]; }
        final float[] hs = new float[M * H];
        for (int m = 0; m < M; m++) System.arraycopy(hidden, rows[m] * H, hs, m * H, H);
        int cs = Math.max(1, Math.min(V, Math.min(maxChunkFloats / M, 4 * maxChunkFloats / H)));
        // a mapped head is read in place (MatMul.xWtRange from its packed panels, BackMatMul.dx converting rows as it packs):
        // chunks then start on multiples of 32 outputs
        final boolean direct = !head.onHeap();
        if (direct && cs < V) cs = Math.max(32, cs / 32 * 32);
        final int C = Math.min(V, cs);
        final float[] logits = new float[M * C];
        final float[] wbuf = direct ? null : new float[C * H];
        final float cap = softcap == null ? 0f : softcap.floatValue();
        final float[] mx = new float[M], tl = new float[M];
        final double[] se = new double[M];
        java.util.Arrays.fill(mx, Float.NEGATIVE_INFINITY);
        final int MM = M;
        final boolean fused = dHidden != null && dHead == null;
        // with only d(hidden) wanted, one pass suffices (as in flash attention): d(hidden) = Σ_v softmax_v·z'_v·W_v − z'_t·W_t,
        // accumulated unnormalized with the running maximum and rescaled whenever it grows
        final float[] acc = fused ? new float[M * H] : null;
        final float[] ex = fused ? new float[M * C] : null;
        // pass 1: online log-sum-exp
        for (int v0 = 0; v0 < V; v0 += C) {
            final int c = Math.min(C, V - v0), base = v0;
            Matrix w = direct ? head : chunk(head, v0, c, wbuf);
            int w0 = direct ? v0 : 0;
            if (direct) MatMul.xWtRange(hs, 0, M, head, v0, v0 + c, logits, 0);
            else MatMul.xWt(hs, 0, M, w, logits, 0, false);
            Parallel.forRange(M, 8, (a, b) -> {
                for (int m = a; m < b; m++) {
                    int lo = m * c;
                    float cm = softcapMax(logits, lo, c, cap);
                    float nm = Math.max(mx[m], cm);
                    double rescale = Math.exp(mx[m] - nm);
                    double s = se[m] * rescale + expSum(logits, lo, c, nm, fused ? ex : null, cap);
                    if (fused && rescale != 1.0) {
                        float f = (float) rescale;
                        for (int i = 0; i < H; i++) acc[m * H + i] *= f;
                    }
                    se[m] = s;
                    mx[m] = nm;
                    int t = tgt[m] - base;
                    if (t >= 0 && t < c) tl[m] = logits[lo + t];
                }
            });
            if (fused) BackMatMul.dx(ex, M, w, w0, c, acc);
        }
        final float[] lse = new float[M];
        double loss = 0;
        for (int m = 0; m < M; m++) {
            double l = mx[m] + Math.log(se[m]);
            lse[m] = (float) l;
            loss += l - tl[m];
        }
        if (dHidden == null && dHead == null) return loss;
        if (fused) {
            float[] wt = new float[H];
            for (int m = 0; m < M; m++) {
                head.rowsToFloat(tgt[m], 1, wt, 0);
                float dt = 1f;
                if (cap != 0f) { float y = tl[m] / cap; dt = 1f - y * y; }
                float inv = (float) (1.0 / se[m]);
                int ho = rows[m] * H;
                for (int i = 0; i < H; i++) dHidden[ho + i] += gradScale * (acc[m * H + i] * inv - dt * wt[i]);
            }
            return loss;
        }
        // pass 2: recompute each chunk, dlogits = (softmax - onehot)·gradScale (· softcap derivative)
        final float[] dhs = dHidden == null ? null : new float[M * H];
        final float[] dw = dHead == null ? null : new float[C * H];
        for (int v0 = 0; v0 < V; v0 += C) {
            final int c = Math.min(C, V - v0), base = v0;
            Matrix w = direct ? head : chunk(head, v0, c, wbuf);
            int w0 = direct ? v0 : 0;
            if (direct) MatMul.xWtRange(hs, 0, M, head, v0, v0 + c, logits, 0);
            else MatMul.xWt(hs, 0, M, w, logits, 0, false);
            Parallel.forRange(MM, 8, (a, b) -> {
                for (int m = a; m < b; m++) {
                    int lo = m * c;
                    softmaxGrad(logits, lo, c, lse[m], cap, gradScale);
                    int t = tgt[m] - base;
                    if (t >= 0 && t < c) {
                        float y = cap != 0f ? tl[m] / cap : 0f;
                        logits[lo + t] -= gradScale * (1f - y * y);
                    }
                }
            });
            if (dhs != null) BackMatMul.dx(logits, M, w, w0, c, dhs);
            if (dw != null) {
                java.util.Arrays.fill(dw, 0, c * H, 0f);
                BackMatMul.dW(logits, hs, M, c, H, dw);
                for (int i = 0; i < c * H; i++) dHead[v0 * H + i] += dw[i];
            }
        }
        if (dhs != null) {
            for (int m = 0; m < M; m++) {
                int ho = rows[m] * H;
                for (int i = 0; i < H; i++) dHidden[ho + i] += dhs[m * H + i];
            }
        }
        return loss;
    }

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();

    /** Applies the softcap c·tanh(z/c) in place (if cap != 0) to z[lo, lo+n) and returns the maximum. */
    static float softcapMax(float[] z, int lo, int n, float cap) {
        FloatVector mv = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector v = FloatVector.fromArray(F, z, lo + j);
            if (cap != 0f) {
                v = dev.peft4j.tensor.Ops.tanh(v.div(cap)).mul(cap);
                v.intoArray(z, lo + j);
            }
            mv = mv.max(v);
        }
        float m = mv.reduceLanes(VectorOperators.MAX);
        for (; j < n; j++) {
            if (cap != 0f) z[lo + j] = cap * dev.peft4j.tensor.Ops.tanh(z[lo + j] / cap);
            m = Math.max(m, z[lo + j]);
        }
        return m;
    }

    /** Σ exp(z − max) over z[lo, lo+n) (softcapped values); if ex is non-null it receives exp(z − max)·(1 − (z/cap)²). */
    static double expSum(float[] z, int lo, int n, float max, float[] ex, float cap) {
        FloatVector acc = FloatVector.zero(F);
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector v = FloatVector.fromArray(F, z, lo + j);
            FloatVector e = dev.peft4j.tensor.Ops.exp(v.sub(max));
            acc = acc.add(e);
            if (ex != null) {
                if (cap != 0f) {
                    FloatVector y = v.div(cap);
                    e = e.mul(y.mul(y).neg().add(1f));
                }
                e.intoArray(ex, lo + j);
            }
        }
        double s = dev.peft4j.tensor.Ops.hsum(acc);
        for (; j < n; j++) {
            double e = dev.peft4j.tensor.Ops.exp(z[lo + j] - max);
            s += e;
            if (ex != null) {
                float y = cap != 0f ? z[lo + j] / cap : 0f;
                ex[lo + j] = (float) e * (1f - y * y);
            }
        }
        return s;
    }

    /** z[lo, lo+n) (raw logits) ← softmax(softcap(z))·scale·softcap'(z), given the row's log-sum-exp. */
    static void softmaxGrad(float[] z, int lo, int n, float lse, float cap, float scale) {
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector v = FloatVector.fromArray(F, z, lo + j);
            FloatVector d = FloatVector.broadcast(F, scale);
            if (cap != 0f) {
                FloatVector y = dev.peft4j.tensor.Ops.tanh(v.div(cap));
                v = y.mul(cap);
                d = d.mul(y.mul(y).neg().add(1f));
            }
            dev.peft4j.tensor.Ops.exp(v.sub(lse)).mul(d).intoArray(z, lo + j);
        }
        for (; j < n; j++) {
            float v = z[lo + j], d = scale;
            if (cap != 0f) {
                float y = dev.peft4j.tensor.Ops.tanh(v / cap);
                v = cap * y;
                d *= 1f - y * y;
            }
            z[lo + j] = dev.peft4j.tensor.Ops.exp(v - lse) * d;
        }
    }

    /** Rows [v0, v0+c) of the head as a float32 heap matrix (the whole head itself when it is on the heap and c = V). */
    private static Matrix chunk(Matrix head, int v0, int c, float[] buf) {
        if (v0 == 0 && c == head.rows && head.onHeap()) return head;
        float[] b = buf.length == c * head.cols ? buf : new float[c * head.cols];
        head.rowsToFloat(v0, c, b, 0);
        return Matrix.heap(c, head.cols, b);
    }
}
