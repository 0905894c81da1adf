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
        JsonNode o = bench("--repeat", "3", "--decode-tokens", "16", "--prompt-len", "16", "--decode-batch", "4", "--decode-context", "12", "--ceiling-mb", "0");
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

    /**
     * Each run's decode fraction is its streamed bytes over what the bandwidth measured beside its slices allowed in the same
     * time, so fraction x that run's (time-weighted) bandwidth gives back the run's own weight bytes per second; and the host's
     * interruptions are reported as a share of time.
     */
    @Test
    void decodeFractionsAreTheRunsBytesOverTheBandwidthBesideTheirSlices() throws Exception {
        JsonNode o = bench("--repeat", "2", "--decode-tokens", "40", "--prompt-len", "16", "--decode-batch", "2", "--ceiling-mb", "1");
        JsonNode dec = o.get("decode_runs"), frac = o.get("decode_fraction_runs"), bw = o.get("read_bandwidth_runs_gb_per_s");
        long weights = o.get("weights_bytes").asLong();
        assertEquals(2, frac.size());
        assertEquals(2, bw.size());
        for (int i = 0; i < frac.size(); i++) {
            double streamed = dec.get(i).asDouble() * weights / 1e9;   // GB/s
            double f = frac.get(i).asDouble(), b = bw.get(i).asDouble();
            assertTrue(f > 0, "run " + i);
            // the JSON's rounding: tok/s and GB/s to 0.01, fractions to 0.0001 (a tiny model's meter reads well under 1 GB/s)
            double rounding = 0.005 * f + 0.00005 * b + 0.005 * weights / 1e9;
            assertEquals(streamed, f * b, 1.01 * rounding + 1e-9, "run " + i);
        }
        double gaps = o.get("host_gaps_fraction_of_time").asDouble();
        assertTrue(gaps >= 0 && gaps < 1, "host_gaps_fraction_of_time " + gaps);
        assertTrue(o.get("host_gaps_per_s_per_thread").asDouble() >= 0);
    }

    /**
     * With --quantize the float weights decode in turns with the quantized ones: each run's speed-up is that run's two
     * speeds, and each model's slices are judged against a meter over its own weights.
     */
    @Test
    void quantizedRunsAreJudgedAgainstTheFloatWeightsOfTheSameRun() throws Exception {
        JsonNode o = bench("--quantize", "q8", "--repeat", "2", "--decode-tokens", "32", "--prompt-len", "16", "--decode-batch", "0", "--ceiling-mb", "1");
        JsonNode q = o.get("decode_runs"), f = o.get("float_decode_runs"), x = o.get("quantized_decode_speedup_runs");
        JsonNode qf = o.get("decode_fraction_runs"), ff = o.get("float_decode_fraction_runs");
        assertEquals(2, x.size());
        for (int i = 0; i < x.size(); i++) {
            double want = q.get(i).asDouble() / f.get(i).asDouble();
            assertEquals(want, x.get(i).asDouble(), 0.006 + 1e-3 * want, "run " + i);
            assertTrue(qf.get(i).asDouble() > 0 && ff.get(i).asDouble() > 0, "run " + i + ": both fractions measured");
        }
    }

    private JsonNode bench(String... args) throws Exception {
        Path model = tmp.resolve("model");
        RandomInit.write(Shared.resource("tiny-gemma3-config.json"), model, 7, false, 0.1);
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        PrintStream old = System.out;
        BadInputTest.Run r;
        List<String> all = new ArrayList<>(List.of("bench", "--model", model.toString(), "--json"));
        all.addAll(List.of(args));
        System.setOut(new PrintStream(buf, true, StandardCharsets.UTF_8));
        try {
            r = BadInputTest.run(all.toArray(String[]::new));
        } finally {
            System.setOut(old);
        }
        assertEquals(0, r.code(), r.err());
        return new ObjectMapper().readTree(buf.toString(StandardCharsets.UTF_8));
    }
}
