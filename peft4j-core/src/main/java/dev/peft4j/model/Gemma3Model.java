package dev.peft4j.model;

import dev.peft4j.tensor.MatMul;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.tensor.Ops;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.util.UserException;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;

/**
 * The Gemma 3 text model (Gemma3ForCausalLM): weights plus one forward function over a packed batch. Every sequence has its
 * own {@link KVCache}; the rows of all sequences are stacked for the matrix products, and attention runs per sequence, so
 * padding never changes a result. Compute is float32 whatever the weights' dtype.
 */
public final class Gemma3Model {
    public final Gemma3Config config;
    public final Gemma3Weights weights;
    public final Path dir;
    private final float embedScale;
    private final float attnScale;
    private float[] cosFull = new float[0], sinFull = new float[0], cosSl = new float[0], sinSl = new float[0];
    private int ropeLen;

    public Gemma3Model(Gemma3Config config, Gemma3Weights weights, Path dir) {
        this.config = config;
        this.weights = weights;
        this.dir = dir;
        this.embedScale = (float) Math.sqrt(config.hidden());
        this.attnScale = (float) Math.pow(config.queryPreAttnScalar(), -0.5);
    }

    public static Gemma3Model load(Path dir) {
        return load(dir, Quantization.NONE);
    }

    /** Loads the model, quantizing its weights at load time as {@code quant} says (see {@link Gemma3Weights#quantizeQ8}). */
    public static Gemma3Model load(Path dir, Quantization quant) {
        Gemma3Config c = Gemma3Config.read(dir.resolve("config.json"));
        Gemma3Weights w = Gemma3Weights.load(dir, c);
        if (quant == Quantization.Q8) w.quantizeQ8();
        w.prepare();
        return new Gemma3Model(c, w, dir);
    }

    public float embedScale() { return embedScale; }

    public KVCache newCache() { return new KVCache(config); }

    /**
     * One sequence's new input: optional virtual-token vectors (used as they are), then token ids (scaled embeddings); an
     * optional {@link SeqAdapter} (LoRA / (IA)³ held apart from the model) applies to this sequence's rows only.
     */
    public record Input(KVCache cache, float[] virtual, int[] ids, SeqAdapter adapter) {
        public Input(KVCache cache, float[] virtual, int[] ids) { this(cache, virtual, ids, null); }
        int rows(int hidden) { return (virtual == null ? 0 : virtual.length / hidden) + ids.length; }
    }

    // ------------------------------------------------------------------ RoPE tables

    private synchronized void ensureRope(int len) {
        if (len <= ropeLen) return;
        int n = Math.max(len, Math.min(config.maxPositions(), Math.max(2 * ropeLen, 1024)));
        int half = config.headDim() / 2;
        float[][] full = ropeTable(n, half, config.ropeThetaFull(), config.ropeFactorFull());
        float[][] sl = ropeTable(n, half, config.ropeThetaSliding(), config.ropeFactorSliding());
        cosFull = full[0]; sinFull = full[1]; cosSl = sl[0]; sinSl = sl[1];
        ropeLen = n;
    }

    /** cos/sin [n, half] as transformers computes them in float32: inv_freq = 1/(base^(2i/d)) / factor, angle = pos·inv_freq. */
    static float[][] ropeTable(int n, int half, double theta, double factor) {
        int d = half * 2;
        float[] inv = new float[half];
        for (int i = 0; i < half; i++) {
            float expo = (float) (2 * i) / (float) d;
            float pw = (float) Math.pow(theta, expo);
            inv[i] = (float) (1.0f / pw);
            if (factor != 1.0) inv[i] = (float) (inv[i] / factor);
        }
        float[] cos = new float[n * half], sin = new float[n * half];
        for (int p = 0; p < n; p++) {
            for (int i = 0; i < half; i++) {
                float ang = (float) p * inv[i];
                cos[p * half + i] = (float) Math.cos(ang);
                sin[p * half + i] = (float) Math.sin(ang);
            }
        }
        return new float[][]{cos, sin};
    }

    // ------------------------------------------------------------------ forward

    /**
     * Runs the inputs through the model, appending to each sequence's cache. Returns the final-normed hidden states
     * [rows, H] of all new rows, packed in input order. If {@code tape} is non-null, activations for backward are recorded.
     * A step of at most {@value Workspace#MAX_ROWS} rows without a tape (decoding) runs in the first input's cache's
     * preallocated workspace: the array returned then belongs to that cache and is overwritten by its next such step.
     */
    public float[] forward(List<Input> inputs, Tape tape) {
        return forward(inputs, tape, null);
    }

    /**
     * As {@link #forward(List, Tape)}, where only the rows of input s from {@code keepFrom[s]} on (its own rows, virtual ones
     * included) are needed in the result: the last layer then runs its queries, attention, output projection and MLP for
     * those rows only (keys and values still for every row, so the caches are complete). The kept rows are bitwise the same
     * as without it (attention runs the same blocks, the products are row-invariant); the other rows of the result are
     * left unfinished. Inference only (no tape).
     */
    public float[] forward(List<Input> inputs, Tape tape, int[] keepFrom) {
        if (keepFrom != null && (tape != null || keepFrom.length != inputs.size())) throw new IllegalArgumentException("keepFrom: one start per input, inference only");
        final Gemma3Config c = config;
        final int H = c.hidden(), D = c.headDim(), nH = c.heads(), nKV = c.kvHeads(), I = c.intermediate();
        final int S = inputs.size();
        int[] rowStart = new int[S], rowCount = new int[S], pos0 = new int[S];
        int N = 0;
        int maxPos = 0;
        for (int s = 0; s < S; s++) {
            Input in = inputs.get(s);
            rowStart[s] = N;
            rowCount[s] = in.rows(H);
            pos0[s] = in.cache().length;
            N += rowCount[s];
            maxPos = Math.max(maxPos, pos0[s] + rowCount[s]);
            if (pos0[s] + rowCount[s] > c.maxPositions()) {
                throw new UserException("input: sequence of " + (pos0[s] + rowCount[s]) + " positions is longer than max_position_embeddings " + c.maxPositions());
            }
        }
        ensureRope(maxPos);
        Workspace ws = tape == null ? Workspace.of(inputs.get(0).cache(), c, N) : null;
        int[] pos = ws != null ? ws.pos : new int[N];
        int[] tok = ws != null ? ws.tok : new int[N];
        float[] x = ws != null ? ws.x : new float[N * H];
        for (int s = 0; s < S; s++) {
            Input in = inputs.get(s);
            int r = rowStart[s];
            int nv = in.virtual() == null ? 0 : in.virtual().length / H;
            if (nv > 0) System.arraycopy(in.virtual(), 0, x, r * H, nv * H);
            for (int t = 0; t < rowCount[s]; t++) {
                pos[r + t] = pos0[s] + t;
                tok[r + t] = t < nv ? -1 : in.ids()[t - nv];
            }
            for (int t = nv; t < rowCount[s]; t++) {
                int id = tok[r + t];
                if (id < 0 || id >= c.vocabSize()) {
                    throw new UserException("input: token id " + id + " is outside the vocabulary (0.." + (c.vocabSize() - 1) + ")");
                }
                weights.embed.rowsToFloat(id, 1, x, (r + t) * H);
                for (int i = 0; i < H; i++) x[(r + t) * H + i] *= embedScale;
            }
        }
        if (tape != null) {
            tape.rows = N;
            tape.rowStart = rowStart;
            tape.rowCount = rowCount;
            tape.positions = pos;
            tape.tokenIds = tok;
            tape.embedded = x.clone();
            tape.layers = new Tape.LayerTape[c.layers()];
        }
        final SeqAdapter.Batch perSeq = SeqAdapter.Batch.of(inputs, rowStart, rowCount);
        if (perSeq != null && tape != null) throw new IllegalArgumentException("per-sequence adapters are for inference (no tape)");
        float[] h = ws != null ? ws.h : new float[N * H];
        float[] q = ws != null ? ws.q : new float[N * nH * D], k = ws != null ? ws.k : new float[N * nKV * D];
        float[] v = ws != null ? ws.v : new float[N * nKV * D];
        float[] att = ws != null ? ws.att : new float[N * nH * D];
        float[] o = ws != null ? ws.o : new float[N * H];
        float[] g = ws != null ? ws.g : new float[N * I], u = ws != null ? ws.u : new float[N * I];
        for (int l = 0; l < c.layers(); l++) {
            Gemma3Weights.Layer w = weights.layers[l];
            if (keepFrom != null && l == c.layers() - 1) {
                lastLayerKept(inputs, l, rowStart, rowCount, pos, keepFrom, x, h, q, k, v, att);
                break;
            }
            Tape.LayerTape lt = null;
            if (tape != null) {
                lt = new Tape.LayerTape();
                tape.layers[l] = lt;
                lt.xIn = l == 0 ? tape.embedded : x.clone();
                lt.rstdIn = new float[N];
                lt.rstdQ = new float[N * nH];
                lt.rstdK = new float[N * nKV];
                lt.rstdPostAttn = new float[N];
                lt.rstdPreFf = new float[N];
                lt.rstdPostFf = new float[N];
            }
            // attention block
            boolean sl = attentionInputs(inputs, l, w, x, h, N, q, k, v, pos, rowStart, rowCount, lt, tape, perSeq);
            attention(inputs, l, rowStart, rowCount, pos, q, att, sl, null);
            if (lt != null && tape.keepAttn) lt.attn = att.clone();
            project(w.o, l, 3, att, N, o, lt, tape, perSeq);
            if (lt != null) lt.oOut = o.clone();
            Ops.rmsNorm(o, 0, o, 0, N, H, w.postAttnNorm, (float) c.rmsEps(), lt == null ? null : lt.rstdPostAttn, 0);
            Ops.addInPlace(x, o, N * H);
            // MLP block
            if (lt != null) lt.xMid = x.clone();
            Ops.rmsNorm(x, 0, h, 0, N, H, w.preFfNorm, (float) c.rmsEps(), lt == null ? null : lt.rstdPreFf, 0);
            if ((perSeq == null || !perSeq.scalesInput(l, 4, 5)) && w.gate.baseThenLora() && w.up.baseThenLora()) {
                MatMul.xWtMany(h, N, new dev.peft4j.tensor.Matrix[]{w.gate.weight, w.up.weight}, new float[][]{g, u});
                addLora(w.gate, l, 4, h, N, g, lt, tape);
                addLora(w.up, l, 5, h, N, u, lt, tape);
                if (perSeq != null) {
                    perSeq.after(w.gate, l, 4, h, N, g);
                    perSeq.after(w.up, l, 5, h, N, u);
                }
            } else {
                project(w.gate, l, 4, h, N, g, lt, tape, perSeq);
                project(w.up, l, 5, h, N, u, lt, tape, perSeq);
            }
            if (lt != null) {
                lt.gate = g.clone();
                lt.up = u.clone();
            }
            final float[] gg = g, uu = u;
            Parallel.forRange(N * I, 16384, (a, b) -> Ops.geluMul(gg, uu, gg, a, b));
            project(w.down, l, 6, g, N, o, lt, tape, perSeq);
            if (lt != null) lt.dOut = o.clone();
            Ops.rmsNorm(o, 0, o, 0, N, H, w.postFfNorm, (float) c.rmsEps(), lt == null ? null : lt.rstdPostFf, 0);
            Ops.addInPlace(x, o, N * H);
        }
        for (int s = 0; s < S; s++) inputs.get(s).cache().length += rowCount[s];
        if (tape != null) {
            tape.finalIn = x.clone();
            tape.finalRstd = new float[N];
        }
        Ops.rmsNorm(x, 0, x, 0, N, H, weights.finalNorm, (float) c.rmsEps(), tape == null ? null : tape.finalRstd, 0);
        if (tape != null) tape.finalOut = x.clone();
        return x;
    }

    /**
     * The attention block's inputs for rows x [N, H] of layer l: the input norm into h, the q/k/v projections (recorded in lt
     * when training), the q/k norms, RoPE, and each sequence's new keys and values appended to its cache. Returns whether
     * the layer is a sliding-window one.
     */
    private boolean attentionInputs(List<Input> inputs, int l, Gemma3Weights.Layer w, float[] x, float[] h, int N, float[] q, float[] k,
                                    float[] v, int[] pos, int[] rowStart, int[] rowCount, Tape.LayerTape lt, Tape tape, SeqAdapter.Batch perSeq) {
        final Gemma3Config c = config;
        final int H = c.hidden(), D = c.headDim(), nH = c.heads(), nKV = c.kvHeads(), S = inputs.size();
        Ops.rmsNorm(x, 0, h, 0, N, H, w.inputNorm, (float) c.rmsEps(), lt == null ? null : lt.rstdIn, 0);
        if ((perSeq == null || !perSeq.scalesInput(l, 0, 1, 2)) && w.q.baseThenLora() && w.k.baseThenLora() && w.v.baseThenLora()) {
            // the three base products in one dispatch, then any LoRA branch added (training LoRA on q/v keeps the fusion),
            // then the sequences' own adapters on their rows (serving several adapters keeps it too)
            MatMul.xWtMany(h, N, new dev.peft4j.tensor.Matrix[]{w.q.weight, w.k.weight, w.v.weight}, new float[][]{q, k, v});
            addLora(w.q, l, 0, h, N, q, lt, tape);
            addLora(w.k, l, 1, h, N, k, lt, tape);
            addLora(w.v, l, 2, h, N, v, lt, tape);
            if (perSeq != null) {
                perSeq.after(w.q, l, 0, h, N, q);
                perSeq.after(w.k, l, 1, h, N, k);
                perSeq.after(w.v, l, 2, h, N, v);
            }
        } else {
            project(w.q, l, 0, h, N, q, lt, tape, perSeq);
            project(w.k, l, 1, h, N, k, lt, tape, perSeq);
            project(w.v, l, 2, h, N, v, lt, tape, perSeq);
        }
        if (lt != null) {
            lt.qPre = q.clone();
            lt.kPre = k.clone();
            lt.v = v.clone();
        }
        Ops.rmsNorm(q, 0, q, 0, N * nH, D, w.qNorm, (float) c.rmsEps(), lt == null ? null : lt.rstdQ, 0);
        Ops.rmsNorm(k, 0, k, 0, N * nKV, D, w.kNorm, (float) c.rmsEps(), lt == null ? null : lt.rstdK, 0);
        boolean sl = c.isSliding(l);
        Ops.rope(q, N, nH, D, pos, sl ? cosSl : cosFull, sl ? sinSl : sinFull);
        Ops.rope(k, N, nKV, D, pos, sl ? cosSl : cosFull, sl ? sinSl : sinFull);
        // the new keys and values into the caches: split over the threads when they are a prefill's megabytes (decoding
        // copies a few KB per layer and allocates nothing here)
        if ((long) N * nKV * D >= 1 << 16) {
            int[] at = new int[S];
            for (int s = 0; s < S; s++) at[s] = inputs.get(s).cache().reserve(l, rowCount[s]);
            Parallel.forChunks(2 * S, 1, (a, b) -> {
                for (int i = a; i < b; i++) {
                    int s = i / 2;
                    KVCache kv = inputs.get(s).cache();
                    System.arraycopy(i % 2 == 0 ? k : v, rowStart[s] * nKV * D, i % 2 == 0 ? kv.k[l] : kv.v[l], at[s] * nKV * D, rowCount[s] * nKV * D);
                }
            });
        } else {
            for (int s = 0; s < S; s++) {
                KVCache kv = inputs.get(s).cache();
                int at = kv.reserve(l, rowCount[s]);
                System.arraycopy(k, rowStart[s] * nKV * D, kv.k[l], at * nKV * D, rowCount[s] * nKV * D);
                System.arraycopy(v, rowStart[s] * nKV * D, kv.v[l], at * nKV * D, rowCount[s] * nKV * D);
            }
        }
        for (int s = 0; s < S; s++) inputs.get(s).cache().count[l] += rowCount[s];
        return sl;
    }

    /** One linear module of layer l (index m in {@link Gemma3Weights.Layer#linears()}), with per-sequence adapters if any. */
    private static void project(Linear lin, int l, int m, float[] x, int n, float[] y, Tape.LayerTape lt, Tape tape, SeqAdapter.Batch perSeq) {
        if (perSeq == null) lin.forward(x, n, y, mid(lt, m, lin, n), dropSeed(tape, l, m));
        else perSeq.forward(lin, l, m, x, n, y);
    }

    /** The LoRA branch of module m of layer l added to its base product y (see {@link Linear#addLora}); nothing without one. */
    private static void addLora(Linear lin, int l, int m, float[] x, int n, float[] y, Tape.LayerTape lt, Tape tape) {
        if (lin.lora == null || lin.merged) return;
        lin.addLora(x, n, y, mid(lt, m, lin, n), dropSeed(tape, l, m));
    }

    private static long dropSeed(Tape tape, int layer, int module) {
        return tape == null || tape.dropoutSeed == 0 ? 0 : Tape.moduleSeed(tape.dropoutSeed, layer, module);
    }

    private static float[] mid(Tape.LayerTape lt, int idx, Linear lin, int n) {
        if (lt == null || lin.midWidth() == 0) return null;
        return lt.adapterMid[idx] = new float[n * lin.midWidth()];
    }

    private static final ThreadLocal<float[][]> SCORES = ThreadLocal.withInitial(() -> new float[][]{new float[0], new float[256]});

    /** Causal (and sliding-window) attention of every new row against its own sequence's cache. */
    private void attention(List<Input> inputs, int l, int[] rowStart, int[] rowCount, int[] pos, float[] q, float[] out, boolean sliding, int[] qFrom) {
        // the path is chosen per sequence (not per batch), so a sequence's result does not depend on what it is batched with
        boolean[] block = new boolean[rowCount.length];
        int manyRows = 0;
        for (int s = 0; s < rowCount.length; s++) if (block[s] = rowCount[s] >= BLOCK_ATTENTION_MIN_ROWS) manyRows++;
        if (manyRows > 0) blockAttention(inputs, l, rowStart, rowCount, pos, q, out, sliding, block, qFrom);
        if (manyRows == rowCount.length) return;
        final int D = config.headDim(), nH = config.heads(), nKV = config.kvHeads();
        final int N = q.length / (nH * D);
        final int[] seqOf = new int[N];
        int nRows = 0;
        for (int s = 0; s < rowStart.length; s++) if (!block[s]) nRows += rowCount[s] - (qFrom == null ? 0 : Math.min(rowCount[s], qFrom[s]));
        final int[] rowOf = new int[nRows];
        for (int s = 0, at = 0; s < rowStart.length; s++) {
            for (int t = 0; t < rowCount[s]; t++) seqOf[rowStart[s] + t] = s;
            if (!block[s]) for (int t = qFrom == null ? 0 : qFrom[s]; t < rowCount[s]; t++) rowOf[at++] = rowStart[s] + t;
        }
        // one work item = a row's heads that share a KV head (their keys and values are read once for all of them). When
        // there are fewer such items than threads (decoding one sequence), each item is split over the threads instead: the
        // scores by keys, the weighted sums of the values by dimensions, so every thread reads its own part of the keys and
        // values (splitting the heads made every thread read all of them). Each score and each output is computed the same
        // way whatever the split (dots are bitwise the same for any number of heads, and every output sums its keys in
        // order), so batch 1 and a batch of sequences give the same results.
        if (nRows * nKV < Parallel.threads()) {
            for (int item = 0; item < nRows * nKV; item++) attendRow(inputs, l, rowOf, seqOf, pos, sliding, q, out, item, true);
            return;
        }
        Parallel.forChunks(nRows * nKV, 1, (a, b) -> {
            for (int item = a; item < b; item++) attendRow(inputs, l, rowOf, seqOf, pos, sliding, q, out, item, false);
        });
    }

    /** Cached keys from which one decoding row's attention is split over the threads (below, one thread does it all). */
    static final int SPLIT_MIN_KEYS = 128;

    /**
     * Work item {@code item} of {@link #attention}: row rowOf[item / nKV]'s heads that share KV head item % nKV, against the
     * keys its position sees. On the calling thread, or with {@code split} (and at least {@link #SPLIT_MIN_KEYS} keys) on
     * all threads: thread t scores keys [nk·t/T, nk·(t+1)/T) for every head, the caller softmaxes each head's scores, then
     * thread t sums the values of dimensions [d0, d1) (boundaries on whole vectors, so each output runs through the same
     * kernel as unsplit). The same operations either way, so the same results.
     */
    private void attendRow(List<Input> inputs, int l, int[] rowOf, int[] seqOf, int[] pos, boolean sliding, float[] q, float[] out, int item, boolean split) {
        final int D = config.headDim(), nH = config.heads(), nKV = config.kvHeads(), m = nH / nKV, kvw = nKV * D;
        int r = rowOf[item / nKV], kvh = item % nKV;
        KVCache kv = inputs.get(seqOf[r]).cache();
        final float[] K = kv.k[l], V = kv.v[l];
        int kStart = kv.start[l], p = pos[r];
        int lo = sliding ? Math.max(kStart, p - config.slidingWindow() + 1) : kStart;
        final int nk = p - lo + 1, ko = ((lo - kStart) * nKV + kvh) * D, qo = (r * nH + kvh * m) * D;
        float[][] hold = SCORES.get();
        if (hold[0].length < m * nk) hold[0] = new float[Math.max(m * nk, 2 * hold[0].length)];
        final float[] sc = hold[0];
        if (!split || nk < SPLIT_MIN_KEYS) {   // a short context: cheaper on one thread than two dispatches
            Ops.scores(m, q, qo, D, K, ko, kvw, D, 0, nk, sc, 0, nk, hold[1]);
            for (int h = 0; h < m; h++) Ops.softmaxScaled(sc, h * nk, nk, attnScale);
            Ops.weightedRows(m, sc, 0, nk, nk, V, ko, kvw, D, out, qo, D);
            return;
        }
        final int T = Parallel.threads(), vecs = Math.max(1, D / Ops.LANES);
        Parallel.forRange(T, 1, (a, b) -> {
            float[] tmp = SCORES.get()[1];
            for (int t = a; t < b; t++) {
                Ops.scores(m, q, qo, D, K, ko, kvw, D, (int) ((long) nk * t / T), (int) ((long) nk * (t + 1) / T), sc, 0, nk, tmp);
            }
        });
        for (int h = 0; h < m; h++) Ops.softmaxScaled(sc, h * nk, nk, attnScale);
        Parallel.forRange(T, 1, (a, b) -> {
            for (int t = a; t < b; t++) {
                int d0 = t == 0 ? 0 : vecs * t / T * Ops.LANES, d1 = t == T - 1 ? D : vecs * (t + 1) / T * Ops.LANES;
                if (d1 > d0) Ops.weightedRows(m, sc, 0, nk, nk, V, ko + d0, kvw, d1 - d0, out, qo + d0, D);
            }
        });
    }

    /** Chunks of at least this many rows per sequence use {@link #blockAttention}; decoding uses the per-row loop. */
    static final int BLOCK_ATTENTION_MIN_ROWS = 16;
    private static final int QBLOCK = 64;

    /**
     * Attention as matrix products, for chunks of many rows (prefill, scoring, training): per sequence, KV head and block of
     * {@value #QBLOCK} query positions, the queries of the head's group are stacked into one matrix, S = Q·Kᵀ over the keys any
     * of them can see, masked (causal, sliding window) and softmaxed row by row, then O = P·V, head by head (queries read and
     * outputs written in place). Both products run on the outer-product kernel, against panels of the keys and of the values
     * laid out once per call: every block reads a window of them (laying them out per block, as before, cost about a third
     * of a prefill's attention). A block's window starts at a multiple of 32 cached keys: keys before its first visible one
     * get probability zero, as masked keys already did, and a chain of FMAs that starts with zero terms is exactly the chain
     * that starts after them (+0 stays +0), so every result is bitwise what the per-block layout gave.
     */
    private void blockAttention(List<Input> inputs, int l, int[] rowStart, int[] rowCount, int[] pos, float[] q, float[] out, boolean sliding, boolean[] only, int[] qFrom) {
        final int D = config.headDim(), nH = config.heads(), nKV = config.kvHeads(), groups = nH / nKV;
        final int W = config.slidingWindow(), S = rowStart.length, dPanels = (D + 31) / 32;
        List<int[]> work = new java.util.ArrayList<>();   // (sequence, kv head, first row of the block)
        // per sequence: its blocks' keys, as cache rows [base, base + keys) (base a multiple of 32, keys padded to one), and
        // where its KV heads' key and value panels start in the shared layout
        int[] base = new int[S], keys = new int[S];
        long[] at = new long[S];
        long bytes = 0;
        for (int s = 0; s < S; s++) {
            if (!only[s]) continue;
            int first = qFrom == null ? 0 : qFrom[s] / QBLOCK * QBLOCK;   // blocks from the one holding the first wanted row (same blocks as for all rows)
            for (int g = 0; g < nKV; g++) for (int t = first; t < rowCount[s]; t += QBLOCK) work.add(new int[]{s, g, t});
            if (first >= rowCount[s]) continue;
            int kStart = inputs.get(s).cache().start[l];
            int lo = sliding ? Math.max(kStart, pos[rowStart[s] + first] - W + 1) : kStart;
            base[s] = (lo - kStart) / 32 * 32;
            keys[s] = (pos[rowStart[s] + rowCount[s] - 1] - kStart - base[s] + 1 + 31) / 32 * 32;
            at[s] = bytes;
            bytes += (long) nKV * keys[s] * 4 * (D + 32 * dPanels);   // per KV head: keys/32 panels of D x 32 floats, then dPanels of keys x 32
        }
        MemorySegment panels = attentionPanels(bytes);
        // the keys as the panels of K [keys, D] (per 32 keys, each dimension's 32 values), the values as those of Vᵀ [D, keys]
        // (per 32 dimensions, each key's 32 values); cache rows past the sequence's last are zeros
        int[] units = new int[S + 1];
        for (int s = 0; s < S; s++) units[s + 1] = units[s] + (keys[s] > 0 ? nKV * (keys[s] / 32 + dPanels) : 0);
        Parallel.forChunks(units[S], 1, (a, b) -> {   // claimed one at a time: a value panel costs more than a key panel
            float[] tmp = grow(BLOCK_BUFFERS.get(), 0, 32 * D);
            for (int u = a; u < b; u++) {
                int s = 0;
                while (units[s + 1] <= u) s++;
                KVCache kv = inputs.get(s).cache();
                int per = keys[s] / 32 + dPanels, g = (u - units[s]) / per, i = (u - units[s]) % per;
                int valid = kv.count[l] - base[s];   // cache rows of this layer written so far (this chunk's included)
                long kOff = at[s] + (long) g * keys[s] * 4 * (D + 32 * dPanels), vOff = kOff + (long) keys[s] * D * 4;
                float[] K = kv.k[l], V = kv.v[l];
                if (i < keys[s] / 32) {   // key panel i
                    for (int j = 0; j < 32; j++) {
                        int row = base[s] + 32 * i + j;
                        if (j < valid - 32 * i) for (int d = 0; d < D; d++) tmp[d * 32 + j] = K[(row * nKV + g) * D + d];
                        else for (int d = 0; d < D; d++) tmp[d * 32 + j] = 0f;
                    }
                    MemorySegment.copy(tmp, 0, panels, LE_FLOAT, kOff + (long) i * D * 32 * 4, D * 32);
                } else {                  // value panel p: dimensions 32p..32p+31 of every key
                    int p = i - keys[s] / 32, w = Math.min(32, D - 32 * p);
                    for (int j0 = 0; j0 < keys[s]; j0 += 32) {
                        java.util.Arrays.fill(tmp, 0, 32 * 32, 0f);
                        for (int j = j0; j < j0 + 32 && j < valid; j++) System.arraycopy(V, ((base[s] + j) * nKV + g) * D + 32 * p, tmp, (j - j0) * 32, w);
                        MemorySegment.copy(tmp, 0, panels, LE_FLOAT, vOff + ((long) p * keys[s] + j0) * 32 * 4, 32 * 32);
                    }
                }
            }
        });
        // the costliest blocks first (a causal block's keys grow with its position), claimed one at a time: a thread that
        // finishes early takes the next block instead of idling while the other works through the long ones
        work.sort((x, y) -> Integer.compare(pos[rowStart[y[0]] + y[2]], pos[rowStart[x[0]] + x[2]]));
        Parallel.forChunks(work.size(), 1, (a, b) -> {
            for (int wi = a; wi < b; wi++) {
                int s = work.get(wi)[0], g = work.get(wi)[1], t0 = work.get(wi)[2];
                int nq = Math.min(QBLOCK, rowCount[s] - t0);
                int r0 = rowStart[s] + t0;
                int kStart = inputs.get(s).cache().start[l];
                int pFirst = pos[r0], pLast = pos[r0 + nq - 1];
                int lo = sliding ? Math.max(kStart, pFirst - W + 1) : kStart;
                int c0 = (lo - kStart) / 32 * 32;   // the block's window of cache rows: [c0, c0 + nk), column j is row c0 + j
                int nk = pLast - kStart - c0 + 1;
                float[] sc = grow(BLOCK_BUFFERS.get(), 1, groups * nq * nk);
                long kOff = at[s] + (long) g * keys[s] * 4 * (D + 32 * dPanels), vOff = kOff + (long) keys[s] * D * 4;
                // per head of the group: its queries read in place (rows nH·D apart), its scores rows h·nq.. of sc, its
                // output written in place
                for (int h = 0; h < groups; h++) {
                    int qo = (r0 * nH + g * groups + h) * D, so = h * nq * nk;
                    MatMul.xWtPanelsSerial(q, qo, nH * D, nq, D, panels, kOff + (long) (c0 - base[s]) * D * 4, (long) D * 32 * 4, nk, sc, so, nk);
                    for (int i = 0; i < nq; i++) {
                        int p = pos[r0 + i];
                        int jlo = (sliding ? Math.max(kStart, p - W + 1) : kStart) - kStart - c0, jhi = p - kStart - c0; // visible keys [jlo, jhi]
                        int ro = so + i * nk;
                        // the visible keys' softmax as the decoding path computes it (vector exp), zeros elsewhere
                        Ops.softmaxScaled(sc, ro + jlo, jhi - jlo + 1, attnScale);
                        java.util.Arrays.fill(sc, ro, ro + jlo, 0f);
                        java.util.Arrays.fill(sc, ro + jhi + 1, ro + nk, 0f);
                    }
                    MatMul.xWtPanelsSerial(sc, so, nk, nq, nk, panels, vOff + (long) (c0 - base[s]) * 32 * 4, (long) keys[s] * 32 * 4, D, out, qo, nH * D);
                }
            }
        });
    }

    private static final java.lang.foreign.ValueLayout.OfFloat LE_FLOAT = java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

    /** The calling thread's native buffer for {@link #blockAttention}'s key and value panels (grown as needed, never shrunk). */
    private static MemorySegment attentionPanels(long bytes) {
        MemorySegment m = ATTENTION_PANELS.get();
        if (m.byteSize() < bytes) {
            m = java.lang.foreign.Arena.ofAuto().allocate(Math.max(bytes, m.byteSize() + m.byteSize() / 2), 64);
            ATTENTION_PANELS.set(m);
        }
        return m;
    }

    private static final ThreadLocal<MemorySegment> ATTENTION_PANELS = ThreadLocal.withInitial(() -> MemorySegment.NULL);

    /**
     * The last layer for the kept rows only (see {@link #forward(List, Tape, int[])}): keys and values of every row go to the
     * caches; attention for the kept rows (whole query blocks on the block path); output projection, norms and MLP for the
     * kept rows gathered into a compact batch (the products are row-invariant), then scattered back into x.
     */
    private void lastLayerKept(List<Input> inputs, int l, int[] rowStart, int[] rowCount, int[] pos, int[] keepFrom,
                               float[] x, float[] h, float[] q, float[] k, float[] v, float[] att) {
        final Gemma3Config c = config;
        final int H = c.hidden(), D = c.headDim(), nH = c.heads(), nKV = c.kvHeads(), I = c.intermediate(), S = inputs.size();
        final float eps = (float) c.rmsEps();
        Gemma3Weights.Layer w = weights.layers[l];
        int N = 0;
        for (int s = 0; s < S; s++) N += rowCount[s];
        SeqAdapter.Batch perSeq = SeqAdapter.Batch.of(inputs, rowStart, rowCount);
        boolean sl = attentionInputs(inputs, l, w, x, h, N, q, k, v, pos, rowStart, rowCount, null, null, perSeq);
        int[] from = new int[S], cStart = new int[S], cCount = new int[S];
        int M = 0;
        for (int s = 0; s < S; s++) {
            from[s] = Math.max(0, Math.min(rowCount[s], keepFrom[s]));
            cStart[s] = M;
            cCount[s] = rowCount[s] - from[s];
            M += cCount[s];
        }
        attention(inputs, l, rowStart, rowCount, pos, q, att, sl, from);
        if (M == 0) return;
        final int A = nH * D;
        float[] ac = new float[M * A], xc = new float[M * H], hc = new float[M * H], oc = new float[M * H];
        for (int s = 0; s < S; s++) {
            System.arraycopy(att, (rowStart[s] + from[s]) * A, ac, cStart[s] * A, cCount[s] * A);
            System.arraycopy(x, (rowStart[s] + from[s]) * H, xc, cStart[s] * H, cCount[s] * H);
        }
        SeqAdapter.Batch perC = perSeq == null ? null : SeqAdapter.Batch.of(inputs, cStart, cCount);
        project(w.o, l, 3, ac, M, oc, null, null, perC);
        Ops.rmsNorm(oc, 0, oc, 0, M, H, w.postAttnNorm, eps, null, 0);
        Ops.addInPlace(xc, oc, M * H);
        Ops.rmsNorm(xc, 0, hc, 0, M, H, w.preFfNorm, eps, null, 0);
        float[] gc = new float[M * I], uc = new float[M * I];
        if ((perC == null || !perC.scalesInput(l, 4, 5)) && w.gate.baseThenLora() && w.up.baseThenLora()) {
            MatMul.xWtMany(hc, M, new Matrix[]{w.gate.weight, w.up.weight}, new float[][]{gc, uc});
            addLora(w.gate, l, 4, hc, M, gc, null, null);
            addLora(w.up, l, 5, hc, M, uc, null, null);
            if (perC != null) {
                perC.after(w.gate, l, 4, hc, M, gc);
                perC.after(w.up, l, 5, hc, M, uc);
            }
        } else {
            project(w.gate, l, 4, hc, M, gc, null, null, perC);
            project(w.up, l, 5, hc, M, uc, null, null, perC);
        }
        Parallel.forRange(M * I, 16384, (a, b) -> Ops.geluMul(gc, uc, gc, a, b));
        project(w.down, l, 6, gc, M, oc, null, null, perC);
        Ops.rmsNorm(oc, 0, oc, 0, M, H, w.postFfNorm, eps, null, 0);
        Ops.addInPlace(xc, oc, M * H);
        for (int s = 0; s < S; s++) System.arraycopy(xc, cStart[s] * H, x, (rowStart[s] + from[s]) * H, cCount[s] * H);
    }

    /** Per-thread scratch and score buffers of {@link #blockAttention} (grown as needed, never shrunk). */
    private static final ThreadLocal<float[][]> BLOCK_BUFFERS = ThreadLocal.withInitial(() -> new float[2][0]);

    private static float[] grow(float[][] buf, int i, int n) {
        if (buf[i].length < n) buf[i] = new float[Math.max(n, buf[i].length + buf[i].length / 2)];
        return buf[i];
    }

    /** Logits [rows.length, V] for the given rows of {@code hidden} (the output of {@link #forward}), softcapped if configured. */
    public float[] logits(float[] hidden, int[] rows) {
        return logits(hidden, rows, new float[rows.length * config.vocabSize()]);
    }

    /**
     * As {@link #logits(float[], int[])}, written to {@code out} (at least rows.length·V floats; returned). Consecutive rows are
     * read in place, without a copy.
     */
    public float[] logits(float[] hidden, int[] rows, float[] out) {
        final int H = config.hidden(), V = config.vocabSize();
        boolean consecutive = true;
        for (int i = 1; i < rows.length && consecutive; i++) consecutive = rows[i] == rows[0] + i;
        if (rows.length > 0 && consecutive) {
            MatMul.xWt(hidden, rows[0] * H, rows.length, weights.lmHead, out, 0, false);
        } else {
            float[] sel = new float[rows.length * H];
            for (int i = 0; i < rows.length; i++) System.arraycopy(hidden, rows[i] * H, sel, i * H, H);
            MatMul.xWt(sel, 0, rows.length, weights.lmHead, out, 0, false);
        }
        softcap(out, rows.length * V);
        return out;
    }

    public void softcap(float[] logits) { softcap(logits, logits.length); }

    /** Final-logit softcapping of the first {@code n} values (if the config has one). */
    public void softcap(float[] logits, int n) {
        if (config.finalLogitSoftcap() == null) return;
        float cap = config.finalLogitSoftcap().floatValue();
        for (int i = 0; i < n; i++) logits[i] = (float) (cap * Math.tanh(logits[i] / cap));
    }

    public Matrix lmHead() { return weights.lmHead; }

    /** RoPE cos table [positions, headDim/2] of full (false) or sliding (true) layers, covering at least {@code len} positions. */
    public float[] ropeCos(boolean sliding, int len) {
        ensureRope(len);
        return sliding ? cosSl : cosFull;
    }

    /** RoPE sin table, see {@link #ropeCos}. */
    public float[] ropeSin(boolean sliding, int len) {
        ensureRope(len);
        return sliding ? sinSl : sinFull;
    }

    public float attnScale() { return attnScale; }
}
