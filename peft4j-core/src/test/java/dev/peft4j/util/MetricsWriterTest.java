package dev.peft4j.util;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class MetricsWriterTest {
    @TempDir Path dir;

    @Test
    void appendsOneFlushedObjectPerLine() throws IOException {
        Path p = dir.resolve("run/metrics.jsonl");
        try (MetricsWriter w = new MetricsWriter(p)) {
            w.write("step", 1, "loss", 2.5, "lr", 1e-4);
            // flushed: visible before close
            assertEquals("{\"step\":1,\"loss\":2.5,\"lr\":1.0E-4}\n", Files.readString(p));
            w.write("step", 2, "loss", Double.NaN);
        }
        try (MetricsWriter w = new MetricsWriter(p)) { w.write("step", 3, "val_loss", 2.0); } // a resumed run appends
        List<String> lines = Files.readAllLines(p);
        assertEquals(3, lines.size());
        assertEquals("{\"step\":2,\"loss\":null}", lines.get(1));
        Files.writeString(p, "{\"step\":4,\"lo", java.nio.file.StandardOpenOption.APPEND); // crash mid-line
        List<JsonNode> read = MetricsWriter.read(p);
        assertEquals(3, read.size());
        assertEquals(2.0, read.get(2).get("val_loss").asDouble());
    }
}
