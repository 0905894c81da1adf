package dev.peft4j.model;

import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/**
 * A LoRA or (IA)³ adapter held apart from the model, chosen per sequence of a packed forward ({@link Gemma3Model.Input#adapter}):
 * the base weights are shared and never copied; after each base product the rows of the sequences that use this adapter get
 * its branch (LoRA: y += scale·(x·Aᵀ)·Bᵀ over the gathered rows of each adapter, as Punica/S-LoRA do; (IA)³: output rows
 * scaled by l, or for a feed-forward module the input rows scaled before the product). Modules are indexed by layer and
 * position in {@link Gemma3Weights.Layer#linears()} (q, k, v, o, gate, up, down).
 */
public final class SeqAdapter {
    static final int MODULES = 7;
    final Linear.Lora[][] lora;
    final Linear.Ia3[][] ia3;
    private final String name;

    private SeqAdapter(String name, int layers) {
        this.name = name;
        this.lora = new Linear.Lora[layers][MODULES];
        this.ia3 = new Linear.Ia3[layers][MODULES];
    }

    /** An adapter from LoRA factors and (IA)³ vectors keyed by module name (e.g. {@code model.layers.0.self_attn.q_proj}). */
    public static SeqAdapter of(String name, Gemma3Weights w, Map<String, Linear.Lora> lora, Map<String, Linear.Ia3> ia3) {
        SeqAdapter a = new SeqAdapter(name, w.layers.length);
        int found = 0;
        for (int l = 0; l < w.layers.length; l++) {
            Linear[] lin = w.layers[l].linears();
            for (int m = 0; m < MODULES; m++) {
                Linear.Lora lo = lora.get(lin[m].name);
                Linear.Ia3 ia = ia3.get(lin[m].name);
                if (lo != null && ia != null) throw new IllegalArgumentException(lin[m].name + ": LoRA and (IA)³ on the same module");
                a.lora[l][m] = lo == null ? null : lo.frozen();   // off-heap, packed once: served, never trained
                a.ia3[l][m] = ia;
                if (lo != null || ia != null) found++;
            }
        }
        if (found != lora.size() + ia3.size()) throw new IllegalArgumentException(name + ": some adapted modules are not in the model");
        return a;
    }

    @Override
    public String toString() { return "SeqAdapter[" + name + "]"; }

    /** Bytes of the adapter's own tensors. */
    public long bytes() {
        long b = 0;
        for (Linear.Lora[] row : lora) for (Linear.Lora x : row) if (x != null) b += 4L * (x.a.rows * x.a.cols + x.b.rows * x.b.cols);
        for (Linear.Ia3[] row : ia3) for (Linear.Ia3 x : row) if (x != null) b += 4L * x.l.length;
        return b;
    }

    /** The row ranges of one packed forward that use each adapter (null when no sequence has one). */
    static final class Batch {
        private final Map<SeqAdapter, List<int[]>> ranges;   // adapter -> [rowStart, rowCount] of its sequences

        private Batch(Map<SeqAdapter, List<int[]>> ranges) { this.ranges = ranges; }

        static Batch of(List<Gemma3Model.Input> inputs, int[] rowStart, int[] rowCount) {
            Map<SeqAdapter, List<int[]>> m = new IdentityHashMap<>();
            for (int s = 0; s < inputs.size(); s++) {
                SeqAdapter a = inputs.get(s).adapter();
                if (a != null && rowCount[s] > 0) m.computeIfAbsent(a, k -> new ArrayList<>()).add(new int[]{rowStart[s], rowCount[s]});
            }
            return m.isEmpty() ? null : new Batch(m);
        }

        /** y[n, out] = x·Wᵀ of the base (plus any adapter attached to {@code lin} itself), then each sequence's adapter on its rows. */
        void forward(Linear lin, int layer, int m, float[] x, int n, float[] y) {
            int in = lin.in();
            float[] xin = x;
            for (var e : ranges.entrySet()) {             // feed-forward (IA)³: scale the input rows before the shared product
                Linear.Ia3 ia = e.getKey().ia3[layer][m];
                if (ia == null || !ia.feedforward) continue;
                if (xin == x) xin = java.util.Arrays.copyOf(x, n * in);
                for (int[] r : e.getValue())
                    for (int i = r[0]; i < r[0] + r[1]; i++)
                        for (int c = 0; c < in; c++) xin[i * in + c] *= ia.l[c];
            }
            lin.forward(xin, n, y, null, 0L);
            after(lin, layer, m, x, n, y);
        }

        /**
         * Whether some sequence's adapter scales module m's input rows (a feed-forward (IA)³): then the module's base product
         * needs its own input ({@link #forward}); otherwise it may be computed together with other modules' of the same
         * input and the adapters applied after it ({@link #after}).
         */
        boolean scalesInput(int layer, int... modules) {
            for (SeqAdapter a : ranges.keySet())
                for (int m : modules)
                    if (a.ia3[layer][m] != null && a.ia3[layer][m].feedforward) return true;
            return false;
        }

        /**
         * The adapters' part after the base product y = x·Wᵀ (and any adapter of {@code lin} itself) of a module whose input
         * no adapter scales: output (IA)³ scales its sequences' rows of y, LoRA adds scale·(x·Aᵀ)·Bᵀ to them.
         */
        void after(Linear lin, int layer, int m, float[] x, int n, float[] y) {
            int in = lin.in(), out = lin.out();
            for (var e : ranges.entrySet()) {
                SeqAdapter a = e.getKey();
                Linear.Ia3 ia = a.ia3[layer][m];
                if (ia != null && !ia.feedforward) {
                    for (int[] r : e.getValue())
                        for (int i = r[0]; i < r[0] + r[1]; i++)
                            for (int o = 0; o < out; o++) y[i * out + o] *= ia.l[o];
                }
                Linear.Lora lo = a.lora[layer][m];
                if (lo == null) continue;
                List<int[]> rs = e.getValue();
                int rows = 0;
                for (int[] r : rs) rows += r[1];
                float[] xg, yg;
                if (rs.size() == 1) {                       // one sequence: its rows are contiguous, no gather needed
                    int r0 = rs.get(0)[0];
                    xg = java.util.Arrays.copyOfRange(x, r0 * in, (r0 + rows) * in);
                } else {
                    xg = new float[rows * in];
                    int at = 0;
                    for (int[] r : rs) { System.arraycopy(x, r[0] * in, xg, at * in, r[1] * in); at += r[1]; }
                }
                float[] t = new float[rows * lo.r];
                Linear.product(xg, rows, lo.a, t, false);
                if (lo.scale != 1f) for (int i = 0; i < t.length; i++) t[i] *= lo.scale;
                yg = new float[rows * out];
                Linear.product(t, rows, lo.b, yg, false);
                int at = 0;
                for (int[] r : rs) {                        // scatter-add
                    for (int i = 0; i < r[1] * out; i++) y[r[0] * out + i] += yg[at * out + i];
                    at += r[1];
                }
            }
        }
    }
}
