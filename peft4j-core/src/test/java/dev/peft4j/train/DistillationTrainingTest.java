package dev.peft4j.train;

import dev.peft4j.Shared;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.data.QuickstartAssets;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.RandomInit;
import dev.peft4j.util.MetricsWriter;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/** {@code --method distill} end to end on tiny random models: a wider, shallower teacher, the three students, resume, cache. */
class DistillationTrainingTest {
    @TempDir
    static Path tmp;
    static Path student, teacher, otherVocab;
    static final ObjectMapper JSON = new ObjectMapper();

    @BeforeAll
    static void setUp() throws Exception {
        TrainerTest.tmp = tmp;
        TrainerTest.setUp();
        student = TrainerTest.model;
        Path cfg = Shared.resource("tiny-gemma3-config.json");
        teacher = tmp.resolve("teacher");
        RandomInit.write(variant(cfg, "teacher.json", 96, 1024), teacher, 77, false, 0.1);
        otherVocab = tmp.resolve("teacher-1000");
        RandomInit.write(variant(cfg, "teacher-1000.json", 64, 1000), otherVocab, 78, false, 0.1);
    }

    static Path variant(Path cfg, String name, int hidden, int vocab) throws Exception {
        ObjectNode c = (ObjectNode) JSON.readTree(cfg.toFile());
        c.put("hidden_size", hidden);
        c.put("vocab_size", vocab);
        Path f = tmp.resolve(name);
        Files.writeString(f, c.toString());
        return f;
    }

    static TrainConfig distill(Path out, String studentKind, boolean resume, int steps, Path teacherDir, Path cache) {
        TrainConfig c = TrainerTest.opts(out, studentKind, resume, steps);
        c.method = "distill";
        c.student = studentKind;
        c.teacher = teacherDir;
        c.kdAlpha = 0.7;
        c.kdBeta = 0.5;
        c.kdTemperature = 2.0;
        c.teacherCache = cache;
        c.teacherTopK = 16;
        c.feedforwardModules = null;
        c.targetModules = List.of("q_proj", "v_proj");
        c.lr = studentKind.equals("full") ? 1e-3 : c.lr;
        return c;
    }

    static String resultFile(String kind) {
        return kind.equals("full") ? "model.safetensors" : "adapter_model.safetensors";
    }

    @Test
    void killedAndResumedDistillationEqualsUninterruptedRun() throws Exception {
        for (String kind : new String[]{"full", "lora", "prompt-tuning"}) {
            for (boolean cached : new boolean[]{false, true}) {
                if (cached && !kind.equals("lora")) continue;
                String tag = kind + (cached ? "-cache" : "");
                Path a = tmp.resolve("d-full-" + tag), b = tmp.resolve("d-killed-" + tag);
                Path cacheA = cached ? tmp.resolve("cache-a") : null, cacheB = cached ? tmp.resolve("cache-b") : null;
                new Trainer(distill(a, kind, false, 5, teacher, cacheA), TrainerTest.dataArgs(), TrainerTest.quiet()).run();
                assertThrows(IllegalStateException.class, () -> new Trainer(distill(b, kind, false, 5, teacher, cacheB), TrainerTest.dataArgs(), TrainerTest.quiet())
                        .onStep(s -> { if (s == 3) throw new IllegalStateException("killed at step 3"); }).run());
                new Trainer(distill(b, kind, true, 5, teacher, cacheB), TrainerTest.dataArgs(), TrainerTest.quiet()).run();
                try (SafeTensors sa = SafeTensors.open(a.resolve(resultFile(kind)));
                     SafeTensors sb = SafeTensors.open(b.resolve(resultFile(kind)))) {
                    assertEquals(sa.tensors().keySet(), sb.tensors().keySet());
                    for (String k : sa.tensors().keySet()) assertArrayEquals(sa.get(k).toFloats(), sb.get(k).toFloats(), 0f, tag + " " + k);
                }
                var ma = MetricsWriter.read(a.resolve("metrics.jsonl"));
                var mb = MetricsWriter.read(b.resolve("metrics.jsonl"));
                assertEquals(5, ma.size());
                assertEquals(5, mb.size());
                for (int i = 0; i < 5; i++) {
                    assertEquals(ma.get(i).get("loss").asDouble(), mb.get(i).get("loss").asDouble(), 0.0, tag + " loss at step " + (i + 1));
                    double kd = ma.get(i).get("kd_loss").asDouble(), ce = ma.get(i).get("ce_loss").asDouble();
                    assertTrue(kd > 0 && ce > 0, tag + ": both terms reported");
                    assertEquals(0.7 * kd + 0.3 * ce, ma.get(i).get("loss").asDouble(), 1e-9 * ma.get(i).get("loss").asDouble(), tag + ": loss = a KD + (1-a) CE");
                }
                JsonNode args = JSON.readTree(a.resolve("training_args.json").toFile());
                assertEquals("distill", args.get("method").asText());
                assertEquals(kind, args.get("student").asText());
                assertEquals(teacher.toString(), args.get("teacher").asText());
                assertEquals(0.7, args.get("kd_alpha").asDouble());
                assertEquals(0.5, args.get("kd_beta").asDouble());
                assertEquals(2.0, args.get("kd_temperature").asDouble());
                assertEquals(cached ? 16 : 0, args.get("teacher_top_k").asInt());
                if (kind.equals("full")) assertTrue(Files.isRegularFile(a.resolve("config.json")), "a Hugging Face checkpoint");
                else assertTrue(Files.isRegularFile(a.resolve("adapter_config.json")), "a PEFT adapter");
            }
        }
    }

    @Test
    void warmCacheGivesTheSameRunAndSkipsTheTeacher() throws Exception {
        Path cache = tmp.resolve("cache-warm");
        Path a = tmp.resolve("cold"), b = tmp.resolve("warm");
        new Trainer(distill(a, "prompt-tuning", false, 3, teacher, cache), TrainerTest.dataArgs(), TrainerTest.quiet()).run();
        long entries;
        try (Stream<Path> s = Files.walk(cache)) { entries = s.filter(p -> p.toString().endsWith(".bin")).count(); }
        assertTrue(entries >= 4, "entries written: " + entries);
        // a teacher the cache does not know about would be used on a miss: point the warm run at it to prove no miss happens
        new Trainer(distill(b, "prompt-tuning", false, 3, teacher, cache), TrainerTest.dataArgs(), TrainerTest.quiet()).run();
        assertArrayEquals(TrainerTest.tensor(a.resolve("adapter_model.safetensors"), "prompt_embeddings"),
                TrainerTest.tensor(b.resolve("adapter_model.safetensors"), "prompt_embeddings"), 0f);
        long after;
        try (Stream<Path> s = Files.walk(cache)) { after = s.filter(p -> p.toString().endsWith(".bin")).count(); }
        assertEquals(entries, after, "the second run found every example in the cache");
        String summary = Files.readString(b.resolve("train_summary.json"));
        assertTrue(summary.contains("\"teacher_cache_misses\" : 0"), summary);
    }

    @Test
    void teacherEqualToTheStudentTeachesNothing() throws Exception {
        Path out = tmp.resolve("self");
        TrainConfig c = distill(out, "lora", false, 3, student, null);
        c.kdAlpha = 1.0;
        new Trainer(c, TrainerTest.dataArgs(), TrainerTest.quiet()).run();
        for (JsonNode m : MetricsWriter.read(out.resolve("metrics.jsonl"))) {
            assertEquals(0, m.get("kd_loss").asDouble(), 1e-6, "KD of a model with itself");
            assertEquals(0, m.get("grad_norm").asDouble(), 1e-6, "no gradient");
        }
        try (SafeTensors st = SafeTensors.open(out.resolve("adapter_model.safetensors"))) {
            for (String k : st.tensors().keySet()) if (k.contains("lora_B")) for (float v : st.get(k).toFloats()) assertEquals(0f, v, k);
        }
    }

    @Test
    void badDistillationSettingsAreRefused() {
        UserException vocab = assertThrows(UserException.class,
                () -> new Trainer(distill(tmp.resolve("bad1"), "lora", false, 1, otherVocab, null), TrainerTest.dataArgs(), TrainerTest.quiet()).run());
        assertTrue(vocab.getMessage().contains("1000") && vocab.getMessage().contains("1024"), vocab.getMessage());
        UserException none = assertThrows(UserException.class,
                () -> new Trainer(distill(tmp.resolve("bad2"), "lora", false, 1, null, null), TrainerTest.dataArgs(), TrainerTest.quiet()).run());
        assertTrue(none.getMessage().startsWith("--teacher"), none.getMessage());
        TrainConfig ia3 = distill(tmp.resolve("bad3"), "lora", false, 1, teacher, null);
        ia3.student = "ia3";
        UserException st = assertThrows(UserException.class, () -> new Trainer(ia3, TrainerTest.dataArgs(), TrainerTest.quiet()).run());
        assertTrue(st.getMessage().startsWith("--student"), st.getMessage());
        TrainConfig beta = distill(tmp.resolve("bad4"), "lora", false, 1, teacher, null);
        beta.kdBeta = 1.5;
        assertTrue(assertThrows(UserException.class, () -> new Trainer(beta, TrainerTest.dataArgs(), TrainerTest.quiet()).run())
                .getMessage().startsWith("--kd-beta"));
    }
}
