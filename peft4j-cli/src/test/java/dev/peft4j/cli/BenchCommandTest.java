package dev.peft4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.Shared;
import dev.peft4j.model.RandomInit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** {@code peft4j bench --json} on a tiny model: what it reports is consistent with its own runs (speed is not tested here). */
class BenchCommandTest {
    @TempDir
    Path tmp;

    /** Every batched run is judged against the batch-1 run of the same repetition, and the headline is their median. */
    @Test
    void batchedRunsAreJudgedAgainstTheBatchOneRunBesideThem() throws Exception {
        Path model = tmp.resolve("model");
        RandomInit.write(Shared.resource("tiny-gemma3-config.json"), model, 7, false, 0.1);
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        PrintStream old = System.out;
        BadInputTest.Run r;
        System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
        try {
            r = BadInputTest.run("bench", "--model", model.toString(), "--repeat", "3", "--decode-tokens", "16", "--prompt-len", "16",
                    "--decode-batch", "4", "--decode-context", "12", "--ceiling-mb", "0", "--json");
        } finally {
            System.setOut(old);
        }
        assertEquals(0, r.code(), r.err());
        JsonNode o = new ObjectMapper().readTree(buf.toString(StandardCharsets.UTF_8));
        JsonNode dec = o.get("decode_runs"), bat = o.get("batched_decode_runs"), x = o.get("batched_decode_speedup_runs");
        assertEquals(12, o.get("decode_context").asInt());
        assertEquals(3, x.size());
        assertEquals(dec.size(), x.size());
        List<Double> ratios = new ArrayList<>();
        for (int i = 0; i < x.size(); i++) {
            double want = bat.get(i).asDouble() / dec.get(i).asDouble();
            assertEquals(want, x.get(i).asDouble(), 0.006 + 1e-3 * want, "run " + i);
            ratios.add(x.get(i).asDouble());
        }
        ratios.sort(null);
        assertEquals(ratios.get(1), o.get("batched_decode_speedup_median").asDouble(), 0.006);
    }
}
