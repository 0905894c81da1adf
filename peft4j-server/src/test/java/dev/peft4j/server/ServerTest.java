package dev.peft4j.server;

import com.fasterxml.jackson.databind.JsonNode;
import dev.peft4j.serve.Engine;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.InputStream;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

import static org.junit.jupiter.api.Assertions.*;

/** The OpenAI endpoints over HTTP: shapes, adapters per request, streaming, bad input and faults. */
class ServerTest {
    @TempDir
    static java.nio.file.Path tmp;
    static ServerFixture f;

    @BeforeAll
    static void setUp() throws Exception {
        // heartbeats every 50 ms: a client gone before a non-streaming answer is noticed at once, however fast the machine
        f = new ServerFixture(tmp, new Engine.Config(8, 64, 1 << 16, 64), o -> o.withRuntimeAdapters(tmp).withMaxBodyBytes(64 * 1024).withHeartbeatMs(50));
    }

    @AfterAll
    static void tearDown() { f.close(); }

    static void assertError(HttpResponse<String> r, int status, String param, String code) throws Exception {
        assertEquals(status, r.statusCode(), r.body());
        JsonNode e = ServerFixture.JSON.readTree(r.body()).get("error");
        assertNotNull(e, r.body());
        assertTrue(e.get("message").isTextual() && !e.get("message").asText().isEmpty());
        assertTrue(e.has("type") && e.has("param") && e.has("code"), r.body());
        if (param != null) assertEquals(param, e.get("param").asText(), r.body());
        if (code != null) assertEquals(code, e.get("code").asText(), r.body());
    }

    @Test
    void modelsListTheBaseAndEveryAdapter() throws Exception {
        JsonNode m = ServerFixture.JSON.readTree(f.get("/v1/models").body());
        assertEquals("list", m.get("object").asText());
        List<String> ids = new ArrayList<>();
        for (JsonNode d : m.get("data")) {
            ids.add(d.get("id").asText());
            assertEquals("model", d.get("object").asText());
            assertTrue(d.has("owned_by"));
            if (!d.get("id").asText().equals("tiny")) assertEquals("tiny", d.get("parent").asText());
        }
        assertEquals(List.of("tiny", "pt", "lora", "lora2", "ia3", "prefix"), ids);
        assertEquals(200, f.get("/health").statusCode());
    }

    @Test
    void completionShapesLogprobsEchoAndUsage() throws Exception {
        JsonNode r = f.ok("/v1/completions", "{\"model\":\"tiny\",\"prompt\":\"Give three tips\",\"max_tokens\":6,\"temperature\":0,\"logprobs\":3,\"ignore_eos\":true}");
        assertEquals("text_completion", r.get("object").asText());
        JsonNode c = r.get("choices").get(0);
        assertEquals("length", c.get("finish_reason").asText());
        JsonNode lp = c.get("logprobs");
        assertEquals(6, lp.get("tokens").size());
        assertEquals(6, lp.get("token_logprobs").size());
        assertEquals(6, lp.get("text_offset").size());
        for (int i = 0; i < 6; i++) {
            JsonNode top = lp.get("top_logprobs").get(i);
            assertTrue(top.size() >= 1 && top.size() <= 3);
            // greedy: the chosen token is the most likely one, with the same value
            double best = Double.NEGATIVE_INFINITY;
            for (var e : top.properties()) best = Math.max(best, e.getValue().asDouble());
            assertEquals(best, lp.get("token_logprobs").get(i).asDouble(), 0.0);
        }
        int promptTokens = f.tok.encode("Give three tips", true).length;
        assertEquals(promptTokens, r.get("usage").get("prompt_tokens").asInt());
        assertEquals(6, r.get("usage").get("completion_tokens").asInt());
        assertEquals(promptTokens + 6, r.get("usage").get("total_tokens").asInt());
        // echo + logprobs with max_tokens 0: the prompt tokens, the first without a log-probability
        JsonNode e = f.ok("/v1/completions", "{\"prompt\":[2,50,60,70],\"max_tokens\":0,\"echo\":true,\"logprobs\":1}").get("choices").get(0);
        assertEquals(4, e.get("logprobs").get("token_logprobs").size());
        assertTrue(e.get("logprobs").get("token_logprobs").get(0).isNull());
        assertTrue(e.get("logprobs").get("top_logprobs").get(0).isNull());
        assertEquals(f.tok.decode(new int[]{2, 50, 60, 70}, false), e.get("text").asText());
        // a list of prompts and n: choices indexed prompt-major
        JsonNode many = f.ok("/v1/completions", "{\"prompt\":[\"a\",\"b b\"],\"max_tokens\":3,\"n\":2,\"temperature\":0.8,\"seed\":7}");
        assertEquals(4, many.get("choices").size());
        for (int i = 0; i < 4; i++) assertEquals(i, many.get("choices").get(i).get("index").asInt());
        // the same seed gives the same sample
        String q = "{\"prompt\":\"hello\",\"max_tokens\":8,\"temperature\":1.0,\"top_p\":0.9,\"top_k\":50,\"min_p\":0.01,\"repetition_penalty\":1.2,\"seed\":3,\"ignore_eos\":true}";
        assertEquals(f.ok("/v1/completions", q).get("choices").get(0).get("text"), f.ok("/v1/completions", q).get("choices").get(0).get("text"));
    }

    @Test
    void stopStringsEndTheTextBeforeThem() throws Exception {
        JsonNode r = f.ok("/v1/completions", "{\"prompt\":[2,40,41],\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true}");
        String full = r.get("choices").get(0).get("text").asText();
        assertTrue(full.length() > 4, full);
        String stop = full.substring(2, 4);
        JsonNode s = f.ok("/v1/completions", "{\"prompt\":[2,40,41],\"max_tokens\":12,\"temperature\":0,\"ignore_eos\":true,\"stop\":[" + ServerFixture.JSON.writeValueAsString(stop) + "]}");
        assertEquals("stop", s.get("choices").get(0).get("finish_reason").asText());
        assertEquals(full.substring(0, full.indexOf(stop)), s.get("choices").get(0).get("text").asText());
    }

    @Test
    void adaptersArePickedPerRequestAndChangeTheOutput() throws Exception {
        List<String> texts = new ArrayList<>();
        for (String m : List.of("tiny", "pt", "lora", "ia3", "prefix")) {
            texts.add(f.ok("/v1/completions", "{\"model\":\"" + m + "\",\"prompt\":[2,90,91,92],\"max_tokens\":8,\"temperature\":0,\"ignore_eos\":true}")
                    .get("choices").get(0).get("text").asText() + "|" + m);
        }
        assertEquals(5, texts.stream().map(t -> t.substring(0, t.indexOf('|'))).distinct().count(), texts.toString());
    }

    @Test
    void chatCompletionsWithLogprobsAndStreaming() throws Exception {
        String body = "{\"model\":\"lora\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"}],"
                + "\"max_completion_tokens\":5,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":2}";
        JsonNode r = f.ok("/v1/chat/completions", body);
        assertEquals("chat.completion", r.get("object").asText());
        JsonNode c = r.get("choices").get(0);
        assertEquals("assistant", c.get("message").get("role").asText());
        JsonNode content = c.get("logprobs").get("content");
        assertTrue(content.size() >= 1 && content.size() <= 5);
        assertEquals(2, content.get(0).get("top_logprobs").size());
        assertTrue(content.get(0).has("bytes"));
        // streaming gives the same text in deltas, then [DONE]
        HttpResponse<String> s = f.post("/v1/chat/completions", body.replace("}", ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}").replace("},,", "},"));
        assertEquals(200, s.statusCode(), s.body());
        assertTrue(s.headers().firstValue("content-type").orElse("").startsWith("text/event-stream"));
        StringBuilder text = new StringBuilder();
        String finish = null;
        boolean usage = false;
        String[] events = s.body().split("\n\n");
        assertEquals("data: [DONE]", events[events.length - 1].trim());
        for (String ev : events) {
            if (ev.trim().equals("data: [DONE]")) continue;
            JsonNode j = ServerFixture.JSON.readTree(ev.substring("data: ".length()));
            assertEquals("chat.completion.chunk", j.get("object").asText());
            if (j.has("usage") && !j.get("usage").isNull()) { usage = true; continue; }
            JsonNode ch = j.get("choices").get(0);
            text.append(ch.get("delta").path("content").asText(""));
            if (!ch.get("finish_reason").isNull()) finish = ch.get("finish_reason").asText();
        }
        assertEquals(c.get("message").get("content").asText(), text.toString());
        assertEquals(c.get("finish_reason").asText(), finish);
        assertTrue(usage);
    }

    @Test
    void completionStreamingMatchesTheWholeResponse() throws Exception {
        String body = "{\"model\":\"pt\",\"prompt\":\"Name a color\",\"max_tokens\":10,\"temperature\":0,\"ignore_eos\":true";
        String whole = f.ok("/v1/completions", body + "}").get("choices").get(0).get("text").asText();
        HttpResponse<String> s = f.post("/v1/completions", body + ",\"stream\":true}");
        StringBuilder text = new StringBuilder();
        for (String ev : s.body().split("\n\n")) {
            if (ev.isBlank() || ev.trim().equals("data: [DONE]")) continue;
            text.append(ServerFixture.JSON.readTree(ev.substring(6)).get("choices").get(0).get("text").asText());
        }
        assertEquals(whole, text.toString());
        assertTrue(s.body().trim().endsWith("data: [DONE]"));
    }

    @Test
    void tokenizeAndDetokenize() throws Exception {
        JsonNode t = f.ok("/tokenize", "{\"prompt\":\"hello world\"}");
        int[] want = f.tok.encode("hello world", true);
        assertEquals(want.length, t.get("count").asInt());
        for (int i = 0; i < want.length; i++) assertEquals(want[i], t.get("tokens").get(i).asInt());
        assertTrue(t.get("max_model_len").asInt() > 0);
        JsonNode d = f.ok("/detokenize", "{\"tokens\":" + t.get("tokens") + "}");
        assertEquals(f.tok.decode(want, false), d.get("prompt").asText());
    }

    @Test
    void badInputGetsOpenAiErrorsAndTheServerKeepsServing() throws Exception {
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", "), 400, null, null);
        assertError(f.post("/v1/completions", "[1,2]"), 400, null, null);
        assertError(f.post("/v1/completions", "{\"max_tokens\": 3}"), 400, "prompt", null);
        assertError(f.post("/v1/completions", "{\"prompt\": 5}"), 400, "prompt", null);
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"many\"}"), 400, "max_tokens", null);
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}"), 400, "temperature", null);
        assertError(f.post("/v1/chat/completions", "{\"messages\": \"hi\"}"), 400, "messages", null);
        assertError(f.post("/v1/chat/completions", "{\"messages\": [{\"role\": \"robot\", \"content\": \"hi\"}]}"), 400, "messages", null);
        assertError(f.post("/v1/completions", "{\"model\": \"nope\", \"prompt\": \"x\"}"), 404, "model", "model_not_found");
        int ctx = f.engine.contextLength(null);
        StringBuilder longPrompt = new StringBuilder("[2");
        for (int i = 0; i < ctx + 5; i++) longPrompt.append(",5");
        assertError(f.post("/v1/completions", "{\"prompt\": " + longPrompt + "], \"max_tokens\": 1}"), 400, "prompt", "context_length_exceeded");
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": -1}"), 400, "max_tokens", null);
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}"), 400, "max_tokens", null);
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", \"n\": 0}"), 400, "n", null);
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", \"n\": 1000}"), 400, "n", null);
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", \"logprobs\": 21}"), 400, "logprobs", null);
        assertError(f.post("/v1/completions", "{\"prompt\": \"x\", \"logprobs\": -1}"), 400, "logprobs", null);
        assertError(f.post("/v1/chat/completions", "{\"messages\": [{\"role\":\"user\",\"content\":\"x\"}], \"logprobs\": true, \"top_logprobs\": 99}"), 400, "top_logprobs", null);
        assertError(f.post("/v1/completions", "{\"prompt\": [2, 5, 99999]}"), 400, "prompt", null);
        assertError(f.post("/v1/completions", "{\"prompt\": [2, -1]}"), 400, "prompt", null);
        assertError(f.post("/v1/completions", "{\"prompt\": \"" + "x".repeat(70 * 1024) + "\"}"), 413, null, "request_too_large");
        assertError(f.get("/v1/nothing-here"), 404, null, null);
        assertEquals(0, f.engine.running());
        assertEquals(0, f.engine.kvReserved());
        assertEquals(200, f.post("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2}").statusCode());
    }

    @Test
    void aTooLargeBodyAlwaysGetsIts413() throws Exception {
        // the answer must reach a client that is still sending, every time (once it raced the connection's reset)
        String big = "{\"prompt\": \"" + "x".repeat(300 * 1024) + "\"}";
        for (int i = 0; i < 40; i++) assertError(f.post("/v1/completions", big), 413, null, "request_too_large");
        assertEquals(200, f.post("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2}").statusCode());
    }

    @Test
    void aClientThatDisconnectsMidStreamFreesItsSequence() throws Exception {
        // 16 choices of 240 tokens: far more than the few chunks read before hanging up
        String body = "{\"model\":\"lora\",\"prompt\":[2,5],\"max_tokens\":240,\"n\":16,\"logprobs\":20,\"temperature\":0,\"ignore_eos\":true,\"stream\":true}";
        long cancelledBefore = f.engine.cancelledSequences();
        int port = Integer.parseInt(f.base.substring(f.base.lastIndexOf(':') + 1));
        try (Socket s = new Socket("127.0.0.1", port)) {
            byte[] b = body.getBytes(StandardCharsets.UTF_8);
            s.getOutputStream().write(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " + b.length + "\r\n\r\n").getBytes(StandardCharsets.UTF_8));
            s.getOutputStream().write(b);
            s.getOutputStream().flush();
            InputStream in = s.getInputStream();
            byte[] buf = new byte[4096];
            int got = 0;
            while (got < 600) { int n = in.read(buf); if (n < 0) break; got += n; }  // a few chunks arrived
            assertTrue(f.engine.running() >= 1 || got > 0);
        }
        long t0 = System.currentTimeMillis();
        while (f.engine.running() > 0 && System.currentTimeMillis() - t0 < 20_000) Thread.sleep(20);
        assertEquals(0, f.engine.running(), "the sequence of the gone client is freed");
        assertEquals(0, f.engine.kvReserved());
        assertTrue(f.engine.cancelledSequences() > cancelledBefore, "the gone client's sequences were cancelled, not run to the end");
        assertEquals(200, f.post("/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 2}").statusCode());
    }

    @Test
    void aClientThatDisconnectsBeforeANonStreamingAnswerFreesItsSequences() throws Exception {
        String body = "{\"model\":\"ia3\",\"prompt\":[2,6],\"max_tokens\":240,\"n\":16,\"logprobs\":20,\"temperature\":0,\"ignore_eos\":true}";
        long cancelledBefore = f.engine.cancelledSequences();
        int port = Integer.parseInt(f.base.substring(f.base.lastIndexOf(':') + 1));
        try (Socket s = new Socket("127.0.0.1", port)) {
            byte[] b = body.getBytes(StandardCharsets.UTF_8);
            s.getOutputStream().write(("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " + b.length + "\r\n\r\n").getBytes(StandardCharsets.UTF_8));
            s.getOutputStream().write(b);
            s.getOutputStream().flush();
            long t0 = System.currentTimeMillis();
            while (f.engine.running() == 0 && System.currentTimeMillis() - t0 < 10_000) Thread.sleep(1);
        }
        long t0 = System.currentTimeMillis();
        while (f.engine.running() + f.engine.waiting() > 0 && System.currentTimeMillis() - t0 < 20_000) Thread.sleep(20);
        assertEquals(0, f.engine.running());
        assertTrue(f.engine.cancelledSequences() > cancelledBefore, "the gone client's sequences were cancelled, not run to the end");
    }

    @Test
    void aLongNonStreamingAnswerStartsWithWhitespaceHeartbeatsAndStaysValidJson() throws Exception {
        long t0 = System.nanoTime();
        HttpResponse<String> r = f.post("/v1/completions", "{\"model\":\"lora\",\"prompt\":[2,8],\"max_tokens\":200,\"n\":8,\"logprobs\":20,\"temperature\":0,\"ignore_eos\":true}");
        double secs = (System.nanoTime() - t0) / 1e9;
        assertEquals(200, r.statusCode());
        JsonNode j = ServerFixture.JSON.readTree(r.body());
        assertEquals(8, j.get("choices").size());
        assertEquals(1600, j.get("usage").get("completion_tokens").asInt());
        if (secs > 1.5) assertTrue(r.body().startsWith(" "), "heartbeat whitespace before the JSON of a " + secs + " s answer");
    }

    @Test
    void twoHundredRequestsAtOnceAreAllAnsweredOrToldToRetry() throws Exception {
        // the kernel queues the burst's connections (the JDK's default backlog of 50 overflowed, and once reset one)
        assertTrue(f.server.acceptQueueSize() >= 200, "listen backlog " + f.server.acceptQueueSize());
        List<CompletableFuture<HttpResponse<String>>> fs = new ArrayList<>();
        for (int i = 0; i < 200; i++) {
            String body = "{\"model\":\"" + List.of("tiny", "pt", "lora", "ia3").get(i % 4) + "\",\"prompt\":[2," + (10 + i) + "],\"max_tokens\":3,\"temperature\":0}";
            HttpRequest r = HttpRequest.newBuilder(URI.create(f.base + "/v1/completions")).timeout(Duration.ofSeconds(120))
                    .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build();
            fs.add(f.http.sendAsync(r, HttpResponse.BodyHandlers.ofString()));
        }
        int ok = 0, busy = 0;
        for (var x : fs) {
            HttpResponse<String> r = x.get();
            if (r.statusCode() == 200) {
                ok++;
                assertEquals(1, ServerFixture.JSON.readTree(r.body()).get("choices").size());
            } else {
                assertError(r, 503, null, "overloaded");
                assertTrue(r.headers().firstValue("Retry-After").isPresent());
                busy++;
            }
        }
        assertEquals(200, ok + busy);
        assertTrue(ok >= 64, "at least the queue's worth is served: " + ok);
        long t0 = System.currentTimeMillis();
        while ((f.engine.running() > 0 || f.engine.waiting() > 0) && System.currentTimeMillis() - t0 < 10_000) Thread.sleep(20);
        assertEquals(0, f.engine.running());
        assertEquals(0, f.engine.waiting());
        assertEquals(0, f.engine.kvReserved(), "every request gave back its KV reservation");
        String metrics = f.get("/metrics").body();
        assertTrue(metrics.contains("peft4j_requests_total{"), metrics);
        assertTrue(metrics.contains("peft4j_time_to_first_token_seconds_bucket"), metrics);
        assertTrue(metrics.contains("peft4j_time_per_output_token_seconds_bucket"), metrics);
        assertTrue(metrics.contains("peft4j_batch_sequences_bucket"), metrics);
        assertTrue(metrics.contains("peft4j_sequences_running"), metrics);
        assertTrue(metrics.contains("peft4j_sequences_waiting"), metrics);
        assertTrue(metrics.contains("peft4j_preemptions_total 0"), metrics);
        assertTrue(metrics.contains("peft4j_prompt_tokens_total"), metrics);
        assertTrue(metrics.contains("peft4j_generation_tokens_total"), metrics);
    }

    @Test
    void adaptersCanBeLoadedAndUnloadedAtRuntimeUnderTheAllowedDirectoryOnly() throws Exception {
        JsonNode before = f.ok("/v1/completions", "{\"model\":\"lora\",\"prompt\":[2,7],\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true}");
        HttpResponse<String> r = f.post("/v1/load_lora_adapter", "{\"lora_name\":\"again\",\"lora_path\":\"" + f.tiny.root.resolve("lora") + "\"}");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode after = f.ok("/v1/completions", "{\"model\":\"again\",\"prompt\":[2,7],\"max_tokens\":5,\"temperature\":0,\"ignore_eos\":true}");
        assertEquals(before.get("choices").get(0).get("text"), after.get("choices").get(0).get("text"));
        assertError(f.post("/v1/load_lora_adapter", "{\"lora_name\":\"again\",\"lora_path\":\"" + f.tiny.root.resolve("pt") + "\"}"), 400, "lora_name", null);
        assertError(f.post("/v1/load_lora_adapter", "{\"lora_name\":\"x\",\"lora_path\":\"/etc\"}"), 403, "lora_path", null);
        assertError(f.post("/v1/load_lora_adapter", "{\"lora_name\":\"x\",\"lora_path\":\"" + f.tiny.root.resolve("lora/../../..") + "\"}"), 403, "lora_path", null);
        assertError(f.post("/v1/load_lora_adapter", "{\"lora_name\":\"x\",\"lora_path\":\"" + f.tiny.root.resolve("model") + "\"}"), 400, "lora_path", null);
        assertEquals(200, f.post("/v1/unload_lora_adapter", "{\"lora_name\":\"again\"}").statusCode());
        assertError(f.post("/v1/completions", "{\"model\":\"again\",\"prompt\":[2,7]}"), 404, "model", "model_not_found");
        assertError(f.post("/v1/unload_lora_adapter", "{\"lora_name\":\"again\"}"), 404, "lora_name", null);
    }
}
