package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.model.RandomInit;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.train.AdamW;
import dev.peft4j.train.LrSchedule;
import dev.peft4j.train.Params;
import dev.peft4j.train.TrainStep;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** (IA)³ (REFERENCE 2.6) on a tiny random Gemma 3: forward = merged weights W ⊙ l, gradients, save/load. No ../shared needed. */
class Ia3Test {
    @TempDir
    static Path tmp;
    static Path model;
    static final List<int[]> SEQS = List.of(new int[]{2, 17, 300, 45, 9, 611, 80, 3, 1000, 12}, new int[]{2, 5, 6, 7});

    @BeforeAll
    static void makeModel() throws Exception {
        // larger weights than the default init so that logits (and gradients) are far from uniform
        ObjectMapper om = new ObjectMapper();
        var cfg = (com.fasterxml.jackson.databind.node.ObjectNode) om.readTree(Ia3Test.class.getResource("/tiny-gemma3-config.json"));
        cfg.put("initializer_range", 0.15);
        Path cfgFile = tmp.resolve("config.json");
        Files.writeString(cfgFile, cfg.toString());
        model = tmp.resolve("model");
        RandomInit.write(cfgFile, model, 3, false, 0.1);
    }

    /** Random vectors around 1 on q,k,v,o,gate,up,down of every layer; down_proj and up_proj are feed-forward (input scaling). */
    static void attachRandom(Gemma3Model m, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        for (Linear l : m.weights.linears()) {
            boolean ff = l.name.endsWith("down_proj") || l.name.endsWith("up_proj");
            float[] v = new float[ff ? l.in() : l.out()];
            for (int i = 0; i < v.length; i++) v[i] = (float) (1 + 0.5 * (r.nextDouble() * 2 - 1));
            l.ia3 = new Linear.Ia3(v, ff);
        }
    }

    static float[] logits(Gemma3Model m) {
        List<float[]> out = new Gemma3LM(m, null).logits(SEQS, new int[]{0, 0});
        float[] a = out.get(0), b = out.get(1), c = new float[a.length + b.length];
        System.arraycopy(a, 0, c, 0, a.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    static double maxDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length);
        double d = 0;
        for (int i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
        return d;
    }

    @Test
    void forwardEqualsMergedWeights() {
        Gemma3Model m = Gemma3Model.load(model);
        float[] base = logits(m);
        attachRandom(m, 1);
        float[] unmerged = logits(m);
        assertTrue(maxDiff(base, unmerged) > 1e-2, "the vectors change the logits");

        // PEFT's merge, written out here: W[o, i] * l[o] (output scaling) or W[o, i] * l[i] (feed-forward)
        Gemma3Model ref = Gemma3Model.load(model);
        for (int k = 0; k < ref.weights.linears().size(); k++) {
            Linear src = m.weights.linears().get(k), dst = ref.weights.linears().get(k);
            float[] w = dst.weight.toFloatArray();
            int in = dst.in();
            for (int o = 0; o < dst.out(); o++) for (int i = 0; i < in; i++) w[o * in + i] *= src.ia3.feedforward ? src.ia3.l[i] : src.ia3.l[o];
            dst.weight = Matrix.heap(dst.out(), in, w);
        }
        double d = maxDiff(unmerged, logits(ref));
        assertTrue(d < 1e-4, "IA3 forward vs merged weights: " + d);

        // Linear.merge / unmerge in place
        for (Linear l : m.weights.linears()) l.merge();
        assertTrue(maxDiff(logits(m), logits(ref)) < 1e-5, "merge() equals W ⊙ l");
        for (Linear l : m.weights.linears()) l.unmerge();
        assertEquals(0.0, maxDiff(logits(m), unmerged), "unmerge restores the base weights exactly");
    }

    static List<TrainStep.Example> batch() {
        return List.of(new TrainStep.Example(SEQS.get(0), SEQS.get(0)), new TrainStep.Example(SEQS.get(1), SEQS.get(1)));
    }

    @Test
    void vectorGradientsMatchFiniteDifferences() {
        Gemma3Model m = Gemma3Model.load(model);
        attachRandom(m, 2);
        Params p = Params.ia3(m);
        assertEquals(6 * 7, p.size());
        TrainStep ts = new TrainStep(m, p, null, AdamW.defaults(0), LrSchedule.of("constant", 1e-3, 0, 1), 0);
        ts.accumulate(batch(), -1, null);
        SplittableRandom r = new SplittableRandom(9);
        double h = 1e-2;
        int checked = 0;
        for (Params.Param q : p) {
            // only some modules (all layers and kinds appear), to keep the test fast
            if ((checked++ % 3) != 0 && !q.name().contains("layers.0.")) continue;
            float[] dir = new float[q.data().length];
            for (int i = 0; i < dir.length; i++) dir[i] = (float) (r.nextDouble() * 2 - 1);
            double analytic = 0;
            for (int i = 0; i < dir.length; i++) analytic += (double) dir[i] * q.grad()[i];
            float[] keep = q.data().clone();
            for (int i = 0; i < dir.length; i++) q.data()[i] = keep[i] + (float) h * dir[i];
            double up = ts.loss(batch());
            for (int i = 0; i < dir.length; i++) q.data()[i] = keep[i] - (float) h * dir[i];
            double dn = ts.loss(batch());
            System.arraycopy(keep, 0, q.data(), 0, keep.length);
            double numeric = (up - dn) / (2 * h);
            double rel = Math.abs(numeric - analytic) / Math.max(Math.abs(numeric), 1e-3);
            assertTrue(rel < 5e-3, q.name() + ": directional derivative " + analytic + " vs finite difference " + numeric);
        }
    }

    /** y of one (IA)³ linear in double: (x·Wᵀ) ⊙ l, or (x ⊙ l)·Wᵀ when feed-forward. */
    static double loss(double[] x, float[] w, double[] l, boolean ff, int n, int in, int out, float[] r) {
        double s = 0;
        for (int t = 0; t < n; t++) for (int o = 0; o < out; o++) {
            double z = 0;
            for (int i = 0; i < in; i++) z += x[t * in + i] * (ff ? l[i] : 1) * w[o * in + i];
            s += (ff ? z : z * l[o]) * r[t * out + o];
        }
        return s;
    }

    static double[] numeric(double[] v, java.util.function.Supplier<Double> f) {
        double[] g = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            double keep = v[i], h = 1e-6;
            v[i] = keep + h;
            double up = f.get();
            v[i] = keep - h;
            double dn = f.get();
            v[i] = keep;
            g[i] = (up - dn) / (2 * h);
        }
        return g;
    }

    static double relErr(double[] num, float[] ana) {
        double a = 0, b = 0;
        for (int i = 0; i < num.length; i++) { a += (num[i] - ana[i]) * (num[i] - ana[i]); b += num[i] * num[i]; }
        assertTrue(b > 0);
        return Math.sqrt(a / b);
    }

    @Test
    void kernelGradientsMatchDoublePrecisionFiniteDifferences() {
        SplittableRandom rnd = new SplittableRandom(5);
        int n = 5, in = 12, out = 7;
        for (boolean ff : new boolean[]{false, true}) {
            float[] x = new float[n * in], w = new float[out * in], r = new float[n * out], l = new float[ff ? in : out];
            for (int i = 0; i < x.length; i++) x[i] = (float) (rnd.nextDouble() * 2 - 1);
            for (int i = 0; i < w.length; i++) w[i] = (float) (rnd.nextDouble() * 2 - 1);
            for (int i = 0; i < r.length; i++) r[i] = (float) (rnd.nextDouble() * 2 - 1);
            for (int i = 0; i < l.length; i++) l[i] = (float) (0.5 + rnd.nextDouble());
            Linear lin = new Linear("m", Matrix.heap(out, in, w));
            lin.ia3 = new Linear.Ia3(l, ff);
            float[] y = new float[n * out], mid = new float[n * lin.midWidth()];
            lin.forward(x, n, y, mid);
            float[] dx = new float[n * in], dl = new float[l.length], dW = new float[out * in];
            dev.peft4j.train.Kernels.ia3Backward(lin, x, r, n, dx, dW, mid, dl);
            double[] xd = new double[x.length], ld = new double[l.length];
            for (int i = 0; i < x.length; i++) xd[i] = x[i];
            for (int i = 0; i < l.length; i++) ld[i] = l[i];
            assertTrue(relErr(numeric(ld, () -> loss(xd, w, ld, ff, n, in, out, r)), dl) < 1e-5, "d l, feedforward " + ff);
            assertTrue(relErr(numeric(xd, () -> loss(xd, w, ld, ff, n, in, out, r)), dx) < 1e-5, "d x, feedforward " + ff);
            // dW with the other factors fixed: dL/dW[o,i] = Σ_t R[t,o]·(l-scaled x)[t,i]
            double[] dWref = new double[out * in];
            for (int t = 0; t < n; t++) for (int o = 0; o < out; o++) for (int i = 0; i < in; i++)
                dWref[o * in + i] += r[t * out + o] * x[t * in + i] * (ff ? l[i] : l[o]);
            assertTrue(relErr(dWref, dW) < 1e-5, "d W, feedforward " + ff);
        }
    }

    @Test
    void savedAdapterReloadsWithSameLogits() throws Exception {
        Gemma3Model m = Gemma3Model.load(model);
        IA3Config cfg = IA3Config.create(Map.of("base_model_name_or_path", "tiny"));   // PEFT defaults: q_proj, v_proj, down_proj (FF)
        List<String> names = m.weights.linears().stream().map(l -> l.name).toList();
        List<IA3Config.Target> targets = cfg.resolve(names);
        assertEquals(6 * 3, targets.size());
        SplittableRandom r = new SplittableRandom(4);
        for (IA3Config.Target t : targets) {
            Linear l = m.weights.linears().get(names.indexOf(t.moduleName()));
            assertEquals(t.moduleName().endsWith("down_proj"), t.feedforward(), t.moduleName());
            float[] v = new float[t.feedforward() ? l.in() : l.out()];
            for (int i = 0; i < v.length; i++) v[i] = (float) (0.5 + r.nextDouble());
            l.ia3 = new Linear.Ia3(v, t.feedforward());
        }
        float[] expected = logits(m);
        Path dir = tmp.resolve("adapter");
        AdapterWriter.ia3(dir, cfg, m);

        JsonNode json = new ObjectMapper().readTree(dir.resolve("adapter_config.json").toFile());
        assertEquals("IA3", json.get("peft_type").asText());
        assertEquals("[\"q_proj\",\"v_proj\",\"down_proj\"]", json.get("target_modules").toString());
        assertEquals("[\"down_proj\"]", json.get("feedforward_modules").toString());
        assertTrue(json.get("inference_mode").asBoolean());
        try (SafeTensors st = SafeTensors.open(dir.resolve("adapter_model.safetensors"))) {
            assertEquals(18, st.tensors().size());
            assertArrayEquals(new long[]{64, 1}, st.get("base_model.model.model.layers.0.self_attn.v_proj.ia3_l").shape());
            assertArrayEquals(new long[]{128, 1}, st.get("base_model.model.model.layers.0.self_attn.q_proj.ia3_l").shape());
            assertArrayEquals(new long[]{1, 128}, st.get("base_model.model.model.layers.5.mlp.down_proj.ia3_l").shape());
        }

        Gemma3Model fresh = Gemma3Model.load(model);
        Adapters.Applied a = Adapters.apply(fresh, dir, false);
        assertEquals(18, a.adaptedModules());
        assertEquals(0.0, maxDiff(expected, logits(fresh)), "reloaded adapter gives the same logits");
        Gemma3Model merged = Gemma3Model.load(model);
        Adapters.apply(merged, dir, true);
        assertTrue(maxDiff(expected, logits(merged)) < 1e-4, "merged on load");
        Gemma3LM viaModels = dev.peft4j.model.Models.load(model, dir);
        assertEquals(0.0, maxDiff(expected, logits(viaModels.model)));
    }

    @Test
    void configResolutionFollowsPeft() {
        List<String> names = List.of("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.mlp.up_proj",
                "model.layers.0.mlp.down_proj", "lm_head");
        // list targets: exact name or suffix on a '.' boundary; feed-forward list: endswith
        var t = IA3Config.create(Map.of("target_modules", List.of("v_proj", "up_proj", "_proj"), "feedforward_modules", List.of("up_proj"))).resolve(names);
        assertEquals(List.of(new IA3Config.Target("model.layers.0.self_attn.v_proj", false), new IA3Config.Target("model.layers.0.mlp.up_proj", true)), t);
        // regex strings: full match
        t = IA3Config.create(Map.of("target_modules", ".*\\.(q_proj|down_proj)", "feedforward_modules", ".*down_proj")).resolve(names);
        assertEquals(List.of(new IA3Config.Target("model.layers.0.self_attn.q_proj", false), new IA3Config.Target("model.layers.0.mlp.down_proj", true)), t);
        // all-linear excludes lm_head; saved as names, and the default feed-forward list becomes the matching names (loadable)
        IA3Config all = IA3Config.create(Map.of("target_modules", "all-linear"));
        assertEquals(4, all.resolve(names).size());
        IA3Config saved = all.withResolvedTargets(names);
        assertEquals(4, saved.targetModules().size());
        assertEquals("[\"model.layers.0.mlp.down_proj\"]", saved.feedforwardModules().toString());
        assertEquals(all.resolve(names), saved.resolve(names));
        // targets without down_proj: PEFT's default feed-forward list would not be a subset; saved as an empty list
        IA3Config qv = IA3Config.create(Map.of("target_modules", List.of("q_proj", "v_proj"))).withResolvedTargets(names);
        assertEquals("[]", qv.feedforwardModules().toString());
        // feedforward_modules must be a subset of target_modules (PEFT's check)
        UserException e = assertThrows(UserException.class,
                () -> IA3Config.create(Map.of("target_modules", List.of("q_proj"), "feedforward_modules", List.of("down_proj"))));
        assertTrue(e.getMessage().contains("feedforward_modules"), e.getMessage());
        // nothing matched
        UserException none = assertThrows(UserException.class, () -> IA3Config.create(Map.of("target_modules", List.of("nope"))).resolve(names));
        assertTrue(none.getMessage().contains("target_modules"), none.getMessage());
    }

    @Test
    void adapterWithWrongShapeIsRefused() throws Exception {
        Gemma3Model m = Gemma3Model.load(model);
        Path dir = tmp.resolve("bad");
        IA3Config.create(Map.of("target_modules", List.of("v_proj"), "feedforward_modules", List.of())).write(dir);
        Map<String, SafeTensors.Entry> e = new java.util.LinkedHashMap<>();
        for (int i = 0; i < 6; i++) e.put(AdapterKeys.ia3("model.layers." + i + ".self_attn.v_proj"), SafeTensors.Entry.f32(new float[64], 1, 64));
        SafeTensors.write(dir.resolve("adapter_model.safetensors"), e, null);
        UserException ex = assertThrows(UserException.class, () -> Adapters.apply(m, dir, false));
        assertTrue(ex.getMessage().contains("[1, 64]") && ex.getMessage().contains("[64, 1]"), ex.getMessage());
    }
}
