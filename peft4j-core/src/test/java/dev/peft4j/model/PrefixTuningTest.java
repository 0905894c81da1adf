package dev.peft4j.model;

import dev.peft4j.io.SafeTensors;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Prefix tuning at inference (REFERENCE 2.4): a prefix whose keys/values are exactly what the model computes for some real
 * tokens (post k_norm, post RoPE at positions 0..n−1, taken from a cache) must reproduce the logits of running those tokens
 * before the continuation.
 */
class PrefixTuningTest {
    @TempDir
    static Path tmp;
    static Path model;
    static final int[] P = {2, 40, 41, 42, 43}, C = {50, 60, 70, 80, 90, 100, 110, 120};   // continuation longer than the window (6)

    @BeforeAll
    static void makeModel() throws Exception {
        var om = new com.fasterxml.jackson.databind.ObjectMapper();
        var cfg = (com.fasterxml.jackson.databind.node.ObjectNode) om.readTree(PrefixTuningTest.class.getResource("/tiny-gemma3-config.json"));
        cfg.put("initializer_range", 0.15);
        Path cfgFile = tmp.resolve("config.json");
        Files.writeString(cfgFile, cfg.toString());
        model = tmp.resolve("model");
        RandomInit.write(cfgFile, model, 21, false, 0.1);
    }

    static final String CONFIG = """
            {
              "auto_mapping": null,
              "base_model_name_or_path": "tiny",
              "encoder_hidden_size": 64,
              "inference_mode": true,
              "init_weights": null,
              "modules_to_save": null,
              "num_attention_heads": 2,
              "num_layers": 6,
              "num_transformer_submodules": 1,
              "num_virtual_tokens": %d,
              "peft_type": "PREFIX_TUNING",
              "peft_version": "0.17.1",
              "prefix_projection": false,
              "revision": null,
              "task_type": "CAUSAL_LM",
              "token_dim": 64
            }
            """;

    /** prompt_embeddings [n, layers·2·token_dim] in PEFT's layout, from the first n cache rows of every layer. */
    static float[] fromCache(KVCache c, int n) {
        int L = c.layers, w = c.width;
        float[] e = new float[n * L * 2 * w];
        for (int l = 0; l < L; l++) {
            assertEquals(0, c.start[l]);
            for (int t = 0; t < n; t++) {
                System.arraycopy(c.k[l], t * w, e, t * L * 2 * w + 2 * l * w, w);
                System.arraycopy(c.v[l], t * w, e, t * L * 2 * w + (2 * l + 1) * w, w);
            }
        }
        return e;
    }

    static Path adapter(String name, int n, float[] e, long cols) throws Exception {
        Path dir = tmp.resolve(name);
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("adapter_config.json"), CONFIG.formatted(n));
        SafeTensors.write(dir.resolve("adapter_model.safetensors"), Map.of("prompt_embeddings", SafeTensors.Entry.f32(e, n, cols)), Map.of("format", "pt"));
        return dir;
    }

    @Test
    void prefixFromRealTokensReproducesTheirLogits() throws Exception {
        Gemma3Model m = Gemma3Model.load(model);
        KVCache c = m.newCache();
        m.forward(List.of(new Gemma3Model.Input(c, null, P)), null);
        Path dir = adapter("prefix", P.length, fromCache(c, P.length), 6 * 2 * 64);

        int[] all = new int[P.length + C.length];
        System.arraycopy(P, 0, all, 0, P.length);
        System.arraycopy(C, 0, all, P.length, C.length);
        float[] expected = new Gemma3LM(m, null).logits(List.of(all), new int[]{P.length}).get(0);

        Gemma3LM lm = Models.load(model, dir);
        assertEquals(P.length, lm.prefixLength());
        assertEquals(256 - P.length, lm.maxPositions());
        float[] got = lm.logits(List.of(C, new int[]{7}), new int[]{0, 0}).get(0);
        assertEquals(expected.length, got.length);
        double d = 0;
        for (int i = 0; i < got.length; i++) d = Math.max(d, Math.abs(got[i] - expected[i]));
        assertTrue(d < 1e-4, "prefix logits differ by " + d);

        // the generation path (session, token by token) sees the same prefix
        CausalLM.Session s = lm.newSession();
        s.appendAll(new int[]{C[0], C[1]});
        float[] last = s.append(new int[]{C[2]});
        int V = 1024;
        double ds = 0;
        for (int i = 0; i < V; i++) ds = Math.max(ds, Math.abs(last[i] - expected[2 * V + i]));
        assertTrue(ds < 1e-4, "session logits differ by " + ds);

        // a different prefix changes the result (the prefix is really used)
        Gemma3LM base = Models.load(model, null);
        float[] plain = base.logits(List.of(C), new int[]{0}).get(0);
        double dp = 0;
        for (int i = 0; i < plain.length; i++) dp = Math.max(dp, Math.abs(plain[i] - got[i]));
        assertTrue(dp > 1e-3, "prefix has an effect");
    }

    @Test
    void sharedTokenPrefixReuseKeepsThePrefix() throws Exception {
        Gemma3Model m = Gemma3Model.load(model);
        KVCache c = m.newCache();
        m.forward(List.of(new Gemma3Model.Input(c, null, P)), null);
        Path dir = adapter("prefix-reuse", P.length, fromCache(c, P.length), 6 * 2 * 64);
        int[] a = new int[30], b = new int[30];
        for (int i = 0; i < 30; i++) { a[i] = 100 + i; b[i] = i < 25 ? 100 + i : 500 + i; }
        Gemma3LM lm = Models.load(model, dir);
        List<float[]> together = lm.logits(List.of(a, b), new int[]{20, 20});
        Gemma3LM fresh = Models.load(model, dir);
        float[] onlyB = fresh.logits(List.of(b), new int[]{20}).get(0);
        double d = 0;
        for (int i = 0; i < onlyB.length; i++) d = Math.max(d, Math.abs(onlyB[i] - together.get(1)[i]));
        assertTrue(d < 1e-4, "reused shared prefix differs by " + d);
        // and equals running the real tokens P before b
        int[] pb = new int[P.length + b.length];
        System.arraycopy(P, 0, pb, 0, P.length);
        System.arraycopy(b, 0, pb, P.length, b.length);
        float[] ref = new Gemma3LM(Gemma3Model.load(model), null).logits(List.of(pb), new int[]{P.length + 20}).get(0);
        double dr = 0;
        for (int i = 0; i < ref.length; i++) dr = Math.max(dr, Math.abs(ref[i] - together.get(1)[i]));
        assertTrue(dr < 1e-4, "vs real tokens: " + dr);
    }

    @Test
    void wrongPrefixShapeIsRefused() throws Exception {
        Path dir = adapter("prefix-bad", 2, new float[2 * 6 * 64], 6 * 64);
        UserException e = assertThrows(UserException.class, () -> Models.load(model, dir));
        assertTrue(e.getMessage().contains("expected [2, 768]"), e.getMessage());
    }
}
