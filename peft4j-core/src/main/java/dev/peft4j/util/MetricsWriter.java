package dev.peft4j.util;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code metrics.jsonl}: one JSON object per line, appended and flushed after each line so that {@code tail -f} and a
 * crashed run both see every completed step. Non-finite numbers are written as {@code null} (JSON has no NaN).
 * A resumed run appends to the same file.
 */
public final class MetricsWriter implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private final Path path;
    private final BufferedWriter out;

    public MetricsWriter(Path path) {
        this.path = path;
        try {
            Path parent = path.toAbsolutePath().getParent();
            if (parent != null) Files.createDirectories(parent);
            out = Files.newBufferedWriter(path, StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new UserException(path + ": cannot open for writing (" + e.getMessage() + ")");
        }
    }

    public Path path() { return path; }

    /** Appends one record (keys in the map's order) and flushes. */
    public synchronized void write(Map<String, ?> record) {
        Map<String, Object> clean = new LinkedHashMap<>();
        record.forEach((k, v) -> clean.put(k, v instanceof Double d && !Double.isFinite(d) ? null
                : v instanceof Float f && !Float.isFinite(f) ? null : v));
        try {
            out.write(JSON.writeValueAsString(clean));
            out.write('\n');
            out.flush();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + path + ": " + e.getMessage(), e);
        }
    }

    /** Convenience: {@code write(Map.of(...))} keeping the given order: key, value, key, value, ... */
    public void write(Object... keyValues) {
        if (keyValues.length % 2 != 0) throw new IllegalArgumentException("key/value pairs expected");
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < keyValues.length; i += 2) m.put((String) keyValues[i], keyValues[i + 1]);
        write(m);
    }

    @Override
    public synchronized void close() {
        try {
            out.close();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Reads a metrics file back; an unfinished last line (a crash mid-write) is ignored. */
    public static List<JsonNode> read(Path path) {
        List<JsonNode> out = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(path, StandardCharsets.UTF_8)) {
                if (line.isBlank()) continue;
                try {
                    out.add(JSON.readTree(line));
                } catch (IOException e) {
                    // a partially written line
                }
            }
        } catch (IOException e) {
            throw new UserException(path + ": cannot read (" + e.getMessage() + ")");
        }
        return out;
    }
}
