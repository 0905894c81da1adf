package dev.peft4j.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.serve.Engine;
import dev.peft4j.serve.TinyServe;
import dev.peft4j.tokenizer.Tokenizer;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/** A server over the tiny model with every adapter type loaded, on 127.0.0.1 and an ephemeral port. */
final class ServerFixture implements AutoCloseable {
    static final ObjectMapper JSON = new ObjectMapper();
    final TinyServe tiny;
    final Tokenizer tok;
    final Engine engine;
    final OpenAiServer server;
    final String base;
    final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    String apiKey;

    ServerFixture(Path tmp, Engine.Config cfg, java.util.function.UnaryOperator<OpenAiServer.Options> opts) throws Exception {
        tiny = new TinyServe(tmp);
        tok = Tokenizer.load(tiny.model);
        Gemma3Model m = Gemma3Model.load(tiny.model);
        Metrics metrics = new Metrics();
        engine = new Engine(m, tok, m.config.generationEos(tiny.model), cfg, metrics);
        for (String a : List.of("pt", "lora", "lora2", "ia3", "prefix")) engine.adapters.load(a, tiny.root.resolve(a));
        OpenAiServer.Options o = opts.apply(OpenAiServer.Options.local("tiny"));
        apiKey = o.apiKey();
        server = new OpenAiServer(engine, metrics, o);
        base = "http://127.0.0.1:" + server.start();
    }

    HttpResponse<String> post(String path, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(60))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body));
        if (apiKey != null) b.header("Authorization", "Bearer " + apiKey);
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    HttpResponse<String> get(String path) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(base + path)).timeout(Duration.ofSeconds(60)).GET();
        if (apiKey != null) b.header("Authorization", "Bearer " + apiKey);
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    JsonNode ok(String path, String body) throws Exception {
        HttpResponse<String> r = post(path, body);
        if (r.statusCode() != 200) throw new AssertionError(path + " " + body + " -> " + r.statusCode() + " " + r.body());
        return JSON.readTree(r.body());
    }

    @Override
    public void close() {
        engine.close();     // ends every request, so the handlers finish
        server.close();     // waits for them
        tok.close();
    }
}
