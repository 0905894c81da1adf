package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.Shared;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;

import static org.junit.jupiter.api.Assertions.*;

class LoraTargetsTest {
    static final List<String> PROJ = List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj");

    /** Linear layers of Gemma3ForCausalLM in named_modules() order (gemma-3-270m: 18 layers), plus lm_head. */
    static List<String> gemma(int layers) {
        List<String> n = new ArrayList<>();
        for (int i = 0; i < layers; i++) for (String p : PROJ) n.add("model.layers." + i + "." + p);
        n.add("lm_head");
        return n;
    }

    static final List<String> G = gemma(18);

    static LoraConfig lora(String json) { return (LoraConfig) AdapterConfig.parse("{\"peft_type\": \"LORA\", " + json + "}", "adapter_config.json"); }

    static Set<String> names(List<LoraTarget> t) { return t.stream().map(LoraTarget::moduleName).collect(Collectors.toCollection(TreeSet::new)); }

    static Set<String> expect(int[] layers, String... projs) {
        Set<String> s = new TreeSet<>();
        for (int l : layers) for (String p : projs) s.add("model.layers." + l + "." + p);
        return s;
    }

    static int[] range(int from, int to) { return java.util.stream.IntStream.range(from, to).toArray(); }

    @Test
    void listTargetsMatchBySuffix() {
        List<LoraTarget> t = lora("\"target_modules\": [\"q_proj\", \"v_proj\"]").resolve(G);
        assertEquals(expect(range(0, 18), "self_attn.q_proj", "self_attn.v_proj"), names(t));
        assertEquals(new LoraTarget("model.layers.0.self_attn.q_proj", 8, 8.0, 1.0), t.getFirst());
        // a suffix must sit on a '.' boundary: "proj" alone matches nothing
        assertThrows(UserException.class, () -> lora("\"target_modules\": [\"proj\"]").resolve(G));
        // multi-segment suffix
        assertEquals(expect(range(0, 18), "mlp.down_proj"), names(lora("\"target_modules\": [\"mlp.down_proj\"]").resolve(G)));
    }

    @Test
    void defaultTargetsForGemma3AreQAndV() {
        assertEquals(expect(range(0, 18), "self_attn.q_proj", "self_attn.v_proj"), names(lora("\"r\": 4").resolve(G)));
        assertEquals(List.of("q_proj", "v_proj"), textList(LoraConfig.create(Map.of()).withResolvedTargets(G).toJson().get("target_modules")));
    }

    static List<String> textList(JsonNode arr) {
        List<String> l = new ArrayList<>();
        arr.forEach(e -> l.add(e.textValue()));
        return l;
    }

    @Test
    void allLinearIsEveryProjectionButNotLmHead() {
        LoraConfig c = lora("\"target_modules\": \"all-linear\"");
        List<LoraTarget> t = c.resolve(G);
        assertEquals(126, t.size());   // REFERENCE 2.3: 126 modules for gemma-3-270m
        assertFalse(names(t).contains("lm_head"));
        assertEquals(expect(range(0, 18), PROJ.toArray(String[]::new)), names(t));
        assertEquals(126, lora("\"target_modules\": \"ALL-LINEAR\"").resolve(G).size());
        // what PEFT saves: condensed to the 7 projection names (as in the tiny-lora fixture)
        assertEquals(Set.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
                Set.copyOf(textList(c.withResolvedTargets(G).toJson().get("target_modules"))));
    }

    @Test
    void regexTargetsAreFullMatches() {
        assertEquals(expect(range(0, 18), "self_attn.q_proj", "self_attn.v_proj"),
                names(lora("\"target_modules\": \".*\\\\.(q|v)_proj\"").resolve(G)));
        assertEquals(Set.of("model.layers.1.self_attn.q_proj"),
                names(lora("\"target_modules\": \"model\\\\.layers\\\\.1\\\\.self_attn\\\\.q_proj\"").resolve(G)));
        UserException e = assertThrows(UserException.class, () -> lora("\"target_modules\": \"q_proj\"").resolve(G));
        assertTrue(e.getMessage().startsWith("adapter_config.json: field \"target_modules\" \"q_proj\" matched none of the model's 127 linear layers"),
                e.getMessage());
        // a regex target is saved unchanged
        LoraConfig r = lora("\"target_modules\": \".*_proj\"");
        assertEquals(r, r.withResolvedTargets(G));
    }

    @Test
    void excludeModules() {
        assertEquals(expect(range(1, 18), "self_attn.q_proj"),
                names(lora("\"target_modules\": [\"q_proj\"], \"exclude_modules\": [\"model.layers.0.self_attn.q_proj\"]").resolve(G)));
        assertEquals(expect(range(0, 18), "mlp.down_proj"),
                names(lora("\"target_modules\": [\"q_proj\", \"down_proj\"], \"exclude_modules\": [\"self_attn.q_proj\"]").resolve(G)));
        // regex exclude (full match): layers 1 and 10..17
        assertEquals(expect(new int[] {0, 2, 3, 4, 5, 6, 7, 8, 9}, "self_attn.q_proj"),
                names(lora("\"target_modules\": [\"q_proj\"], \"exclude_modules\": \".*layers\\\\.1\\\\d?\\\\..*\"").resolve(G)));
        // modules_to_save are never targeted
        assertEquals(126, lora("\"target_modules\": \".*\", \"modules_to_save\": [\"lm_head\"]").resolve(G).size());
        assertEquals(127, lora("\"target_modules\": \".*\"").resolve(G).size());
    }

    @Test
    void layersToTransform() {
        assertEquals(expect(new int[] {0, 1}, "self_attn.q_proj", "self_attn.v_proj"),
                names(lora("\"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": [0, 1]").resolve(G)));
        assertEquals(expect(new int[] {3}, "self_attn.q_proj", "self_attn.v_proj"),
                names(lora("\"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": 3").resolve(G)));
        assertEquals(expect(new int[] {5}, "mlp.up_proj"),
                names(lora("\"target_modules\": [\"up_proj\"], \"layers_to_transform\": [5], \"layers_pattern\": \"layers\"").resolve(G)));
        assertEquals(expect(new int[] {5}, "mlp.up_proj"),
                names(lora("\"target_modules\": [\"up_proj\"], \"layers_to_transform\": [5], \"layers_pattern\": [\"h\", \"layers\"]").resolve(G)));
        assertThrows(UserException.class,
                () -> lora("\"target_modules\": [\"up_proj\"], \"layers_to_transform\": [5], \"layers_pattern\": \"h\"").resolve(G));
        // PEFT quirk: an exact full-name target skips the layer filter (only suffix matches are filtered)
        assertEquals(Set.of("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"),
                names(lora("\"target_modules\": [\"model.layers.0.self_attn.q_proj\", \"v_proj\"], \"layers_to_transform\": [1]").resolve(G)));
        // an empty list means "all layers"
        assertEquals(36, lora("\"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": []").resolve(G).size());
    }

    @Test
    void rankAndAlphaPatterns() {
        LoraConfig c = lora("\"r\": 8, \"lora_alpha\": 16, \"target_modules\": \"all-linear\", "
                + "\"rank_pattern\": {\"q_proj\": 16, \"model.layers.2.mlp.down_proj\": 2, \"proj\": 99}, "
                + "\"alpha_pattern\": {\"layers\\\\.1\\\\..*\": 32}");
        Map<String, LoraTarget> t = new HashMap<>();
        c.resolve(G).forEach(x -> t.put(x.moduleName(), x));
        assertEquals(new LoraTarget("model.layers.0.self_attn.q_proj", 16, 16.0, 1.0), t.get("model.layers.0.self_attn.q_proj"));
        assertEquals(new LoraTarget("model.layers.2.mlp.down_proj", 2, 16.0, 8.0), t.get("model.layers.2.mlp.down_proj"));
        assertEquals(new LoraTarget("model.layers.3.mlp.down_proj", 8, 16.0, 2.0), t.get("model.layers.3.mlp.down_proj"));
        // "proj" needs a '.' before it: never matches "..._proj"
        assertEquals(8, t.get("model.layers.0.self_attn.k_proj").r());
        // alpha key "layers\.1\..*" matches layer 1 (not 10..17)
        assertEquals(new LoraTarget("model.layers.1.self_attn.k_proj", 8, 32.0, 4.0), t.get("model.layers.1.self_attn.k_proj"));
        assertEquals(new LoraTarget("model.layers.1.self_attn.q_proj", 16, 32.0, 2.0), t.get("model.layers.1.self_attn.q_proj"));
        assertEquals(16.0, t.get("model.layers.10.self_attn.k_proj").alpha());
        // first matching key in file order wins
        LoraConfig order = lora("\"target_modules\": [\"q_proj\"], \"rank_pattern\": {\"self_attn.q_proj\": 4, \"q_proj\": 16}");
        assertEquals(4, order.resolve(G).getFirst().r());
        LoraConfig order2 = lora("\"target_modules\": [\"q_proj\"], \"rank_pattern\": {\"q_proj\": 16, \"self_attn.q_proj\": 4}");
        assertEquals(16, order2.resolve(G).getFirst().r());
    }

    @Test
    void rsloraScaling() {
        assertEquals(4.0, lora("\"r\": 4, \"lora_alpha\": 16, \"target_modules\": [\"q_proj\"]").resolve(G).getFirst().scaling());
        assertEquals(8.0, lora("\"r\": 4, \"lora_alpha\": 16, \"use_rslora\": true, \"target_modules\": [\"q_proj\"]").resolve(G).getFirst().scaling());
        assertEquals(16 / Math.sqrt(8), lora("\"r\": 8, \"lora_alpha\": 16, \"use_rslora\": true, \"target_modules\": [\"q_proj\"]").resolve(G).getFirst().scaling());
    }

    @Test
    void minimalTargetModules() {
        // PEFT docstring example of _find_minimal_target_modules
        Set<String> targets = new java.util.LinkedHashSet<>();
        for (int i = 0; i < 100; i++) targets.add("model.decoder.layers." + i + ".self_attn.q_proj");
        for (int i = 0; i < 100; i++) targets.add("model.decoder.layers." + i + ".self_attn.v_proj");
        List<String> others = new ArrayList<>();
        for (int i = 0; i < 100; i++) others.add("model.encoder.layers." + i + ".self_attn.k_proj");
        assertEquals(Set.of("q_proj", "v_proj"), LoraTargets.findMinimalTargetModules(targets, others));
    }

    // ---------------------------------------------------------------- against the PEFT fixture

    static Map<String, JsonNode> safetensorsHeader(Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            long n = ByteBuffer.wrap(in.readNBytes(8)).order(ByteOrder.LITTLE_ENDIAN).getLong();
            JsonNode h = new ObjectMapper().readTree(in.readNBytes((int) n));
            Map<String, JsonNode> m = new HashMap<>();
            h.fields().forEachRemaining(e -> { if (!e.getKey().equals("__metadata__")) m.put(e.getKey(), e.getValue()); });
            return m;
        }
    }

    @Test
    void fixtureAdapterKeysAreTheResolvedTargets() throws IOException {
        Path adapterDir = Shared.require("fixtures/tiny-lora");
        Path model = Shared.require("fixtures/tiny-gemma3/model.safetensors");
        Map<String, JsonNode> base = safetensorsHeader(model);
        List<String> linear = new ArrayList<>();
        for (String k : new TreeSet<>(base.keySet())) {
            if (k.endsWith("_proj.weight")) linear.add(k.substring(0, k.length() - ".weight".length()));
        }
        LoraConfig c = (LoraConfig) AdapterConfig.read(adapterDir);
        List<LoraTarget> targets = c.resolve(linear);
        Map<String, JsonNode> adapter = safetensorsHeader(adapterDir.resolve(AdapterConfig.WEIGHTS_NAME));
        assertEquals(2 * targets.size(), adapter.size());
        for (LoraTarget t : targets) {
            assertEquals(2.0, t.scaling());   // fixtures README: scale alpha/r = 2
            JsonNode w = base.get(t.moduleName() + ".weight").get("shape");   // [out, in]
            JsonNode a = adapter.get(AdapterKeys.loraA(t.moduleName()));
            JsonNode b = adapter.get(AdapterKeys.loraB(t.moduleName()));
            assertNotNull(a, t.moduleName());
            assertEquals(List.of(t.r(), w.get(1).intValue()), List.of(a.get("shape").get(0).intValue(), a.get("shape").get(1).intValue()));
            assertEquals(List.of(w.get(0).intValue(), t.r()), List.of(b.get("shape").get(0).intValue(), b.get("shape").get(1).intValue()));
        }
        Set<String> modules = new TreeSet<>();
        for (String k : adapter.keySet()) modules.add(AdapterKeys.loraModule(k));
        assertEquals(names(targets), modules);
    }
}
