package dev.peft4j.cli;

import dev.peft4j.Shared;
import dev.peft4j.data.QuickstartAssets;
import dev.peft4j.model.RandomInit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** {@code peft4j quantize} and {@code --quantize q8} end to end on a small random model. */
class QuantizeCommandTest {
    @TempDir
    static Path tmp;
    static Path model;

    @BeforeAll
    static void makeModel() throws Exception {
        Path cfg = Shared.resource("tiny-gemma3-config.json");
        model = tmp.resolve("model");
        RandomInit.write(cfg, model, 7, false, 0.1);
        Path assets = QuickstartAssets.copyTo(tmp.resolve("assets"));
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) Files.copy(assets.resolve("tokenizer").resolve(f), model.resolve(f));
    }

    /** The generated ids ({@code generate --print-ids} prints to System.out). */
    static String generateIds(String... args) {
        java.io.PrintStream old = System.out;
        java.io.ByteArrayOutputStream buf = new java.io.ByteArrayOutputStream();
        BadInputTest.Run r;
        try {
            System.setOut(new java.io.PrintStream(buf, true, java.nio.charset.StandardCharsets.UTF_8));
            r = BadInputTest.run(args);
        } finally {
            System.setOut(old);
        }
        assertEquals(0, r.code(), r.err());
        return buf.toString(java.nio.charset.StandardCharsets.UTF_8).lines().filter(l -> l.startsWith("ids:")).findFirst().orElseThrow();
    }

    @Test
    void quantizedCheckpointGeneratesLikeLoadTimeQuantization() {
        Path q = tmp.resolve("q8");
        BadInputTest.Run w = BadInputTest.run("quantize", "--model", model.toString(), "--output", q.toString());
        assertEquals(0, w.code(), w.err());
        assertTrue(Files.isRegularFile(q.resolve("model.safetensors")) && Files.isRegularFile(q.resolve("tokenizer.json")));
        String fromCheckpoint = generateIds("generate", "--model", q.toString(), "--prompt-ids", "2,17,9", "--max-new-tokens", "8", "--print-ids");
        String atLoad = generateIds("generate", "--model", model.toString(), "--quantize", "q8", "--prompt-ids", "2,17,9", "--max-new-tokens", "8", "--print-ids");
        assertEquals(atLoad, fromCheckpoint);
        // a non-empty output directory is refused
        BadInputTest.assertCleanError(BadInputTest.run("quantize", "--model", model.toString(), "--output", q.toString()), "--output", "not empty");
    }

    @Test
    void loraTrainsOverAQ8BaseAndFullFineTuningIsRefused() throws Exception {
        Path data = QuickstartAssets.copyTo(tmp.resolve("assets-train")).resolve(QuickstartAssets.DATA);
        Path out = tmp.resolve("qlora");
        BadInputTest.Run r = BadInputTest.run("train", "--model", model.toString(), "--data", data.toString(), "--method", "lora",
                "--quantize", "q8", "--max-steps", "2", "--batch-size", "2", "--max-seq-len", "64", "--truncate", "--val-size", "2", "--output", out.toString());
        assertEquals(0, r.code(), r.err());
        assertTrue(Files.isRegularFile(out.resolve("adapter_model.safetensors")));
        assertTrue(Files.readString(out.resolve("training_args.json")).contains("\"quantize\""));
        BadInputTest.assertCleanError(BadInputTest.run("train", "--model", model.toString(), "--data", data.toString(), "--method", "full",
                "--quantize", "q8", "--output", tmp.resolve("never").toString()), "--quantize", "full");
        assertFalse(Files.exists(tmp.resolve("never")));
        BadInputTest.assertCleanError(BadInputTest.run("generate", "--model", model.toString(), "--quantize", "q4", "--prompt-ids", "2"), "--quantize", "q4");
    }
}
