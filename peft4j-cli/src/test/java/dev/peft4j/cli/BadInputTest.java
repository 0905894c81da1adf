package dev.peft4j.cli;

import dev.peft4j.Shared;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.RandomInit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** Each kind of bad input gives one clear line naming the culprit, a non-zero exit code and no stack trace. */
class BadInputTest {
    @TempDir
    static Path tmp;
    static Path model;

    @BeforeAll
    static void makeModel() throws Exception {
        Path cfg = Shared.resource("tiny-gemma3-config.json");
        model = tmp.resolve("model");
        RandomInit.write(cfg, model, 7, false, 0.1);
    }

    record Run(int code, String out, String err) {}

    static Run run(String... args) {
        CommandLine cl = Main.commandLine();
        StringWriter out = new StringWriter(), err = new StringWriter();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int code = cl.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    static void assertCleanError(Run r, String... mustContain) {
        assertNotEquals(0, r.code(), "exit code");
        String e = r.err().trim();
        assertFalse(e.contains("\tat "), "stack trace printed: " + e);
        assertFalse(e.contains("Exception"), "exception class printed: " + e);
        assertEquals(1, e.lines().count(), "one line expected: " + e);
        for (String m : mustContain) assertTrue(e.contains(m), "'" + m + "' not in: " + e);
    }

    static Path copyModel(String name) throws Exception {
        Path d = tmp.resolve(name);
        Files.createDirectories(d);
        for (String f : new String[]{"config.json", "generation_config.json", "model.safetensors"}) Files.copy(model.resolve(f), d.resolve(f));
        return d;
    }

    @Test
    void goodModelWorks() {
        Run r = run("generate", "--model", model.toString(), "--prompt-ids", "2,17,9", "--max-new-tokens", "3");
        assertEquals(0, r.code(), r.err());
        Run pl = run("generate", "--model", model.toString(), "--prompt-ids", "2,17,9,17,9", "--max-new-tokens", "12", "--prompt-lookup", "7");
        assertEquals(0, pl.code(), pl.err());
    }

    @Test
    void missingModelDirectory() {
        assertCleanError(run("generate", "--model", tmp.resolve("nope").toString(), "--prompt-ids", "2"), "nope", "not found");
    }

    @Test
    void missingConfig() throws Exception {
        Path d = copyModel("noconfig");
        Files.delete(d.resolve("config.json"));
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "config.json", "not found");
    }

    @Test
    void missingWeights() throws Exception {
        Path d = copyModel("noweights");
        Files.delete(d.resolve("model.safetensors"));
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "model.safetensors");
    }

    @Test
    void truncatedSafetensors() throws Exception {
        Path d = copyModel("truncated");
        byte[] all = Files.readAllBytes(d.resolve("model.safetensors"));
        Files.write(d.resolve("model.safetensors"), java.util.Arrays.copyOf(all, all.length / 2));
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "model.safetensors", "past the end");
        Files.write(d.resolve("model.safetensors"), new byte[]{1, 2, 3});
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "model.safetensors", "truncated");
    }

    /** Writes a safetensors file with a hand-made header. */
    static void writeRaw(Path f, String header, int dataBytes) throws Exception {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h);
        Files.write(f, b.array());
    }

    @Test
    void headerOffsetsPastTheEnd() throws Exception {
        Path d = copyModel("offsets");
        writeRaw(d.resolve("model.safetensors"), "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[0,256]}}", 16);
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "model.norm.weight", "past the end");
    }

    @Test
    void unknownDtype() throws Exception {
        Path d = copyModel("dtype");
        writeRaw(d.resolve("model.safetensors"), "{\"model.norm.weight\":{\"dtype\":\"Q4\",\"shape\":[64],\"data_offsets\":[0,64]}}", 64);
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "model.norm.weight", "unknown dtype", "Q4");
    }

    @Test
    void shapeDisagreesWithConfig() throws Exception {
        Path d = copyModel("shape");
        String cfg = Files.readString(d.resolve("config.json")).replace("\"intermediate_size\" : 128", "\"intermediate_size\" : 96");
        assertTrue(cfg.contains("96"), "config edit failed");
        Files.writeString(d.resolve("config.json"), cfg);
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "gate_proj", "[96, 64]");
    }

    @Test
    void configMissingRequiredField() throws Exception {
        Path d = copyModel("field");
        String cfg = Files.readString(d.resolve("config.json")).replaceAll("\"hidden_size\" : \\d+,", "");
        Files.writeString(d.resolve("config.json"), cfg);
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "hidden_size", "missing");
    }

    @Test
    void unsupportedModelType() throws Exception {
        Path d = copyModel("type");
        String cfg = Files.readString(d.resolve("config.json")).replace("\"gemma3_text\"", "\"llama\"");
        Files.writeString(d.resolve("config.json"), cfg);
        assertCleanError(run("generate", "--model", d.toString(), "--prompt-ids", "2"), "model_type", "llama");
    }

    @Test
    void tokenIdOutsideVocabulary() throws Exception {
        assertCleanError(run("generate", "--model", model.toString(), "--prompt-ids", "2,5000"), "5000", "vocabulary");
        Path in = tmp.resolve("ids.safetensors");
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        e.put("input_ids", SafeTensors.Entry.i32(new int[]{2, 4, -1}, 1, 3));
        SafeTensors.write(in, e, null);
        assertCleanError(run("forward", "--model", model.toString(), "--input-ids", in.toString(), "--output", tmp.resolve("o.safetensors").toString()),
                "input_ids[0][2]", "vocabulary");
    }

    @Test
    void promptLongerThanMaxPositions() throws Exception {
        StringBuilder sb = new StringBuilder("2");
        for (int i = 0; i < 300; i++) sb.append(",5");
        assertCleanError(run("generate", "--model", model.toString(), "--prompt-ids", sb.toString()), "max_position_embeddings");
    }

    @Test
    void forwardWritesLogitsAndHonoursPadding() throws Exception {
        Path in = tmp.resolve("pad.safetensors");
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        // row 0: 5 real tokens; row 1: the same 3 first tokens, right-padded; row 2: left-padded
        e.put("input_ids", SafeTensors.Entry.i32(new int[]{2, 10, 11, 12, 13, 2, 10, 11, 0, 0, 0, 0, 2, 10, 11}, 3, 5));
        e.put("attention_mask", SafeTensors.Entry.i32(new int[]{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1}, 3, 5));
        SafeTensors.write(in, e, null);
        Path out = tmp.resolve("pad-out.safetensors");
        Run r = run("forward", "--model", model.toString(), "--input-ids", in.toString(), "--output", out.toString());
        assertEquals(0, r.code(), r.err());
        try (SafeTensors st = SafeTensors.open(out)) {
            float[] lg = st.get("logits").toFloats();
            int V = 1024;
            for (int t = 0; t < 3; t++) {
                for (int v = 0; v < V; v++) {
                    float a = lg[(0 * 5 + t) * V + v];
                    assertEquals(a, lg[(1 * 5 + t) * V + v], 1e-5f, "right-padded row, position " + t);
                    assertEquals(a, lg[(2 * 5 + 2 + t) * V + v], 1e-5f, "left-padded row, position " + t);
                }
            }
            assertEquals(0f, lg[(1 * 5 + 4) * V], "padded position holds zeros");
        }
    }

    @Test
    void mistypedOptionsGiveOneLine() {
        assertCleanError(run("generate", "--model", model.toString(), "--temperature", "abc", "--prompt-ids", "2"), "--temperature", "abc");
        assertCleanError(run("generate", "--model", model.toString(), "--prompt-lookup", "-1", "--prompt-ids", "2"), "--prompt-lookup");
        assertCleanError(run("generate", "--model", model.toString(), "--prompt-lookup", "4", "--temperature", "0.7", "--prompt-ids", "2"), "--prompt-lookup", "greedy");
        assertCleanError(run("generate", "--model", model.toString(), "--no-such-option"), "--no-such-option");
        assertCleanError(run("generate"), "--model");
        assertCleanError(run("nope"), "nope");
        assertCleanError(run("generat", "--model", "x"), "did you mean generate");
        Run none = run();
        assertEquals(2, none.code());
        assertTrue(none.err().contains("Commands:") && none.err().contains("generate"), "no arguments: the command list");
    }

    /** A copy of the model with the quickstart tokenizer (same 1,024-token vocabulary). */
    static Path modelWithTokenizer(String name) throws Exception {
        Path d = copyModel(name);
        Path assets = dev.peft4j.data.QuickstartAssets.copyTo(tmp.resolve(name + "-assets"));
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) Files.copy(assets.resolve("tokenizer").resolve(f), d.resolve(f));
        return d;
    }

    @Test
    void samplingAndPromptChecks() throws Exception {
        assertCleanError(run("generate", "--model", model.toString(), "--prompt-ids", "2", "--top-k", "-1"), "--top-k", "-1");
        assertCleanError(run("generate", "--model", model.toString(), "--prompt-ids", "2", "--stop", "x"), "--stop", "tokenizer");
        Path d = modelWithTokenizer("withtokenizer");
        assertCleanError(run("generate", "--model", d.toString(), "--prompt", "", "--no-bos"), "--prompt", "no tokens");
    }

    @Test
    void outputPathsOfTheWrongKind() throws Exception {
        Path file = tmp.resolve("a-file.txt");
        Files.writeString(file, "x");
        Path cfg = Shared.resource("tiny-gemma3-config.json");
        assertCleanError(run("init", "--config", cfg.toString(), "--output", file.toString()), "--output", "a-file.txt", "is a file");
        assertCleanError(run("quickstart", "--output", file.toString()), "--output", "a-file.txt", "is a file");
        Path data = dev.peft4j.data.QuickstartAssets.copyTo(tmp.resolve("assets-train")).resolve(dev.peft4j.data.QuickstartAssets.DATA);
        assertCleanError(run("train", "--model", model.toString(), "--data", data.toString(), "--method", "lora", "--output", file.toString()),
                "--output", "a-file.txt", "is a file");
        assertCleanError(run("train", "--model", model.toString(), "--data", data.toString(), "--method", "lora", "--schedule", "foo",
                "--output", tmp.resolve("never").toString()), "--schedule", "foo");
        assertFalse(Files.exists(tmp.resolve("never")), "a bad --schedule fails before anything is written");
        assertEquals("x", Files.readString(file), "the file is left alone");
        Path dir = tmp.resolve("a-dir");
        Files.createDirectories(dir);
        assertCleanError(run("compare", "--base", dir.toString(), "--tuned", dir.toString()), "--base", "a-dir", "is a directory");
        assertCleanError(run("forward", "--model", model.toString(), "--input-ids", dir.toString(), "--output", file.toString()),
                "--input-ids", "a-dir", "is a directory");
        Path ids = tmp.resolve("ids-for-output.safetensors");
        SafeTensors.write(ids, Map.of("input_ids", SafeTensors.Entry.i32(new int[]{2, 4}, 1, 2)), null);
        assertCleanError(run("forward", "--model", model.toString(), "--input-ids", ids.toString(), "--output", dir.toString()),
                "--output", "a-dir", "is a directory");
        assertCleanError(run("train", "--model", modelWithTokenizer("tok-train").toString(), "--data", dir.toString(), "--method", "lora",
                "--output", tmp.resolve("never2").toString()), "a-dir", "is a directory");
    }

    @Test
    void fileSystemErrorsGiveOneLine() {
        String s = Main.describe(new java.nio.file.FileAlreadyExistsException("/tmp/x"));
        assertEquals("/tmp/x: already exists", s);
        assertEquals("/a -> /b: Is a directory", Main.describe(new java.nio.file.FileSystemException("/a", "/b", "Is a directory")));
        var noSpace = new java.io.IOException("No space left on device");
        assertEquals("cannot write /x: No space left on device", Main.describe(new java.io.UncheckedIOException("cannot write /x: No space left on device", noSpace)));
        assertEquals("/y: not found", Main.describe(new java.io.UncheckedIOException(new java.nio.file.NoSuchFileException("/y"))));
        assertEquals("No space left on device", Main.describe((Throwable) noSpace));
    }

    @Test
    void benchChecksItsNumbers() {
        assertCleanError(run("bench", "--model", model.toString(), "--prompt-len", "0"), "--prompt-len");
        assertCleanError(run("bench", "--model", model.toString(), "--train", "lora", "--batch", "0"), "--batch");
        assertCleanError(run("bench", "--model", model.toString(), "--decode-context", "2"), "--decode-context");
        assertCleanError(run("bench", "--model", model.toString(), "--prompt-len", "16", "--decode-context", "17"), "--decode-context");
    }

    @Test
    void overwriteReplacesARunButNeverAForeignFolder() throws Exception {
        Path m = modelWithTokenizer("tok-overwrite");
        Path data = dev.peft4j.data.QuickstartAssets.copyTo(tmp.resolve("assets-overwrite")).resolve(dev.peft4j.data.QuickstartAssets.DATA);
        Path foreign = tmp.resolve("foreign-output");
        Files.createDirectories(foreign);
        Files.writeString(foreign.resolve("notes.txt"), "mine");
        String[] args = {"train", "--model", m.toString(), "--data", data.toString(), "--method", "prompt-tuning", "--max-steps", "1",
                "--batch-size", "2", "--val-size", "0", "--max-seq-len", "128", "--overwrite", "--output", foreign.toString()};
        assertCleanError(run(args), "foreign-output", "holds no peft4j run");
        assertEquals("mine", Files.readString(foreign.resolve("notes.txt")), "a folder without a run is left alone");
        Path earlier = tmp.resolve("earlier-run");
        Files.createDirectories(earlier);
        Files.writeString(earlier.resolve("training_args.json"), "{}");
        Files.writeString(earlier.resolve("stale.txt"), "old");
        args[args.length - 1] = earlier.toString();
        String[] badInit = java.util.Arrays.copyOf(args, args.length + 2);
        badInit[args.length] = "--init";
        badInit[args.length + 1] = "nonsense";
        assertCleanError(run(badInit), "--init", "nonsense");
        assertEquals("old", Files.readString(earlier.resolve("stale.txt")), "a run that fails to start leaves the earlier one in place");
        Run r = run(args);
        assertEquals(0, r.code(), r.err());
        assertFalse(Files.exists(earlier.resolve("stale.txt")), "the earlier run is replaced");
        assertTrue(Files.isRegularFile(earlier.resolve("adapter_model.safetensors")));
    }

    @Test
    void trainingNumbersAndChoicesAreChecked() {
        String[] base = {"train", "--model", model.toString(), "--data", "unused.jsonl", "--method", "lora", "--output", tmp.resolve("never3").toString()};
        String[][] bad = {{"--init-lora-weights", "foo"}, {"--max-grad-norm", "-1"}, {"--eval-every", "-1"}, {"--save-every", "-2"},
                {"--keep-checkpoints", "0"}};
        for (String[] b : bad) {
            String[] args = java.util.Arrays.copyOf(base, base.length + 2);
            args[base.length] = b[0];
            args[base.length + 1] = b[1];
            assertCleanError(run(args), b[0], b[1]);
        }
        // options of other methods (base uses --method lora) are refused rather than silently ignored
        for (String[] b : new String[][]{{"--init", "random"}, {"--num-virtual-tokens", "8"}, {"--save-dtype", "bf16"}, {"--encoder-hidden-size", "4"}}) {
            String[] args = java.util.Arrays.copyOf(base, base.length + 2);
            args[base.length] = b[0];
            args[base.length + 1] = b[1];
            assertCleanError(run(args), b[0], "only used with --method");
        }
    }
}
