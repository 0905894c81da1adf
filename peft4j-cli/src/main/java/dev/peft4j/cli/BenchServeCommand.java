package dev.peft4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.model.Models;
import dev.peft4j.model.Quantization;
import dev.peft4j.peft.AdapterWriter;
import dev.peft4j.peft.LoraConfig;
import dev.peft4j.peft.PromptTuningConfig;
import dev.peft4j.serve.Engine;
import dev.peft4j.server.Metrics;
import dev.peft4j.server.OpenAiServer;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

@Command(name = "bench-serve", mixinStandardHelpOptions = true,
        description = "Load generator for peft4j serve: N concurrent streaming clients; aggregate tokens/s, time to first token and per-token latency (p50/p99), with the batch-1 figure of the same run.")
public final class BenchServeCommand implements Callable<Integer> {
    @Option(names = "--model", description = "model directory: start an in-process server on 127.0.0.1 (else --url)") Path model;
    @Option(names = "--url", description = "base URL of a running server, e.g. http://127.0.0.1:8000") String url;
    @Option(names = "--adapter", description = "NAME=DIR served by the in-process server (repeatable)") List<String> adapters = new ArrayList<>();
    @Option(names = "--streams", defaultValue = "8", description = "concurrent clients (default ${DEFAULT-VALUE})") int streams;
    @Option(names = "--requests", defaultValue = "2", description = "requests per client (default ${DEFAULT-VALUE})") int requests;
    @Option(names = "--max-tokens", defaultValue = "64", description = "tokens generated per request (default ${DEFAULT-VALUE})") int maxTokens;
    @Option(names = "--prompt-tokens", defaultValue = "32", description = "prompt length in tokens (default ${DEFAULT-VALUE})") int promptTokens;
    @Option(names = "--models", split = ",", description = "model ids the clients cycle through (default: the base)") List<String> models;
    @Option(names = "--random-adapters", description = "in-process: also serve 2 random prompt-tuning (pt-a, pt-b) and 2 random LoRA (lora-a, lora-b) adapters and run the N streams over them too") boolean randomAdapters;
    @Option(names = "--quantize", description = "in-process server: quantize the base weights at load: q8 (8-bit blocks of 32, as llama.cpp's Q8_0)") String quantize;
    @Option(names = "--prefill-chunk", defaultValue = "256", description = "in-process server's prefill chunk (default ${DEFAULT-VALUE})") int prefillChunk;
    @Option(names = "--warmup", defaultValue = "60", description = "in-process: most seconds of warm-up while the JIT still compiles (default ${DEFAULT-VALUE})") int warmupMax;
    @Option(names = "--rounds", defaultValue = "3", description = "timed rounds: batch 1, then per round the concurrent phases and batch 1 again; each concurrent phase is judged against the batch-1 phases on either side of it (default ${DEFAULT-VALUE})") int rounds;
    @Option(names = "--json", description = "print one JSON object") boolean json;

    private static final ObjectMapper JSON = new ObjectMapper();
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    /** One streamed request: arrival-to-first-token, gaps between tokens, tokens. */
    record Run(double ttft, List<Double> gaps, int tokens, double decodeSeconds) {}

    /** {@code decodeRates}: each request's decode speed, tokens after its first / time from its first to its last token. */
    record Phase(String name, int streams, int tokens, double seconds, List<Double> ttft, List<Double> gaps, List<Double> decodeRates,
                 double stepDecodePerSec) {
        double tokPerSec() { return tokens / seconds; }
        /** Aggregate decode tokens/s: the mean per-stream decode speed times the concurrent streams. */
        double decodePerSec() { return decodeRates.stream().mapToDouble(Double::doubleValue).average().orElse(Double.NaN) * streams; }
    }

    @Override
    public Integer call() throws Exception {
        if ((model == null) == (url == null)) throw new UserException("give exactly one of --model DIR (in-process server) or --url URL");
        if (streams < 1 || requests < 1 || maxTokens < 1 || promptTokens < 1 || rounds < 1) throw new UserException("--streams, --requests, --max-tokens, --prompt-tokens and --rounds must be >= 1");
        if (randomAdapters && model == null) throw new UserException("--random-adapters needs --model (an in-process server)");
        if (quantize != null && model == null) throw new UserException("--quantize needs --model (an in-process server; a running server was started with its own)");
        Quantization quant = Quantization.parse(quantize);
        OpenAiServer server = null;
        Engine engine = null;
        Tokenizer tok = null;
        Path tmp = null;
        String base = url;
        int vocab;
        try {
            if (model != null) {
                Path dir = Models.resolve(model, "model");
                Gemma3Model m = Gemma3Model.load(dir, quant);
                vocab = m.config.vocabSize();
                tok = Tokenizer.load(dir);
                Metrics metrics = new Metrics();
                steps = new DecodeSteps(metrics);
                engine = new Engine(m, tok, m.config.generationEos(dir), new Engine.Config(Math.max(16, streams), 1024, 1 << 20, prefillChunk), steps);
                for (var e : ServeCommand.parseAdapters(adapters).entrySet()) engine.adapters.load(e.getKey(), e.getValue());
                if (randomAdapters) {
                    tmp = Files.createTempDirectory("peft4j-bench-serve");
                    for (var e : randomAdapters(m, dir, tmp).entrySet()) engine.adapters.load(e.getKey(), e.getValue());
                }
                server = new OpenAiServer(engine, metrics, OpenAiServer.Options.local("base"));
                base = "http://127.0.0.1:" + server.start();
                if (!json) System.err.printf("in-process server %s (%s%s, %d threads)%n", base, dir, quant == Quantization.NONE ? "" : ", " + quant.id() + " weights", Parallel.threads());
            } else {
                JsonNode t = JSON.readTree(http.send(HttpRequest.newBuilder(URI.create(base + "/tokenize")).POST(HttpRequest.BodyPublishers.ofString("{\"prompt\":\"a\"}")).build(),
                        HttpResponse.BodyHandlers.ofString()).body());
                vocab = 1000;   // ids below this are in any Gemma vocabulary
                if (!t.has("tokens")) throw new UserException(base + ": not a peft4j/vLLM server (/tokenize)");
            }
            List<String> ids = models != null ? models : List.of(model != null ? "base" : firstModel(base));
            List<Phase> phases = new ArrayList<>();
            List<String> mix = List.of("pt-a", "pt-b", "lora-a", "lora-b");
            // warm-up: every configuration the timed phases run (batch 1, N streams, the adapters' paths), so that no
            // kernel is compiled by the JIT inside a timed phase; an in-process server then goes on until the JIT has
            // settled (under 2% of a round's time spent compiling; the HTTP stack's and the clients' code takes longest),
            // for at most --warmup seconds
            var jit = java.lang.management.ManagementFactory.getCompilationMXBean();
            long warmStart = System.nanoTime();
            for (int w = 0; ; w++) {
                long c0 = jit.getTotalCompilationTime(), t0 = System.nanoTime();
                run(base, List.of(ids.get(0)), 1, vocab, true);
                run(base, ids, streams, vocab, true);
                if (randomAdapters) run(base, mix, streams, vocab, true);
                double round = (System.nanoTime() - t0) / 1e6, compiling = jit.getTotalCompilationTime() - c0;
                if (w >= 1 && (model == null || compiling < 0.02 * round || System.nanoTime() - warmStart > warmupMax * 1e9)) break;
            }
            jitBefore = jit.getTotalCompilationTime();
            long timedStart = System.nanoTime();
            // batch 1 before and after each round's concurrent phases: their reference is the mean of the two (a host's
            // memory speed drifts from minute to minute, and a ratio means something only against batch 1 of that moment)
            phases.add(run(base, List.of(ids.get(0)), 1, vocab, false));
            for (int r = 0; r < rounds; r++) {
                phases.add(run(base, ids, streams, vocab, false));
                if (randomAdapters) phases.add(run(base, mix, streams, vocab, false));
                phases.add(run(base, List.of(ids.get(0)), 1, vocab, false));
            }
            jitDuring = jit.getTotalCompilationTime() - jitBefore;
            timedSeconds = (System.nanoTime() - timedStart) / 1e9;
            warmupSeconds = (timedStart - warmStart) / 1e9;
            report(phases);
            return 0;
        } finally {
            if (engine != null) engine.close();
            if (server != null) server.close();
            if (tok != null) tok.close();
            if (tmp != null) deleteTree(tmp);
        }
    }

    private String firstModel(String base) throws Exception {
        JsonNode m = JSON.readTree(http.send(HttpRequest.newBuilder(URI.create(base + "/v1/models")).GET().build(), HttpResponse.BodyHandlers.ofString()).body());
        return m.get("data").get(0).get("id").asText();
    }

    /** The in-process engine's steps (null with --url). */
    private DecodeSteps steps;

    /**
     * Counts the engine's decode-only steps (every sequence of the step advances one token, no prompt row): their rows and
     * time give the aggregate decode speed of the scheduler itself, free of other requests' prefill steps, which a stream's
     * own decode speed includes (a request arriving mid-stream stalls the running ones for its prefill).
     */
    static final class DecodeSteps implements Engine.Listener {
        private final Engine.Listener inner;
        private long rows;
        private double seconds;

        DecodeSteps(Engine.Listener inner) { this.inner = inner; }

        @Override public void step(int sequences, int rows, double seconds) {
            inner.step(sequences, rows, seconds);
            if (rows == sequences) synchronized (this) { this.rows += rows; this.seconds += seconds; }
        }
        @Override public void firstToken(double seconds) { inner.firstToken(seconds); }
        @Override public void tokenLatency(double seconds) { inner.tokenLatency(seconds); }
        @Override public void finished(int promptTokens, int completionTokens) { inner.finished(promptTokens, completionTokens); }

        /** Decode rows per second of the decode-only steps since the last call, and starts counting again. */
        synchronized double take() {
            double r = seconds > 0 ? rows / seconds : Double.NaN;
            rows = 0;
            seconds = 0;
            return r;
        }
    }

    private Phase run(String base, List<String> ids, int n, int vocab, boolean warm) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(n);
        if (steps != null) steps.take();
        try {
            long t0 = System.nanoTime();
            List<Future<List<Run>>> fs = new ArrayList<>();
            for (int s = 0; s < n; s++) {
                final int client = s;
                fs.add(pool.submit(() -> {
                    List<Run> out = new ArrayList<>();
                    int reqs = warm ? 1 : requests;
                    for (int r = 0; r < reqs; r++) out.add(stream(base, ids.get(client % ids.size()), prompt(vocab, client * 1000 + r), warm ? Math.min(maxTokens, 16) : maxTokens));
                    return out;
                }));
            }
            int tokens = 0;
            List<Double> ttft = new ArrayList<>(), gaps = new ArrayList<>(), rates = new ArrayList<>();
            for (var f : fs) {
                for (Run r : f.get()) {
                    tokens += r.tokens();
                    ttft.add(r.ttft());
                    gaps.addAll(r.gaps());
                    if (r.decodeSeconds() > 0) rates.add((r.tokens() - 1) / r.decodeSeconds());
                }
            }
            double secs = (System.nanoTime() - t0) / 1e9;
            String name = n == 1 ? "1 stream (batch 1)" : n + " streams over " + (ids.size() == 1 ? ids.get(0) : String.join(",", ids));
            return new Phase(name, n, tokens, secs, ttft, gaps, rates, steps != null ? steps.take() : Double.NaN);
        } finally {
            pool.shutdownNow();
        }
    }

    private int[] prompt(int vocab, int seed) {
        Random r = new Random(seed);
        int[] p = new int[promptTokens];
        p[0] = 2;
        for (int i = 1; i < p.length; i++) p[i] = 3 + r.nextInt(Math.max(1, Math.min(vocab, 20000) - 3));
        return p;
    }

    private Run stream(String base, String modelId, int[] prompt, int max) throws Exception {
        ObjectNode b = JSON.createObjectNode();
        b.put("model", modelId);
        var p = b.putArray("prompt");
        for (int x : prompt) p.add(x);
        b.put("max_tokens", max);
        b.put("temperature", 0);
        b.put("ignore_eos", true);
        b.put("stream", true);
        b.putObject("stream_options").put("include_usage", true);
        HttpRequest req = HttpRequest.newBuilder(URI.create(base + "/v1/completions")).timeout(Duration.ofMinutes(30))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(b.toString())).build();
        long t0 = System.nanoTime();
        HttpResponse<java.util.stream.Stream<String>> resp = http.send(req, HttpResponse.BodyHandlers.ofLines());
        if (resp.statusCode() != 200) throw new UserException(base + ": HTTP " + resp.statusCode() + " " + String.join("\n", resp.body().toList()));
        double ttft = -1;
        long first = 0, last = 0;
        int tokens = 0;
        List<Double> gaps = new ArrayList<>();
        for (String line : (Iterable<String>) resp.body()::iterator) {
            if (!line.startsWith("data: ") || line.equals("data: [DONE]")) continue;
            JsonNode j = JSON.readTree(line.substring(6));
            if (j.path("usage").has("completion_tokens")) tokens = j.get("usage").get("completion_tokens").asInt();
            JsonNode c = j.path("choices").path(0);
            if (c.path("text").asText("").isEmpty()) continue;   // a chunk per token (text held back inside a character is rare)
            long now = System.nanoTime();
            if (ttft < 0) {
                ttft = (now - t0) / 1e9;
                first = now;
            } else gaps.add((now - last) / 1e9);
            last = now;
        }
        return new Run(ttft, gaps, tokens, (last - first) / 1e9);
    }

    private static double pct(List<Double> v, double p) {
        if (v.isEmpty()) return Double.NaN;
        List<Double> s = new ArrayList<>(v);
        Collections.sort(s);
        return s.get(Math.min(s.size() - 1, (int) Math.ceil(p * s.size()) - 1 < 0 ? 0 : (int) Math.ceil(p * s.size()) - 1));
    }

    /** JIT compilation time (ms, all compiler threads) before and during the timed phases; their wall time; the warm-up's. */
    private long jitBefore, jitDuring;
    private double timedSeconds, warmupSeconds;

    /**
     * For each concurrent phase, the batch-1 phases it is judged against (their mean): the one before its round and the one
     * after it. Null for the batch-1 phases themselves.
     */
    private static Phase[][] references(List<Phase> phases) {
        Phase[][] ref = new Phase[phases.size()][];
        Phase before = null;
        for (int i = 0; i < phases.size(); i++) {
            if (phases.get(i).streams() == 1) {
                before = phases.get(i);
                continue;
            }
            Phase after = null;
            for (int j = i + 1; j < phases.size() && after == null; j++) if (phases.get(j).streams() == 1) after = phases.get(j);
            ref[i] = after == null ? new Phase[]{before} : new Phase[]{before, after};
        }
        return ref;
    }

    private static double mean(Phase[] ps, java.util.function.ToDoubleFunction<Phase> f) {
        double s = 0;
        for (Phase p : ps) s += f.applyAsDouble(p);
        return s / ps.length;
    }

    private static double median(List<Double> v) {
        List<Double> s = new ArrayList<>(v);
        Collections.sort(s);
        int n = s.size();
        return n == 0 ? Double.NaN : n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2;
    }

    private void report(List<Phase> phases) {
        Phase[][] ref = references(phases);
        // per concurrent configuration (phase name): its rounds' decode/s and engine d/s ratios
        Map<String, List<Double>> decodeX = new LinkedHashMap<>(), engineX = new LinkedHashMap<>();
        List<Double> b1 = new ArrayList<>();
        for (int i = 0; i < phases.size(); i++) {
            Phase p = phases.get(i);
            if (p.streams() == 1) {
                b1.add(p.decodePerSec());
                continue;
            }
            decodeX.computeIfAbsent(p.name(), k -> new ArrayList<>()).add(p.decodePerSec() / mean(ref[i], Phase::decodePerSec));
            engineX.computeIfAbsent(p.name(), k -> new ArrayList<>()).add(p.stepDecodePerSec() / mean(ref[i], Phase::stepDecodePerSec));
        }
        if (json) {
            ObjectNode o = JSON.createObjectNode();
            o.put("threads", Parallel.threads());
            if (quantize != null) o.put("quantize", Quantization.parse(quantize).id());
            o.put("max_tokens", maxTokens);
            o.put("prompt_tokens", promptTokens);
            o.put("rounds", rounds);
            o.put("batch1_decode_tokens_per_s_median", median(b1));
            o.put("warmup_s", warmupSeconds);
            if (model != null) o.put("jit_compile_ms_during_timed_phases", jitDuring);
            o.put("timed_s", timedSeconds);
            var arr = o.putArray("phases");
            for (int i = 0; i < phases.size(); i++) {
                Phase p = phases.get(i);
                ObjectNode x = arr.addObject();
                x.put("name", p.name());
                x.put("streams", p.streams());
                x.put("tokens", p.tokens());
                x.put("seconds", p.seconds());
                x.put("tokens_per_s", p.tokPerSec());
                x.put("decode_tokens_per_s", p.decodePerSec());
                if (steps != null) x.put("engine_decode_tokens_per_s", p.stepDecodePerSec());
                if (p.streams() > 1) {
                    x.put("x_batch1", p.tokPerSec() / mean(ref[i], Phase::tokPerSec));
                    x.put("decode_x_batch1", p.decodePerSec() / mean(ref[i], Phase::decodePerSec));
                    if (steps != null) x.put("engine_decode_x_batch1", p.stepDecodePerSec() / mean(ref[i], Phase::stepDecodePerSec));
                }
                x.put("ttft_p50_s", pct(p.ttft(), 0.5));
                x.put("ttft_p99_s", pct(p.ttft(), 0.99));
                x.put("per_token_p50_s", pct(p.gaps(), 0.5));
                x.put("per_token_p99_s", pct(p.gaps(), 0.99));
            }
            var sum = o.putObject("median_x_batch1");
            for (String k : decodeX.keySet()) {
                ObjectNode x = sum.putObject(k);
                x.put("decode", median(decodeX.get(k)));
                if (steps != null) x.put("engine_decode", median(engineX.get(k)));
            }
            System.out.println(o.toPrettyString());
            return;
        }
        System.out.printf("%-44s %7s %8s %6s %10s %6s %10s %6s %9s %9s %11s %11s%n", "phase", "tokens", "tok/s", "x b1", "decode/s", "x b1", "engine d/s", "x b1",
                "TTFT p50", "TTFT p99", "tok lat p50", "tok lat p99");
        for (int i = 0; i < phases.size(); i++) {
            Phase p = phases.get(i);
            boolean one = p.streams() == 1;
            String name = one && i > 0 ? p.name().replace("(batch 1)", "(batch 1, again)") : p.name();
            System.out.printf("%-44s %7d %8.1f %6s %10.1f %6s %10.1f %6s %7.0fms %7.0fms %9.1fms %9.1fms%n", name, p.tokens(), p.tokPerSec(),
                    one ? "" : String.format("%.2f", p.tokPerSec() / mean(ref[i], Phase::tokPerSec)),
                    p.decodePerSec(), one ? "" : String.format("%.2f", p.decodePerSec() / mean(ref[i], Phase::decodePerSec)),
                    p.stepDecodePerSec(), one ? "" : String.format("%.2f", p.stepDecodePerSec() / mean(ref[i], Phase::stepDecodePerSec)),
                    1e3 * pct(p.ttft(), 0.5), 1e3 * pct(p.ttft(), 0.99), 1e3 * pct(p.gaps(), 0.5), 1e3 * pct(p.gaps(), 0.99));
        }
        for (String k : decodeX.keySet()) {
            System.out.printf("%-44s decode/s x b1 %s, median %.2f%s%n", k, fmt(decodeX.get(k)), median(decodeX.get(k)),
                    steps == null ? "" : String.format("; engine d/s x b1 %s, median %.2f", fmt(engineX.get(k)), median(engineX.get(k))));
        }
        System.out.printf("(%d requests per client, %d prompt tokens, %d generated tokens each, greedy; tok/s = generated tokens / wall time, prefill included;%n"
                + " decode/s = mean per-stream decode speed after the first token x streams (other requests' prefills included);%n"
                + " engine d/s = decode rows / time of the scheduler's decode-only steps (in-process server);%n"
                + " x b1 = against the mean of the batch-1 phases just before and just after the phase's round)%n",
                requests, promptTokens, maxTokens);
        System.out.printf("(warm-up %.0f s%s)%n", warmupSeconds, model == null ? "" : String.format("; JIT compiling %.1f s of the timed phases' %.0f s", jitDuring / 1e3, timedSeconds));
    }

    private static String fmt(List<Double> v) {
        StringBuilder b = new StringBuilder("[");
        for (double d : v) b.append(b.length() > 1 ? " " : "").append(String.format("%.2f", d));
        return b.append(']').toString();
    }

    /** Two random prompt-tuning adapters (20 virtual tokens) and two random LoRA adapters (r 16 on q,k,v,o) for {@code m}. */
    static Map<String, Path> randomAdapters(Gemma3Model m, Path modelDir, Path root) throws Exception {
        Map<String, Path> out = new LinkedHashMap<>();
        Random r = new Random(1);
        int H = m.config.hidden();
        JsonNode cfg = JSON.readTree(modelDir.resolve("config.json").toFile());
        for (String n : List.of("pt-a", "pt-b")) {
            Map<String, Object> v = new LinkedHashMap<>();
            v.put("num_virtual_tokens", 20);
            v.put("prompt_tuning_init", "RANDOM");
            v.put("base_model_name_or_path", modelDir.toString());
            float[] e = new float[20 * H];
            for (int i = 0; i < e.length; i++) e[i] = (float) r.nextGaussian() * 0.02f;
            AdapterWriter.promptTuning(root.resolve(n), PromptTuningConfig.create(v).withModelConfig(cfg), e, H);
            out.put(n, root.resolve(n));
        }
        List<String> targets = List.of("q_proj", "k_proj", "v_proj", "o_proj");
        for (String n : List.of("lora-a", "lora-b")) {
            for (Linear l : m.weights.linears()) {
                if (targets.stream().noneMatch(l.name::endsWith)) continue;
                float[] a = new float[16 * l.in()], b = new float[l.out() * 16];
                for (int i = 0; i < a.length; i++) a[i] = (float) r.nextGaussian() * 0.01f;
                for (int i = 0; i < b.length; i++) b[i] = (float) r.nextGaussian() * 0.01f;
                l.lora = new Linear.Lora(16, 2f, a, b, l.in(), l.out());
            }
            Map<String, Object> v = new LinkedHashMap<>();
            v.put("r", 16);
            v.put("lora_alpha", 32);
            v.put("target_modules", targets);
            v.put("base_model_name_or_path", modelDir.toString());
            AdapterWriter.lora(root.resolve(n), LoraConfig.create(v), m);
            for (Linear l : m.weights.linears()) l.lora = null;
            out.put(n, root.resolve(n));
        }
        return out;
    }

    private static void deleteTree(Path p) {
        try (var s = Files.walk(p)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(x -> x.toFile().delete());
        } catch (Exception ignored) {
            // a temp folder
        }
    }
}
