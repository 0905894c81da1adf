package dev.peft4j.cli;

import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Models;
import dev.peft4j.model.Quantization;
import dev.peft4j.serve.Engine;
import dev.peft4j.serve.ServeException;
import dev.peft4j.server.Metrics;
import dev.peft4j.server.OpenAiServer;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "OpenAI-compatible HTTP server: one base model, many adapters chosen per request, continuous batching.")
public final class ServeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "model directory (Hugging Face layout) or Hub repo id") Path model;
    @Option(names = "--adapter", description = "NAME=DIR: a PEFT adapter served as model NAME (repeatable; any type peft4j loads)") List<String> adapters = new ArrayList<>();
    @Option(names = "--host", defaultValue = "127.0.0.1", description = "address to bind (default ${DEFAULT-VALUE})") String host;
    @Option(names = "--port", defaultValue = "8000", description = "port (default ${DEFAULT-VALUE}; 0 = any free port)") int port;
    @Option(names = "--served-model-name", description = "the base model's id in the API (default: the --model argument)") String servedName;
    @Option(names = "--tokenizer", description = "tokenizer directory (default: the model directory)") Path tokenizerDir;
    @Option(names = "--quantize", description = "quantize the base weights at load: q8 (8-bit blocks of 32, as llama.cpp's Q8_0; adapters stay float32)") String quantize;
    @Option(names = "--api-key", description = "require Authorization: Bearer KEY on every route but /health") String apiKey;
    @Option(names = "--allow-runtime-adapters", paramLabel = "DIR", description = "allow /v1/load_lora_adapter and /v1/unload_lora_adapter for adapters under DIR") Path runtimeRoot;
    @Option(names = "--max-running", defaultValue = "16", description = "sequences decoded together (default ${DEFAULT-VALUE})") int maxRunning;
    @Option(names = "--max-waiting", defaultValue = "256", description = "queued sequences before 503 (default ${DEFAULT-VALUE})") int maxWaiting;
    @Option(names = "--max-kv-tokens", defaultValue = "131072", description = "KV-cache positions held by running sequences: a prompt's when admitted, one more per token; when full, the last admitted are preempted and recomputed later (default ${DEFAULT-VALUE})") int maxKv;
    @Option(names = "--prefill-chunk", defaultValue = "256", description = "prompt tokens prefilled per scheduler step (default ${DEFAULT-VALUE})") int prefillChunk;
    @Option(names = "--max-body-bytes", defaultValue = "4194304", description = "largest request body (default ${DEFAULT-VALUE})") long maxBody;
    @Option(names = "--drain-seconds", defaultValue = "60", description = "on SIGTERM, wait this long for running requests (default ${DEFAULT-VALUE})") int drainSeconds;

    @Override
    public Integer call() throws Exception {
        if (port < 0 || port > 65535) throw new UserException("--port: expected 0..65535, got " + port);
        if (maxRunning < 1) throw new UserException("--max-running: expected >= 1, got " + maxRunning);
        if (maxWaiting < 1) throw new UserException("--max-waiting: expected >= 1, got " + maxWaiting);
        if (maxKv < 1) throw new UserException("--max-kv-tokens: expected >= 1, got " + maxKv);
        if (prefillChunk < 1) throw new UserException("--prefill-chunk: expected >= 1, got " + prefillChunk);
        if (maxBody < 1024) throw new UserException("--max-body-bytes: expected >= 1024, got " + maxBody);
        if (runtimeRoot != null && !Files.isDirectory(runtimeRoot)) throw new UserException("--allow-runtime-adapters: " + runtimeRoot + " is not a directory");
        Map<String, Path> named = parseAdapters(adapters);
        Quantization quant = Quantization.parse(quantize);
        String name = servedName != null ? servedName : model.toString();
        Path dir = Models.resolve(model, "model");
        Gemma3Model m = Gemma3Model.load(dir, quant);
        Path tdir = tokenizerDir != null ? tokenizerDir : dir;
        Tokenizer tok = Tokenizer.load(tdir);
        Metrics metrics = new Metrics();
        Engine engine = new Engine(m, tok, m.config.generationEos(dir), new Engine.Config(maxRunning, maxWaiting, maxKv, prefillChunk), metrics);
        for (var e : named.entrySet()) {
            if (e.getKey().equals(name)) throw new UserException("--adapter " + e.getKey() + ": the name is the base model's (--served-model-name)");
            try {
                var entry = engine.adapters.load(e.getKey(), Models.resolve(e.getValue(), "adapter"));
                System.err.println("adapter " + e.getKey() + ": " + entry.peftType() + " from " + e.getValue());
            } catch (ServeException ex) {
                throw new UserException("--adapter " + e.getKey() + "=" + e.getValue() + ": " + ex.getMessage());
            }
        }
        OpenAiServer server = new OpenAiServer(engine, metrics, new OpenAiServer.Options(host, port, name, apiKey,
                runtimeRoot == null ? null : runtimeRoot.toAbsolutePath(), maxBody, 16, 20, 1000));
        int bound;
        try {
            bound = server.start();
        } catch (RuntimeException e) {
            throw new UserException("cannot listen on " + host + ":" + port + " (" + e.getMessage() + ")");
        }
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            System.err.println("peft4j serve: draining (new requests get 503)...");
            try {
                server.drainAndStop(drainSeconds * 1000L);
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
            System.err.println("peft4j serve: stopped");
            stopped.countDown();
        }, "peft4j-drain"));
        System.err.printf("peft4j serve: http://%s:%d/v1 (model %s%s, %d adapters; max %d running, %d KV tokens)%n",
                host, bound, name, quant == Quantization.NONE ? "" : ", " + quant.id() + " weights", named.size(), maxRunning, maxKv);
        stopped.await();
        return 0;
    }

    static Map<String, Path> parseAdapters(List<String> specs) {
        Map<String, Path> out = new LinkedHashMap<>();
        for (String s : specs) {
            int eq = s.indexOf('=');
            if (eq <= 0 || eq == s.length() - 1) throw new UserException("--adapter: expected NAME=DIR, got '" + s + "'");
            String n = s.substring(0, eq);
            if (out.put(n, Path.of(s.substring(eq + 1))) != null) throw new UserException("--adapter: the name '" + n + "' is given twice");
        }
        return out;
    }
}
