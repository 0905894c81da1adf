package dev.peft4j.server;

import dev.peft4j.serve.Engine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

import static org.junit.jupiter.api.Assertions.*;

/** What SIGTERM does ({@code peft4j serve}'s shutdown hook calls drainAndStop): running and queued requests finish, new ones get 503, then it stops. */
class DrainTest {
    @TempDir
    static java.nio.file.Path tmp;

    @Test
    void drainFinishesRunningRequestsRefusesNewOnesThenStops() throws Exception {
        ServerFixture f = new ServerFixture(tmp, new Engine.Config(1, 64, 1 << 16, 64), o -> o);
        try {
            List<CompletableFuture<HttpResponse<String>>> running = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                String body = "{\"prompt\":[2," + (30 + i) + "],\"max_tokens\":240,\"temperature\":0,\"ignore_eos\":true,\"logprobs\":5,\"stream\":true}";
                running.add(f.http.sendAsync(HttpRequest.newBuilder(URI.create(f.base + "/v1/completions")).timeout(Duration.ofSeconds(120))
                        .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString()));
            }
            long t0 = System.currentTimeMillis();
            while (f.engine.running() + f.engine.waiting() < 6 && System.currentTimeMillis() - t0 < 20_000) Thread.sleep(2);
            CompletableFuture<Void> drained = CompletableFuture.runAsync(() -> {
                try { f.server.drainAndStop(60_000); } catch (InterruptedException e) { throw new RuntimeException(e); }
            });
            while (!f.engine.draining()) Thread.sleep(1);
            HttpResponse<String> late = f.post("/v1/completions", "{\"prompt\":\"x\",\"max_tokens\":2}");
            assertEquals(503, late.statusCode(), late.body());
            assertTrue(late.body().contains("\"error\""));
            assertTrue(f.engine.running() + f.engine.waiting() > 0, "work was still in flight when the late request came");
            for (var r : running) {
                HttpResponse<String> resp = r.get();
                assertEquals(200, resp.statusCode());
                assertTrue(resp.body().contains("\"finish_reason\":\"length\""), resp.body());
                assertTrue(resp.body().trim().endsWith("data: [DONE]"));
            }
            drained.get();
            assertThrows(Exception.class, () -> f.get("/health"), "the server has stopped");
        } finally {
            f.engine.close();
            f.tok.close();
        }
    }
}
