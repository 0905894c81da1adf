package dev.peft4j.cli;

import dev.peft4j.Shared;
import dev.peft4j.model.RandomInit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

import static dev.peft4j.cli.BadInputTest.assertCleanError;
import static dev.peft4j.cli.BadInputTest.run;

/** {@code peft4j serve} and {@code bench-serve}: user mistakes give one clear error line (the server itself is tested in peft4j-server). */
class ServeCommandTest {
    @TempDir
    static Path tmp;
    static Path model;

    @BeforeAll
    static void makeModel() throws Exception {
        model = tmp.resolve("model");
        RandomInit.write(Shared.resource("tiny-gemma3-config.json"), model, 7, false, 0.1);
    }

    /** The tiny random model with the quickstart's tokenizer, in a directory of its own. */
    static Path servedModel(String name) throws Exception {
        Path served = tmp.resolve(name);
        RandomInit.write(Shared.resource("tiny-gemma3-config.json"), served, 7, false, 0.1);
        Path assets = dev.peft4j.data.QuickstartAssets.copyTo(tmp.resolve(name + "-assets"));
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) Files.copy(assets.resolve("tokenizer").resolve(f), served.resolve(f));
        return served;
    }

    /** {@code peft4j serve --model served --port 0 ...} in a process of its own, its output to logFile. */
    static Process startServe(Path served, Path logFile, String... more) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-Xmx1g",
                "-cp", System.getProperty("java.class.path"), "dev.peft4j.cli.Main", "serve", "--model", served.toString(), "--port", "0"));
        cmd.addAll(List.of(more));
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(logFile.toFile()).start();
    }

    /** The base URL the server prints once it listens (within two minutes). */
    static String baseUrl(Process p, Path logFile) throws Exception {
        Pattern url = Pattern.compile("(http://127\\.0\\.0\\.1:\\d+)/v1");
        for (long t0 = System.currentTimeMillis(); p.isAlive() && System.currentTimeMillis() - t0 < 120_000; Thread.sleep(50)) {
            Matcher m = url.matcher(Files.readString(logFile));
            if (m.find()) return m.group(1);
        }
        return fail("no listening line: " + Files.readString(logFile));
    }

    /** The real process: SIGTERM lets a running stream finish, then the server stops and the process exits 0. */
    @Test
    void sigtermDrainsThenExits() throws Exception {
        Path served = servedModel("served");
        Path logFile = tmp.resolve("serve.log");       // a file, not a pipe: it can be read after the process ends
        Process p = startServe(served, logFile);
        try {
            String base = baseUrl(p, logFile);
            HttpClient http = HttpClient.newHttpClient();
            HttpResponse<java.util.stream.Stream<String>> r = http.send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
                    .timeout(Duration.ofSeconds(120)).header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"prompt\":[2,5],\"max_tokens\":240,\"n\":4,\"logprobs\":20,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}")).build(),
                    HttpResponse.BodyHandlers.ofLines());
            assertEquals(200, r.statusCode());
            var lines = r.body().iterator();
            String first = lines.next();
            assertTrue(first.startsWith("data: "), first);      // the request runs
            p.destroy();                                      // SIGTERM
            String last = first;
            try {
                while (lines.hasNext()) {
                    String l = lines.next();
                    if (!l.isBlank()) last = l;
                }
            } catch (RuntimeException e) {
                p.waitFor(20, TimeUnit.SECONDS);
                fail("the stream broke (" + e + "); server output:\n" + Files.readString(logFile));
            }
            assertEquals("data: [DONE]", last, "the running stream finished");
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the process exits after draining");
            assertEquals(0, p.exitValue() == 143 ? 0 : p.exitValue(), "exit code");
            String log = Files.readString(logFile);
            assertTrue(log.contains("draining") && log.contains("stopped"), log);
        } finally {
            p.destroyForcibly();
        }
    }

    /**
     * {@code serve --quantize q8} serves the 8-bit weights: the greedy token's logprob the server returns is the q8 model's
     * (computed here in process), not the float model's, on the prompt where the two differ most.
     */
    @Test
    void serveQuantizeQ8ServesTheQ8Weights() throws Exception {
        Path served = servedModel("served-q8");
        var f = dev.peft4j.model.Gemma3Model.load(served);
        var q = dev.peft4j.model.Gemma3Model.load(served, dev.peft4j.model.Quantization.Q8);
        int[] best = null;
        double bestQ = 0, bestF = 0;
        for (int s = 0; s < 12; s++) {
            int[] ids = {2, 5 + 7 * s, 9 + 3 * s, 11 + s};
            double lq = greedyLogprob(q, ids), lf = greedyLogprob(f, ids);
            if (best == null || Math.abs(lq - lf) > Math.abs(bestQ - bestF)) { best = ids; bestQ = lq; bestF = lf; }
        }
        assertTrue(Math.abs(bestQ - bestF) > 1e-4, "q8 and float differ on some prompt: " + bestQ + " vs " + bestF);
        Path logFile = tmp.resolve("serve-q8.log");
        Process p = startServe(served, logFile, "--quantize", "q8");
        try {
            String base = baseUrl(p, logFile);
            assertTrue(Files.readString(logFile).contains("q8 weights"), Files.readString(logFile));
            String prompt = java.util.Arrays.toString(best).replace(" ", "");
            HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create(base + "/v1/completions"))
                    .timeout(Duration.ofSeconds(120)).header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString("{\"prompt\":" + prompt + ",\"max_tokens\":1,\"logprobs\":1,\"temperature\":0}")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode(), r.body());
            double got = new com.fasterxml.jackson.databind.ObjectMapper().readTree(r.body()).at("/choices/0/logprobs/token_logprobs/0").asDouble();
            assertEquals(bestQ, got, Math.abs(bestQ - bestF) / 10, "served logprob: q8 " + bestQ + ", float " + bestF);
        } finally {
            p.destroyForcibly();
            p.waitFor(20, TimeUnit.SECONDS);
        }
    }

    /** The log-probability of the most likely next token after ids. */
    private static double greedyLogprob(dev.peft4j.model.Gemma3Model m, int[] ids) {
        float[] lg = m.logits(m.forward(List.of(new dev.peft4j.model.Gemma3Model.Input(m.newCache(), null, ids)), null), new int[]{ids.length - 1});
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (float v : lg) max = Math.max(max, v);
        for (float v : lg) sum += Math.exp(v - max);
        return -Math.log(sum);
    }

    @Test
    void badArguments() {
        assertCleanError(run("serve", "--model", tmp.resolve("nope").toString()), "nope", "not found");
        assertCleanError(run("serve", "--model", model.toString(), "--adapter", "noequals"), "--adapter", "NAME=DIR");
        assertCleanError(run("serve", "--model", model.toString(), "--adapter", "a=x", "--adapter", "a=y"), "--adapter", "twice");
        assertCleanError(run("serve", "--model", model.toString(), "--port", "70000"), "--port");
        assertCleanError(run("serve", "--model", model.toString(), "--max-running", "0"), "--max-running");
        assertCleanError(run("serve", "--model", model.toString(), "--allow-runtime-adapters", tmp.resolve("none").toString()), "--allow-runtime-adapters");
        assertCleanError(run("serve", "--model", model.toString()), "tokenizer.json");
        assertCleanError(run("bench-serve"), "--model", "--url");
        assertCleanError(run("bench-serve", "--model", model.toString(), "--streams", "0"), "--streams");
        assertCleanError(run("bench-serve", "--model", model.toString(), "--rounds", "0"), "--rounds");
        assertCleanError(run("serve", "--model", model.toString(), "--quantize", "q4"), "--quantize", "q8");
        assertCleanError(run("bench-serve", "--url", "http://127.0.0.1:1", "--quantize", "q8"), "--quantize", "--model");
    }

    /**
     * bench-serve end to end on the tiny model: batch 1, then per round the concurrent phases and batch 1 again; every
     * concurrent phase's ratio is against the mean of the batch-1 phases on either side of it (recomputed here from the
     * printed speeds), and the summary is the median of the rounds.
     */
    @Test
    void benchServeJudgesEachRoundAgainstTheBatchOnePhasesAroundIt() throws Exception {
        Path served = servedModel("bench-served");
        var buf = new java.io.ByteArrayOutputStream();
        var oldOut = System.out;
        BadInputTest.Run r;
        System.setOut(new java.io.PrintStream(buf, true, StandardCharsets.UTF_8));   // the report goes to System.out
        try {
            r = run("bench-serve", "--model", served.toString(), "--streams", "2", "--requests", "1", "--max-tokens", "6", "--prompt-tokens", "4",
                    "--rounds", "3", "--warmup", "0", "--random-adapters", "--json");
        } finally {
            System.setOut(oldOut);
        }
        assertEquals(0, r.code(), r.err());
        var o = new com.fasterxml.jackson.databind.ObjectMapper().readTree(buf.toString(StandardCharsets.UTF_8));
        var ph = o.get("phases");
        List<String> names = new ArrayList<>();
        for (var p : ph) names.add(p.get("name").asText());
        String b1 = "1 stream (batch 1)", base = "2 streams over base", mix = "2 streams over pt-a,pt-b,lora-a,lora-b";
        assertEquals(List.of(b1, base, mix, b1, base, mix, b1, base, mix, b1), names);
        List<Double> baseX = new ArrayList<>();
        for (int i = 0; i < ph.size(); i++) {
            var p = ph.get(i);
            if (p.get("streams").asInt() == 1) {
                assertFalse(p.has("decode_x_batch1"), "a batch-1 phase has no ratio");
                continue;
            }
            int before = i - 1, after = i + 1;
            while (ph.get(before).get("streams").asInt() != 1) before--;
            while (ph.get(after).get("streams").asInt() != 1) after++;
            double ref = (ph.get(before).get("decode_tokens_per_s").asDouble() + ph.get(after).get("decode_tokens_per_s").asDouble()) / 2;
            assertEquals(p.get("decode_tokens_per_s").asDouble() / ref, p.get("decode_x_batch1").asDouble(), 1e-9, p.get("name").asText() + " #" + i);
            if (p.get("name").asText().equals(base)) baseX.add(p.get("decode_x_batch1").asDouble());
        }
        baseX.sort(null);
        assertEquals(baseX.get(1), o.get("median_x_batch1").get(base).get("decode").asDouble(), 1e-9);
        assertTrue(o.get("median_x_batch1").has(mix));
    }
}
