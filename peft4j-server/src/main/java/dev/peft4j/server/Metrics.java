package dev.peft4j.server;

import dev.peft4j.serve.Engine;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.function.IntSupplier;

/**
 * The server's Prometheus metrics (Prometheus Java client, text format on {@code GET /metrics}): requests by route and
 * status, prompt and generated tokens, running and waiting sequences, sequences per batched step, time to first token and
 * per-token latency.
 */
public final class Metrics implements Engine.Listener {
    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final Counter requests = Counter.builder().name("peft4j_requests_total").help("HTTP requests by route and status").labelNames("route", "status").register(registry);
    private final Counter promptTokens = Counter.builder().name("peft4j_prompt_tokens_total").help("prompt tokens of finished requests").register(registry);
    private final Counter generatedTokens = Counter.builder().name("peft4j_generation_tokens_total").help("tokens generated").register(registry);
    private final Histogram batch = Histogram.builder().name("peft4j_batch_sequences").help("sequences per batched forward step")
            .classicOnly().classicUpperBounds(1, 2, 4, 8, 16, 32, 64, 128).register(registry);
    private final Histogram stepTime = Histogram.builder().name("peft4j_step_duration_seconds").help("duration of one batched forward step")
            .classicOnly().classicUpperBounds(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5).register(registry);
    private final Histogram ttft = Histogram.builder().name("peft4j_time_to_first_token_seconds").help("time from arrival to the first generated token")
            .classicOnly().classicUpperBounds(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30).register(registry);
    private final Histogram perToken = Histogram.builder().name("peft4j_time_per_output_token_seconds").help("time between two generated tokens of a sequence")
            .classicOnly().classicUpperBounds(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5).register(registry);

    private final Gauge running = Gauge.builder().name("peft4j_sequences_running").help("sequences being prefilled or decoded").register(registry);
    private final Gauge waiting = Gauge.builder().name("peft4j_sequences_waiting").help("sequences waiting for admission").register(registry);
    private IntSupplier runningNow = () -> 0, waitingNow = () -> 0;
    private volatile java.util.function.LongSupplier preemptedNow = () -> 0;

    {
        io.prometheus.metrics.core.metrics.CounterWithCallback.builder().name("peft4j_preemptions_total")
                .help("sequences preempted because the KV cache was full (recomputed later)")
                .callback(cb -> cb.call(preemptedNow.getAsLong())).register(registry);
    }

    /** Where the preemption count is read at scrape time. */
    public void watchPreemptions(java.util.function.LongSupplier preempted) { this.preemptedNow = preempted; }

    /** Where the running / waiting gauges are read at scrape time. */
    public void watch(IntSupplier running, IntSupplier waiting) {
        this.runningNow = running;
        this.waitingNow = waiting;
    }

    void request(String route, int status) { requests.labelValues(route, Integer.toString(status)).inc(); }

    @Override public void step(int sequences, int rows, double seconds) { batch.observe(sequences); stepTime.observe(seconds); }
    @Override public void firstToken(double seconds) { ttft.observe(seconds); generatedTokens.inc(); }
    @Override public void tokenLatency(double seconds) { perToken.observe(seconds); generatedTokens.inc(); }
    @Override public void finished(int prompt, int completion) { promptTokens.inc(prompt); }

    /** The Prometheus text exposition of every metric. */
    public byte[] scrape() {
        running.set(runningNow.getAsInt());
        waiting.set(waitingNow.getAsInt());
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            PrometheusTextFormatWriter.create().write(out, registry.scrape());
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    public static String contentType() { return PrometheusTextFormatWriter.CONTENT_TYPE; }
}
