package dev.peft4j.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.serve.AdapterRegistry;
import dev.peft4j.serve.Engine;
import dev.peft4j.serve.SamplingParams;
import dev.peft4j.serve.ServeException;
import dev.peft4j.serve.TokenLogprob;
import dev.peft4j.tokenizer.ChatTemplate;
import dev.peft4j.util.UserException;
import io.javalin.Javalin;
import io.javalin.http.Context;
import io.javalin.http.HttpResponseException;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

/**
 * The OpenAI-compatible HTTP layer over an {@link Engine} (Javalin 7 on Jetty 12, virtual threads, Jackson): {@code GET /v1/models},
 * {@code POST /v1/completions}, {@code POST /v1/chat/completions} (JSON or server-sent events), vLLM's {@code /tokenize},
 * {@code /detokenize}, {@code /v1/load_lora_adapter} and {@code /v1/unload_lora_adapter}, {@code GET /health} and
 * {@code GET /metrics}. Errors use OpenAI's shape. The request's {@code model} picks the base or a loaded adapter.
 */
public final class OpenAiServer implements AutoCloseable {
    /**
     * @param apiKey              null: no authentication; else every route but /health needs {@code Authorization: Bearer KEY}
     * @param runtimeAdapterRoot  null: no runtime adapter loading; else adapters may be loaded from paths under it
     */
    public record Options(String host, int port, String servedName, String apiKey, Path runtimeAdapterRoot, long maxBodyBytes,
                          int maxN, int maxLogprobs, long heartbeatMs) {
        public static Options local(String servedName) {
            return new Options("127.0.0.1", 0, servedName, null, null, 4L << 20, 16, 20, 1000);
        }

        public Options withApiKey(String key) { return new Options(host, port, servedName, key, runtimeAdapterRoot, maxBodyBytes, maxN, maxLogprobs, heartbeatMs); }
        public Options withRuntimeAdapters(Path root) { return new Options(host, port, servedName, apiKey, root, maxBodyBytes, maxN, maxLogprobs, heartbeatMs); }
        public Options withMaxBodyBytes(long b) { return new Options(host, port, servedName, apiKey, runtimeAdapterRoot, b, maxN, maxLogprobs, heartbeatMs); }
        public Options withHeartbeatMs(long ms) { return new Options(host, port, servedName, apiKey, runtimeAdapterRoot, maxBodyBytes, maxN, maxLogprobs, ms); }
    }

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final java.util.Set<String> ROUTES = java.util.Set.of("/health", "/metrics", "/v1/models", "/v1/completions",
            "/v1/chat/completions", "/tokenize", "/detokenize", "/v1/load_lora_adapter", "/v1/unload_lora_adapter");
    private final Engine engine;
    private final Metrics metrics;
    private final Options opt;
    private final long created = System.currentTimeMillis() / 1000;
    private Javalin app;
    /** Completion requests being answered (drain waits for them to write their last bytes). */
    private final java.util.concurrent.atomic.AtomicInteger inFlight = new java.util.concurrent.atomic.AtomicInteger();

    public OpenAiServer(Engine engine, Metrics metrics, Options opt) {
        this.engine = engine;
        this.metrics = metrics;
        this.opt = opt;
        metrics.watch(engine::running, engine::waiting);
        metrics.watchPreemptions(engine::preemptions);
    }

    /** Starts listening; returns the port (an ephemeral one when {@code port} is 0). */
    public int start() {
        app = Javalin.create(c -> {
            c.concurrency.useVirtualThreads = true;
            c.startup.showJavalinBanner = false;
            c.http.maxRequestSize = opt.maxBodyBytes();
            c.http.compressionStrategy = io.javalin.compression.CompressionStrategy.NONE;
            // SIGTERM: the caller's shutdown hook drains first (drainAndStop); Jetty must not close connections on its own
            c.jetty.modifyServer(server -> server.setStopAtShutdown(false));
            c.jetty.addConnector((server, http) -> {
                var connector = new org.eclipse.jetty.server.ServerConnector(server, new org.eclipse.jetty.server.HttpConnectionFactory(http));
                connector.setHost(opt.host());
                connector.setPort(opt.port());
                // a burst of clients connecting at once must wait in the kernel's queue, not overflow it: the JDK's default
                // backlog of 50 overflowed in a burst of 200 (ListenOverflows), and an overflowed connection can be reset
                connector.setAcceptQueueSize(ACCEPT_QUEUE);
                return connector;
            });
            var r = c.routes;
            r.before(this::guard);
            r.get("/health", ctx -> ctx.status(engine.draining() ? 503 : 200).result(""));
            r.get("/metrics", ctx -> ctx.contentType(Metrics.contentType()).result(metrics.scrape()));
            r.get("/v1/models", this::models);
            r.post("/v1/completions", ctx -> counted(ctx, false));
            r.post("/v1/chat/completions", ctx -> counted(ctx, true));
            r.post("/tokenize", this::tokenize);
            r.post("/detokenize", this::detokenize);
            r.post("/v1/load_lora_adapter", this::loadAdapter);
            r.post("/v1/unload_lora_adapter", this::unloadAdapter);
            r.exception(ApiError.class, (e, ctx) -> error(ctx, e));
            r.exception(HttpResponseException.class, (e, ctx) -> error(ctx, e.getStatus() == 413
                    ? new ApiError(413, "invalid_request_error", null, "request_too_large", "the request body is larger than " + opt.maxBodyBytes() + " bytes")
                    : new ApiError(e.getStatus(), "invalid_request_error", null, null, e.getMessage())));
            r.exception(Exception.class, (e, ctx) -> {
                e.printStackTrace();
                error(ctx, new ApiError(500, "server_error", null, null, "internal error: " + e));
            });
            r.error(404, ctx -> {
                if (ctx.result() == null || ctx.result().isEmpty()) error(ctx, new ApiError(404, "invalid_request_error", null, "not_found", "no route " + ctx.method() + " " + ctx.path()));
            });
            r.error(405, ctx -> error(ctx, new ApiError(405, "invalid_request_error", null, "method_not_allowed", ctx.method() + " is not allowed on " + ctx.path())));
            r.after(ctx -> metrics.request(ROUTES.contains(ctx.path()) ? ctx.path() : "other", ctx.statusCode()));
        });
        app.start(opt.host(), opt.port());
        return app.port();
    }

    public int port() { return app.port(); }

    /** The listening connector's backlog as Jetty bound it (for tests). */
    int acceptQueueSize() {
        return ((org.eclipse.jetty.server.ServerConnector) app.jettyServer().server().getConnectors()[0]).getAcceptQueueSize();
    }

    /**
     * SIGTERM: new requests get 503, running and queued ones finish (at most {@code timeoutMs}), then the server stops.
     */
    public void drainAndStop(long timeoutMs) throws InterruptedException {
        long end = System.currentTimeMillis() + timeoutMs;
        engine.drain(timeoutMs);
        while (inFlight.get() > 0 && System.currentTimeMillis() < end) Thread.sleep(5);
        close();
    }

    /** Stops listening and waits (at most 10 s) for handlers still writing; close the engine first to end their requests. */
    @Override
    public void close() {
        if (app != null) app.stop();
        long end = System.currentTimeMillis() + 10_000;
        while (inFlight.get() > 0 && System.currentTimeMillis() < end) {
            try { Thread.sleep(5); } catch (InterruptedException e) { Thread.currentThread().interrupt(); return; }
        }
    }

    // ------------------------------------------------------------------ plumbing

    private void guard(Context ctx) {
        if (opt.apiKey() != null && !ctx.path().equals("/health")) {
            String h = ctx.header("Authorization");
            if (h == null || !h.equals("Bearer " + opt.apiKey())) {
                throw new ApiError(401, "authentication_error", null, "invalid_api_key", "missing or wrong API key (send Authorization: Bearer KEY)");
            }
        }
        String len = ctx.header("Content-Length");
        if (len != null) {
            try {
                long n = Long.parseLong(len.trim());
                if (n > opt.maxBodyBytes()) {
                    discardBody(ctx, n);
                    throw new ApiError(413, "invalid_request_error", null, "request_too_large", "the request body is larger than " + opt.maxBodyBytes() + " bytes");
                }
            } catch (NumberFormatException ignored) {
                // Jetty refuses a malformed Content-Length itself
            }
        }
    }

    /**
     * Reads and drops a refused body of moderate size before the 413 goes out. Answering first and closing a connection
     * whose body is still arriving makes the kernel reset it, and a client still sending then sees the reset instead of
     * the answer. Bodies over {@link #DISCARD_LIMIT} are not read: for those the connection is closed.
     */
    private static void discardBody(Context ctx, long declared) {
        if (declared > DISCARD_LIMIT) {
            ctx.header("Connection", "close");
            return;
        }
        try {
            var in = ctx.req().getInputStream();
            byte[] buf = new byte[16384];
            long left = declared;
            while (left > 0) {
                int n = in.read(buf, 0, (int) Math.min(buf.length, left));
                if (n < 0) break;
                left -= n;
            }
        } catch (java.io.IOException ignored) {
            // the client went away; the 413 goes nowhere
        }
    }

    private static final long DISCARD_LIMIT = 16L << 20;
    /** Listen backlog, as uvicorn's default (what vLLM serves with); the kernel caps it at {@code net.core.somaxconn}. */
    static final int ACCEPT_QUEUE = 2048;

    private static ObjectNode errorBody(ApiError e) {
        ObjectNode err = JSON.createObjectNode();
        ObjectNode in = err.putObject("error");
        in.put("message", e.getMessage());
        in.put("type", e.type);
        in.put("param", e.param);
        in.put("code", e.code);
        return err;
    }

    private static void error(Context ctx, ApiError e) {
        if (e.retryAfter != null) ctx.header("Retry-After", e.retryAfter.toString());
        ctx.status(e.status).contentType("application/json").result(errorBody(e).toString());
    }

    private static JsonNode body(Context ctx) {
        byte[] b = ctx.bodyAsBytes();
        if (b.length == 0) throw ApiError.bad(null, "the request body is empty; expected a JSON object");
        JsonNode n;
        try {
            n = JSON.readTree(b);
        } catch (JsonProcessingException e) {
            throw ApiError.bad(null, "the request body is not valid JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw ApiError.bad(null, "cannot read the request body: " + e.getMessage());
        }
        if (n == null || !n.isObject()) throw ApiError.bad(null, "the request body must be a JSON object");
        return n;
    }

    private static ApiError map(ServeException e) {
        return switch (e.kind) {
            case BAD_REQUEST -> ApiError.bad(e.param, e.getMessage());
            case CONTEXT_LENGTH -> new ApiError(400, "invalid_request_error", e.param, "context_length_exceeded", e.getMessage());
            case NOT_FOUND -> new ApiError(404, "invalid_request_error", e.param, "model_not_found", e.getMessage());
            case FORBIDDEN -> new ApiError(403, "permission_error", e.param, null, e.getMessage());
            case OVERLOADED -> new ApiError(503, "server_error", null, "overloaded", e.getMessage(), 1);
            case SHUTTING_DOWN -> new ApiError(503, "server_error", null, "shutting_down", e.getMessage(), 5);
        };
    }

    private void json(Context ctx, JsonNode n) {
        ctx.contentType("application/json").result(n.toString());
    }

    // ------------------------------------------------------------------ models, tokenize

    private AdapterRegistry.Entry adapterFor(JsonNode body) {
        JsonNode m = body.get("model");
        if (m == null || m.isNull()) return null;
        if (!m.isTextual()) throw ApiError.bad("model", "model must be a string");
        String name = m.asText();
        if (name.equals(opt.servedName())) return null;
        AdapterRegistry.Entry e = engine.adapters.get(name);
        if (e == null) {
            throw new ApiError(404, "invalid_request_error", "model", "model_not_found", "The model `" + name + "` does not exist. Loaded: "
                    + String.join(", ", modelIds()));
        }
        return e;
    }

    private List<String> modelIds() {
        List<String> ids = new ArrayList<>();
        ids.add(opt.servedName());
        for (AdapterRegistry.Entry e : engine.adapters.list()) ids.add(e.name());
        return ids;
    }

    private void models(Context ctx) {
        ObjectNode out = JSON.createObjectNode();
        out.put("object", "list");
        ArrayNode data = out.putArray("data");
        ObjectNode b = data.addObject();
        b.put("id", opt.servedName());
        b.put("object", "model");
        b.put("created", created);
        b.put("owned_by", "peft4j");
        b.put("root", opt.servedName());
        b.putNull("parent");
        b.put("max_model_len", engine.contextLength(null));
        for (AdapterRegistry.Entry e : engine.adapters.list()) {
            ObjectNode a = data.addObject();
            a.put("id", e.name());
            a.put("object", "model");
            a.put("created", e.created());
            a.put("owned_by", "peft4j");
            a.put("root", e.dir().toString());
            a.put("parent", opt.servedName());
            a.put("peft_type", e.peftType());
            a.put("max_model_len", engine.contextLength(e));
        }
        json(ctx, out);
    }

    private void tokenize(Context ctx) {
        JsonNode b = body(ctx);
        AdapterRegistry.Entry a = adapterFor(b);
        boolean special = Req.bool(b, "add_special_tokens", true);
        int[] ids;
        if (b.has("messages")) {
            ids = engine.encode(ChatTemplate.render(Req.messages(b), Req.bool(b, "add_generation_prompt", true)), special);
        } else {
            ids = engine.encode(Req.string(b, "prompt", true), special && engine.tokenizer.addsBos());
        }
        ObjectNode out = JSON.createObjectNode();
        out.put("count", ids.length);
        out.put("max_model_len", engine.contextLength(a));
        ArrayNode t = out.putArray("tokens");
        for (int id : ids) t.add(id);
        json(ctx, out);
    }

    private void detokenize(Context ctx) {
        JsonNode b = body(ctx);
        adapterFor(b);
        int[] ids = Req.tokenIds(b.get("tokens"), "tokens", engine.model.config.vocabSize());
        if (ids == null) throw ApiError.bad("tokens", "tokens must be a list of token ids");
        ObjectNode out = JSON.createObjectNode();
        out.put("prompt", engine.decode(ids, false));
        json(ctx, out);
    }

    private void loadAdapter(Context ctx) {
        if (opt.runtimeAdapterRoot() == null) {
            throw new ApiError(403, "permission_error", null, null, "loading adapters at runtime is off; start the server with --allow-runtime-adapters DIR");
        }
        JsonNode b = body(ctx);
        String name = Req.string(b, "lora_name", true);
        String path = Req.string(b, "lora_path", true);
        Path root, p;
        try {
            root = opt.runtimeAdapterRoot().toRealPath();
            p = Path.of(path);
            if (!p.isAbsolute()) p = root.resolve(p);
            if (!Files.exists(p)) throw ApiError.bad("lora_path", path + ": adapter directory not found");
            p = p.toRealPath();
        } catch (IOException | java.nio.file.InvalidPathException e) {
            throw ApiError.bad("lora_path", path + ": " + e.getMessage());
        }
        if (!p.startsWith(root)) throw new ApiError(403, "permission_error", "lora_path", null, path + " is not under the allowed adapter directory " + root);
        if (name.equals(opt.servedName())) throw ApiError.bad("lora_name", "'" + name + "' is the base model's name");
        try {
            engine.adapters.load(name, p);
        } catch (ServeException e) {
            throw map(e);
        }
        ctx.contentType("text/plain").result("Success: LoRA adapter '" + name + "' added successfully.");
    }

    private void unloadAdapter(Context ctx) {
        if (opt.runtimeAdapterRoot() == null) {
            throw new ApiError(403, "permission_error", null, null, "unloading adapters at runtime is off; start the server with --allow-runtime-adapters DIR");
        }
        JsonNode b = body(ctx);
        String name = Req.string(b, "lora_name", true);
        try {
            engine.adapters.unload(name);
        } catch (ServeException e) {
            throw map(e);
        }
        ctx.contentType("text/plain").result("Success: LoRA adapter '" + name + "' removed successfully.");
    }

    // ------------------------------------------------------------------ completions

    /** One prompt of a request, submitted to the engine. */
    private record Job(int[] prompt, String promptText, Engine.Stream stream) {}

    /**
     * Counts the request as in flight until Jetty has completed its response (the last chunk written), not only until the
     * handler returns, so that a drain does not close a connection whose final bytes are still going out.
     */
    private void counted(Context ctx, boolean chat) throws Exception {
        inFlight.incrementAndGet();
        boolean untilCompleted = false;
        try {
            org.eclipse.jetty.server.Request core = org.eclipse.jetty.ee10.servlet.ServletContextRequest.getServletContextRequest(ctx.req());
            if (core != null) {
                org.eclipse.jetty.server.Request.addCompletionListener(core, failure -> inFlight.decrementAndGet());
                untilCompleted = true;
            }
        } catch (RuntimeException | LinkageError notJetty) {
            // counted until the handler returns
        }
        try {
            completions(ctx, chat);
        } finally {
            if (!untilCompleted) inFlight.decrementAndGet();
        }
    }

    private void completions(Context ctx, boolean chat) throws Exception {
        JsonNode b = body(ctx);
        AdapterRegistry.Entry adapter = adapterFor(b);
        String model = adapter == null ? opt.servedName() : adapter.name();
        int V = engine.model.config.vocabSize();
        List<int[]> prompts = new ArrayList<>();
        int[] extraEos = null;
        boolean echo = !chat && Req.bool(b, "echo", false);
        if (chat) {
            List<ChatTemplate.Message> msgs = Req.messages(b);
            String text;
            try {
                text = ChatTemplate.render(msgs, true);
            } catch (UserException e) {
                throw ApiError.bad("messages", e.getMessage());
            }
            prompts.add(engine.encode(text, engine.tokenizer.addsBos()));
            int eot = engine.tokenId("<end_of_turn>");
            if (eot >= 0) extraEos = new int[]{eot};
        } else {
            JsonNode p = b.get("prompt");
            if (p == null || p.isNull()) throw ApiError.bad("prompt", "prompt is required: a string, a list of strings, a list of token ids or a list of lists of token ids");
            if (p.isTextual()) prompts.add(engine.encode(p.asText(), engine.tokenizer.addsBos()));
            else if (p.isArray() && !p.isEmpty() && p.get(0).isTextual()) {
                for (JsonNode s : p) {
                    if (!s.isTextual()) throw ApiError.bad("prompt", "a list of prompts must hold only strings");
                    prompts.add(engine.encode(s.asText(), engine.tokenizer.addsBos()));
                }
            } else if (p.isArray() && !p.isEmpty() && p.get(0).isArray()) {
                for (JsonNode s : p) prompts.add(Req.tokenIds(s, "prompt", V));
            } else if (p.isArray()) {
                int[] ids = Req.tokenIds(p, "prompt", V);
                if (ids == null || ids.length == 0) throw ApiError.bad("prompt", "prompt must not be empty");
                prompts.add(ids);
            } else throw ApiError.bad("prompt", "prompt must be a string, a list of strings, a list of token ids or a list of lists of token ids");
            for (int[] ids : prompts) if (ids == null || ids.length == 0) throw ApiError.bad("prompt", "a prompt has no tokens");
        }
        SamplingParams sp = Req.sampling(b, chat, echo, opt.maxN(), opt.maxLogprobs(), engine.contextLength(adapter));
        boolean stream = Req.bool(b, "stream", false);
        boolean includeUsage = stream && b.path("stream_options").path("include_usage").asBoolean(false);
        List<Job> jobs = new ArrayList<>();
        try {
            for (int[] ids : prompts) {
                Engine.Stream st = engine.submit(new Engine.Request(ids, adapter, sp, extraEos));
                jobs.add(new Job(ids, echo ? engine.decode(ids, false) : "", st));
            }
        } catch (ServeException e) {
            for (Job j : jobs) j.stream().cancel();
            throw map(e);
        }
        String id = (chat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID().toString().replace("-", "");
        long now = System.currentTimeMillis() / 1000;
        if (stream) streamOut(ctx, chat, jobs, sp, id, model, now, includeUsage);
        else respond(ctx, chat, jobs, sp, id, model, now);
    }

    /** Each token's own text (special tokens kept), cached: logprobs name up to 21 tokens per generated token. */
    private final java.util.concurrent.ConcurrentHashMap<Integer, String> tokenStrings = new java.util.concurrent.ConcurrentHashMap<>();

    private String tokenString(int id) {
        String t = tokenStrings.get(id);
        if (t == null) {
            t = engine.decode(new int[]{id}, false);
            tokenStrings.put(id, t);
        }
        return t;
    }

    /** Per-choice state while collecting or streaming. */
    private final class Choice {
        final int index;
        final StringBuilder text = new StringBuilder();
        final List<TokenLogprob> lps = new ArrayList<>();
        List<TokenLogprob> promptLps;
        String finish;
        int completionTokens;
        int offset;   // text_offset of the next token

        Choice(int index, String echoText) {
            this.index = index;
            this.text.append(echoText);
        }
    }

    /**
     * Every event of every job. A client that goes away must free its sequences, but Jetty only notices a closed connection
     * when it writes: so while a long answer is computed, the 200 and JSON headers are sent after {@code heartbeatMs} (1 s)
     * and a space (whitespace before a JSON value is valid JSON) every {@code heartbeatMs}; a failed write cancels the
     * request. Returns null when the client is gone.
     */
    private List<List<Engine.Event>> collect(Context ctx, List<Job> jobs, int n, OutputStream[] committed) throws InterruptedException {
        List<List<Engine.Event>> all = new ArrayList<>();
        long next = System.currentTimeMillis() + opt.heartbeatMs();
        for (Job job : jobs) {
            List<Engine.Event> evs = new ArrayList<>();
            int finished = 0;
            while (finished < n) {
                Engine.Event e = job.stream().poll(Math.max(1, next - System.currentTimeMillis()));
                if (e != null) {
                    evs.add(e);
                    if (e instanceof Engine.Finished) finished++;
                }
                if (System.currentTimeMillis() >= next) {
                    next = System.currentTimeMillis() + opt.heartbeatMs();
                    try {
                        if (committed[0] == null) {
                            ctx.res().setStatus(200);
                            ctx.res().setContentType("application/json");
                            committed[0] = ctx.res().getOutputStream();
                        }
                        committed[0].write(' ');
                        committed[0].flush();
                    } catch (IOException ex) {
                        for (Job j : jobs) j.stream().cancel();
                        return null;
                    }
                }
            }
            all.add(evs);
        }
        return all;
    }

    private void respond(Context ctx, boolean chat, List<Job> jobs, SamplingParams sp, String id, String model, long now) throws InterruptedException {
        OutputStream[] committed = {null};
        List<List<Engine.Event>> events = collect(ctx, jobs, sp.n(), committed);
        if (events == null) return;
        ObjectNode out = JSON.createObjectNode();
        out.put("id", id);
        out.put("object", chat ? "chat.completion" : "text_completion");
        out.put("created", now);
        out.put("model", model);
        ArrayNode choices = out.putArray("choices");
        int promptTokens = 0, completionTokens = 0;
        for (int j = 0; j < jobs.size(); j++) {
            Job job = jobs.get(j);
            promptTokens += job.prompt().length;
            Choice[] cs = new Choice[sp.n()];
            for (int i = 0; i < sp.n(); i++) cs[i] = new Choice(j * sp.n() + i, job.promptText());
            for (Engine.Event ev : events.get(j)) {
                Choice c = cs[ev.choice()];
                switch (ev) {
                    case Engine.PromptLogprobs p -> c.promptLps = p.logprobs();
                    case Engine.Token t -> { if (t.logprob() != null) c.lps.add(t.logprob()); }
                    case Engine.Finished f -> {
                        c.finish = f.reason();
                        c.text.append(f.text());
                        c.completionTokens = f.completionTokens();
                    }
                }
            }
            for (Choice c : cs) {
                if (c.finish.startsWith("error")) {
                    ApiError err = new ApiError(500, "server_error", null, null, c.finish);
                    if (committed[0] == null) throw err;
                    writeRaw(committed[0], errorBody(err));   // the 200 is out already: the error object is the body
                    return;
                }
                completionTokens += c.completionTokens;
                ObjectNode o = choices.addObject();
                o.put("index", c.index);
                if (chat) {
                    ObjectNode m = o.putObject("message");
                    m.put("role", "assistant");
                    m.put("content", c.text.toString());
                    if (sp.logprobs() != null) o.set("logprobs", chatLogprobs(c.lps, sp.logprobs()));
                    else o.putNull("logprobs");
                } else {
                    o.put("text", c.text.toString());
                    if (sp.logprobs() != null) {
                        List<TokenLogprob> all = new ArrayList<>();
                        if (c.promptLps != null) all.addAll(c.promptLps);
                        all.addAll(c.lps);
                        o.set("logprobs", completionLogprobs(all, 0));
                    } else o.putNull("logprobs");
                }
                o.put("finish_reason", c.finish);
            }
        }
        ObjectNode u = out.putObject("usage");
        u.put("prompt_tokens", promptTokens);
        u.put("completion_tokens", completionTokens);
        u.put("total_tokens", promptTokens + completionTokens);
        if (committed[0] != null) writeRaw(committed[0], out);
        else json(ctx, out);
    }

    private static void writeRaw(OutputStream os, JsonNode n) {
        try {
            os.write(n.toString().getBytes(StandardCharsets.UTF_8));
            os.flush();
        } catch (IOException ignored) {
            // the client went away at the very end
        }
    }

    private ObjectNode completionLogprobs(List<TokenLogprob> lps, int offset) {
        ObjectNode o = JSON.createObjectNode();
        ArrayNode tokens = o.putArray("tokens"), tl = o.putArray("token_logprobs"), top = o.putArray("top_logprobs"), off = o.putArray("text_offset");
        for (TokenLogprob lp : lps) {
            String s = tokenString(lp.token());
            tokens.add(s);
            off.add(offset);
            offset += s.length();
            if (!lp.hasLogprob()) {
                tl.addNull();
                top.addNull();
                continue;
            }
            tl.add(lp.logprob());
            ObjectNode t = top.addObject();
            for (int i = 0; i < lp.topIds().length; i++) {
                String k = tokenString(lp.topIds()[i]);
                if (!t.has(k)) t.put(k, lp.topLogprobs()[i]);
            }
        }
        return o;
    }

    private ObjectNode chatLogprobs(List<TokenLogprob> lps, int top) {
        ObjectNode o = JSON.createObjectNode();
        ArrayNode content = o.putArray("content");
        for (TokenLogprob lp : lps) {
            ObjectNode e = content.addObject();
            tokenEntry(e, lp.token(), lp.logprob());
            ArrayNode tops = e.putArray("top_logprobs");
            for (int i = 0; i < Math.min(top, lp.topIds().length); i++) tokenEntry(tops.addObject(), lp.topIds()[i], lp.topLogprobs()[i]);
        }
        return o;
    }

    private void tokenEntry(ObjectNode e, int id, float lp) {
        String s = tokenString(id);
        e.put("token", s);
        e.put("logprob", lp);
        ArrayNode bytes = e.putArray("bytes");
        for (byte x : s.getBytes(StandardCharsets.UTF_8)) bytes.add(x & 0xff);
    }

    private void streamOut(Context ctx, boolean chat, List<Job> jobs, SamplingParams sp, String id, String model, long now, boolean includeUsage) throws Exception {
        var res = ctx.res();
        res.setStatus(200);
        res.setContentType("text/event-stream");
        res.setCharacterEncoding("utf-8");
        res.setHeader("Cache-Control", "no-cache");
        OutputStream os = res.getOutputStream();
        int promptTokens = 0, completionTokens = 0;
        try {
            for (int j = 0; j < jobs.size(); j++) {
                Job job = jobs.get(j);
                promptTokens += job.prompt().length;
                Choice[] cs = new Choice[sp.n()];
                for (int i = 0; i < sp.n(); i++) {
                    cs[i] = new Choice(j * sp.n() + i, "");
                    if (chat) {
                        ObjectNode d = JSON.createObjectNode();
                        d.put("role", "assistant");
                        d.put("content", "");
                        send(os, chunk(chat, id, model, now, cs[i].index, d, null, null));
                    } else if (!job.promptText().isEmpty() && sp.logprobs() == null) {
                        send(os, chunk(chat, id, model, now, cs[i].index, text(job.promptText()), null, null));
                        cs[i].offset = job.promptText().length();
                    }
                }
                int open = sp.n();
                while (open > 0) {
                    Engine.Event ev = job.stream().poll(1000);
                    if (ev == null) continue;
                    Choice c = cs[ev.choice()];
                    switch (ev) {
                        case Engine.PromptLogprobs p -> {
                            // echo with logprobs: the prompt text with its tokens' log-probabilities
                            ObjectNode lp = completionLogprobs(p.logprobs(), 0);
                            c.offset = job.promptText().length();
                            send(os, chunk(chat, id, model, now, c.index, text(job.promptText()), lp, null));
                        }
                        case Engine.Token t -> {
                            c.text.append(t.text());
                            JsonNode lp = null;
                            if (t.logprob() != null) {
                                if (chat) lp = chatLogprobs(List.of(t.logprob()), sp.logprobs());
                                else {
                                    lp = completionLogprobs(List.of(t.logprob()), c.offset);
                                    c.offset += tokenString(t.id()).length();
                                }
                            }
                            if (!t.text().isEmpty() || lp != null) send(os, chunk(chat, id, model, now, c.index, text(chat, t.text()), lp, null));
                        }
                        case Engine.Finished f -> {
                            open--;
                            completionTokens += f.completionTokens();
                            String rest = f.text().length() > c.text.length() ? f.text().substring(c.text.length()) : "";
                            if (f.reason().startsWith("error")) {
                                // the 200 is out already: an error event (as vLLM sends), then the end of the stream
                                send(os, errorBody(new ApiError(500, "server_error", null, null, f.reason())));
                                for (Job other : jobs) other.stream().cancel();
                                os.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
                                os.flush();
                                return;
                            }
                            send(os, chunk(chat, id, model, now, c.index, chat ? (rest.isEmpty() ? JSON.createObjectNode() : text(true, rest)) : text(rest), null, f.reason()));
                        }
                    }
                }
            }
            if (includeUsage) {
                ObjectNode u = JSON.createObjectNode();
                u.put("id", id);
                u.put("object", chat ? "chat.completion.chunk" : "text_completion");
                u.put("created", now);
                u.put("model", model);
                u.putArray("choices");
                ObjectNode us = u.putObject("usage");
                us.put("prompt_tokens", promptTokens);
                us.put("completion_tokens", completionTokens);
                us.put("total_tokens", promptTokens + completionTokens);
                send(os, u);
            }
            os.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            os.flush();
        } catch (IOException e) {
            // the client went away: free its sequences at the next step
            for (Job j : jobs) j.stream().cancel();
        }
    }

    private static ObjectNode text(String s) {
        ObjectNode d = JSON.createObjectNode();
        d.put("text", s);
        return d;
    }

    private static ObjectNode text(boolean chat, String s) {
        if (!chat) return text(s);
        ObjectNode d = JSON.createObjectNode();
        d.put("content", s);
        return d;
    }

    /** A streamed chunk; for completions {@code delta} holds {"text": ...}, for chat it is the delta object. */
    private static ObjectNode chunk(boolean chat, String id, String model, long now, int index, ObjectNode delta, JsonNode logprobs, String finish) {
        ObjectNode o = JSON.createObjectNode();
        o.put("id", id);
        o.put("object", chat ? "chat.completion.chunk" : "text_completion");
        o.put("created", now);
        o.put("model", model);
        ObjectNode c = o.putArray("choices").addObject();
        c.put("index", index);
        if (chat) c.set("delta", delta);
        else c.put("text", delta.path("text").asText(""));
        if (logprobs != null) c.set("logprobs", logprobs);
        else c.putNull("logprobs");
        if (finish != null) c.put("finish_reason", finish);
        else c.putNull("finish_reason");
        return o;
    }

    private static void send(OutputStream os, JsonNode n) throws IOException {
        os.write(("data: " + n + "\n\n").getBytes(StandardCharsets.UTF_8));
        os.flush();
    }
}
