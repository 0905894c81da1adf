package dev.peft4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.model.CausalLM;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Models;
import dev.peft4j.model.Sampler;
import dev.peft4j.tensor.Parallel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Measure load time, prefill tok/s (one sequence), decode tok/s (batch 1) and peak memory.")
public final class BenchCommand implements Callable<Integer> {
    @Option(names = "--model", required = true) Path model;
    @Option(names = "--adapter") Path adapter;
    @Option(names = "--prompt-len", defaultValue = "512") int promptLen;
    @Option(names = "--decode-tokens", defaultValue = "128") int decodeTokens;
    @Option(names = "--repeat", defaultValue = "2", description = "timed repetitions (after one warm-up); the best is reported") int repeat;
    @Option(names = "--json", description = "print one JSON object") boolean json;

    @Override
    public Integer call() throws Exception {
        long t0 = System.nanoTime();
        Gemma3LM lm = Models.load(model, adapter);
        double loadS = (System.nanoTime() - t0) / 1e9;
        int V = lm.vocabSize();
        SplittableRandom rng = new SplittableRandom(1);
        int[] prompt = new int[promptLen];
        prompt[0] = lm.model.config.bosId();
        for (int i = 1; i < promptLen; i++) prompt[i] = 3 + rng.nextInt(Math.min(V, 200_000) - 3);
        double bestPrefill = 0, bestDecode = 0;
        for (int rep = 0; rep <= repeat; rep++) {
            CausalLM.Session s = lm.newSession();
            long a = System.nanoTime();
            float[] logits = s.append(prompt);
            double pre = promptLen / ((System.nanoTime() - a) / 1e9);
            // decode from a short context so the measurement is the per-token cost at batch 1
            CausalLM.Session d = lm.newSession();
            logits = d.append(new int[]{prompt[0], prompt[1], prompt[2], prompt[3]});
            long b = System.nanoTime();
            for (int i = 0; i < decodeTokens; i++) {
                int tok = Sampler.argmax(logits, 0, V);
                logits = d.append(new int[]{tok});
            }
            double dec = decodeTokens / ((System.nanoTime() - b) / 1e9);
            if (rep > 0 || repeat == 0) {
                bestPrefill = Math.max(bestPrefill, pre);
                bestDecode = Math.max(bestDecode, dec);
            }
        }
        long peakHeap = 0;
        for (var pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == java.lang.management.MemoryType.HEAP && pool.getPeakUsage() != null) peakHeap += pool.getPeakUsage().getUsed();
        }
        long rss = rssBytes();
        long wBytes = lm.model.weights.weightBytes();
        if (json) {
            ObjectNode o = new ObjectMapper().createObjectNode();
            o.put("model", model.toString());
            o.put("threads", Parallel.threads());
            o.put("weights_dtype", lm.model.weights.embed.dtype.name());
            o.put("weights_bytes", wBytes);
            o.put("load_s", round(loadS));
            o.put("prefill_tokens", promptLen);
            o.put("prefill_tokens_per_s", round(bestPrefill));
            o.put("decode_tokens", decodeTokens);
            o.put("decode_tokens_per_s", round(bestDecode));
            o.put("decode_weight_bandwidth_gb_per_s", round(bestDecode * wBytes / 1e9));
            o.put("peak_heap_bytes", peakHeap);
            o.put("peak_rss_bytes", rss);
            System.out.println(o);
        } else {
            System.out.printf("model        %s (%s weights, %.0f MB, %d threads)%n", model, lm.model.weights.embed.dtype, wBytes / 1e6, Parallel.threads());
            System.out.printf("load         %.2f s%n", loadS);
            System.out.printf("prefill      %.1f tok/s (one %d-token sequence)%n", bestPrefill, promptLen);
            System.out.printf("decode       %.1f tok/s (batch 1, %d tokens; %.1f GB/s of weights)%n", bestDecode, decodeTokens, bestDecode * wBytes / 1e9);
            System.out.printf("peak memory  heap %.0f MB, RSS %.0f MB%n", peakHeap / 1e6, rss / 1e6);
        }
        return 0;
    }

    static double round(double v) { return Math.round(v * 100) / 100.0; }

    /** Peak resident set size (VmHWM) from /proc, or -1 where unavailable. */
    static long rssBytes() {
        try {
            for (String line : java.nio.file.Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmHWM:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
            }
        } catch (Exception ignored) { }
        return -1;
    }
}
