package dev.peft4j.server;

import com.fasterxml.jackson.databind.JsonNode;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import dev.peft4j.serve.Engine;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Clients nobody here wrote drive the server: the official OpenAI Node library (installed by .ci/run from the committed
 * package-lock in src/test/node) and LangChain4j's OpenAI module from Java, with an API key.
 */
class RealClientsTest {
    @TempDir
    static Path tmp;
    static ServerFixture f;

    @BeforeAll
    static void setUp() throws Exception {
        f = new ServerFixture(tmp, new Engine.Config(8, 64, 1 << 16, 64), o -> o.withApiKey("sk-test").withHeartbeatMs(10));   // every answer starts with heartbeat whitespace
    }

    @AfterAll
    static void tearDown() { f.close(); }

    @Test
    void officialOpenAiNodeLibrary() throws Exception {
        Path dir = Path.of("src/test/node").toAbsolutePath();
        Assumptions.assumeTrue(Files.isDirectory(dir.resolve("node_modules/openai")),
                "skipped: the openai npm package is not installed (run: npm ci --prefix peft4j-server/src/test/node)");
        Process v;
        try {
            v = new ProcessBuilder("node", "--version").redirectErrorStream(true).start();
            v.waitFor(20, TimeUnit.SECONDS);
        } catch (java.io.IOException e) {
            Assumptions.abort("skipped: node is not on the PATH");
            return;
        }
        Process p = new ProcessBuilder("node", dir.resolve("client.mjs").toString(), f.base + "/v1", "sk-test")
                .directory(dir.toFile()).redirectErrorStream(true).start();
        CompletableFuture<String> out = CompletableFuture.supplyAsync(() -> {
            try {
                return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            } catch (java.io.IOException e) {
                return e.toString();
            }
        });
        if (!p.waitFor(180, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("node client timed out: " + out.getNow(""));
        }
        String text = out.get(10, TimeUnit.SECONDS);
        assertEquals(0, p.exitValue(), text);
        assertTrue(text.contains("ALL OK"), text);
    }

    @Test
    void withAnApiKeyEveryRouteButHealthNeedsIt() throws Exception {
        var http = java.net.http.HttpClient.newHttpClient();
        for (String path : new String[]{"/v1/models", "/metrics", "/health"}) {
            var r = http.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(f.base + path)).GET().build(),
                    java.net.http.HttpResponse.BodyHandlers.ofString());
            assertEquals(path.equals("/health") ? 200 : 401, r.statusCode(), path + " " + r.body());
            if (r.statusCode() == 401) assertEquals("invalid_api_key", ServerFixture.JSON.readTree(r.body()).get("error").get("code").asText());
        }
        var r = http.send(java.net.http.HttpRequest.newBuilder(java.net.URI.create(f.base + "/v1/completions")).header("Authorization", "Bearer nope")
                .POST(java.net.http.HttpRequest.BodyPublishers.ofString("{\"prompt\":\"x\"}")).build(), java.net.http.HttpResponse.BodyHandlers.ofString());
        assertEquals(401, r.statusCode());
        assertEquals(200, f.get("/v1/models").statusCode());    // with the key
    }

    @Test
    void langChain4jOpenAiChatFromJava() throws Exception {
        ChatModel model = OpenAiChatModel.builder().baseUrl(f.base + "/v1").apiKey("sk-test").modelName("lora")
                .temperature(0.0).maxTokens(6).build();
        String answer = model.chat("Name a color.");
        JsonNode direct = f.ok("/v1/chat/completions",
                "{\"model\":\"lora\",\"messages\":[{\"role\":\"user\",\"content\":\"Name a color.\"}],\"max_tokens\":6,\"temperature\":0}");
        assertEquals(direct.get("choices").get(0).get("message").get("content").asText(), answer);

        StreamingChatModel streaming = OpenAiStreamingChatModel.builder().baseUrl(f.base + "/v1").apiKey("sk-test").modelName("lora")
                .temperature(0.0).maxTokens(6).build();
        CompletableFuture<ChatResponse> done = new CompletableFuture<>();
        StringBuilder parts = new StringBuilder();
        streaming.chat("Name a color.", new StreamingChatResponseHandler() {
            @Override public void onPartialResponse(String partial) { parts.append(partial); }
            @Override public void onCompleteResponse(ChatResponse r) { done.complete(r); }
            @Override public void onError(Throwable t) { done.completeExceptionally(t); }
        });
        ChatResponse r = done.get(60, TimeUnit.SECONDS);
        assertEquals(answer, r.aiMessage().text());
        assertEquals(answer, parts.toString());
    }
}
