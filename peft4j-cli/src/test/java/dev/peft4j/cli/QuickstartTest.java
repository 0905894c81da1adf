package dev.peft4j.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** The README's main command runs with no download and no ../shared (shortened here). */
class QuickstartTest {
    @TempDir
    Path tmp;

    @Test
    void quickstartProducesAPeftAdapter() throws Exception {
        Path out = tmp.resolve("qs");
        var r = BadInputTest.run("quickstart", "--output", out.toString(), "--pretrain-steps", "2", "--steps", "3");
        assertEquals(0, r.code(), r.err());
        Path adapter = out.resolve("adapter");
        assertTrue(Files.readString(adapter.resolve("adapter_config.json")).contains("\"peft_type\": \"PROMPT_TUNING\""));
        assertTrue(Files.isRegularFile(adapter.resolve("adapter_model.safetensors")));
        assertTrue(Files.isRegularFile(adapter.resolve("loss_curve.svg")));
        assertEquals(3, Files.readAllLines(adapter.resolve("metrics.jsonl")).size());
        // a second run replaces the earlier quickstart; a foreign directory is refused
        assertEquals(0, BadInputTest.run("quickstart", "--output", out.toString(), "--pretrain-steps", "1", "--steps", "1").code());
        Path foreign = tmp.resolve("foreign");
        Files.createDirectories(foreign);
        Files.writeString(foreign.resolve("notes.txt"), "mine");
        var bad = BadInputTest.run("quickstart", "--output", foreign.toString());
        assertNotEquals(0, bad.code());
        assertTrue(bad.err().contains("not a quickstart directory"), bad.err());
        assertTrue(Files.isRegularFile(foreign.resolve("notes.txt")));
    }
}
