package dev.peft4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.model.CausalLM;
import dev.peft4j.model.Flops;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.KVCache;
import dev.peft4j.model.Quantization;
import dev.peft4j.model.Models;
import dev.peft4j.model.Sampler;
import dev.peft4j.tensor.Ceilings;
import dev.peft4j.tensor.ProductStats;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Measure this machine's ceilings (read bandwidth, float32 FMA peak) and, against them in the same run: load time,",
                "prefill and forward tok/s (one sequence), decode tok/s (batch 1 and a batch of sequences advancing together),",
                "the decode loop's allocation rate and peak memory; or (--train) training throughput."})
public final class BenchCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "model directory (Hugging Face layout) or Hub repo id") Path model;
    @Option(names = "--adapter", description = "PEFT adapter directory to load with the model") Path adapter;
    @Option(names = "--quantize", description = "quantize the weights at load: q8 (8-bit blocks of 32, as llama.cpp's Q8_0)") String quantize;
    @Option(names = "--prompt-len", defaultValue = "512", description = "prefill: tokens of the random prompt (default ${DEFAULT-VALUE})") int promptLen;
    @Option(names = "--decode-tokens", defaultValue = "128", description = "decode: tokens generated (default ${DEFAULT-VALUE})") int decodeTokens;
    @Option(names = "--decode-context", defaultValue = "4", description = "decode: tokens of context (of the random prompt) before the decoded ones; a long one adds attention over it (default ${DEFAULT-VALUE})") int decodeContext;
    @Option(names = "--decode-batch", defaultValue = "8", description = "batched decode: sequences advancing together; 0 = skip (default ${DEFAULT-VALUE})") int decodeBatch;
    @Option(names = "--repeat", defaultValue = "5", description = "timed repetitions (after one warm-up); the best is reported, fractions of the bandwidth are the median run's (default ${DEFAULT-VALUE})") int repeat;
    @Option(names = "--ceiling-mb", defaultValue = "1024", description = "buffer read to measure the memory bandwidth, MiB; 0 = skip the ceilings (default ${DEFAULT-VALUE})") int ceilingMb;
    @Option(names = "--accuracy-text", description = "with --quantize: a text file whose first --prompt-len tokens (model's tokenizer) the quantized and float models are compared on (default: the random prompt)") Path accuracyText;
    @Option(names = "--json", description = "print one JSON object") boolean json;
    @Option(names = "--train", description = "measure training instead: prompt-tuning, lora, full or distill") String train;
    @Option(names = "--teacher", description = "--train distill: the teacher model directory or Hub repo id") Path teacher;
    @Option(names = "--student", defaultValue = "full", description = "--train distill: full, lora or prompt-tuning (default ${DEFAULT-VALUE})") String student;
    @Option(names = "--teacher-cache", description = "--train distill: top-k teacher cache folder (the timed steps then find the batch cached)") Path teacherCache;
    @Option(names = "--kd-beta", defaultValue = "0.5", description = "--train distill: beta of the generalized JSD (default ${DEFAULT-VALUE})") double kdBeta;
    @Option(names = "--batch", defaultValue = "4", description = "training batch size (default ${DEFAULT-VALUE})") int batch;
    @Option(names = "--seq-len", defaultValue = "256", description = "training sequence length (default ${DEFAULT-VALUE})") int seqLen;
    @Option(names = "--steps", defaultValue = "3", description = "timed training steps after one warm-up step (default ${DEFAULT-VALUE})") int steps;

    @Override
    public Integer call() throws Exception {
        if (repeat < 0) throw new UserException("--repeat: expected >= 0, got " + repeat);
        if (ceilingMb < 0) throw new UserException("--ceiling-mb: expected >= 0, got " + ceilingMb);
        if (train != null) return trainBench();
        if (promptLen < 4) throw new UserException("--prompt-len: expected >= 4, got " + promptLen);
        if (decodeTokens < 1) throw new UserException("--decode-tokens: expected >= 1, got " + decodeTokens);
        if (decodeBatch < 0) throw new UserException("--decode-batch: expected >= 0, got " + decodeBatch);
        if (decodeContext < 4 || decodeContext > promptLen) throw new UserException("--decode-context: expected 4 to --prompt-len (" + promptLen + "), got " + decodeContext);
        long t0 = System.nanoTime();
        Gemma3LM lm = Models.load(model, adapter, false, Quantization.parse(quantize));
        if (promptLen > lm.maxPositions()) throw new UserException("--prompt-len: " + promptLen + " is more than max_position_embeddings " + lm.maxPositions());
        if (decodeContext + decodeTokens > lm.maxPositions()) throw new UserException("--decode-tokens: " + decodeTokens + " after " + decodeContext + " tokens of context do not fit in max_position_embeddings " + lm.maxPositions());
        double loadS = (System.nanoTime() - t0) / 1e9;
        int V = lm.vocabSize();
        SplittableRandom rng = new SplittableRandom(1);
        int[] prompt = randomTokens(promptLen, lm.model.config.bosId(), V, rng);
        Flops flops = new Flops(lm.model.config);
        // the work done, virtual tokens included (their rows run too), per caller token
        int nv = lm.virtualTokens();
        double prefillFlops = flops.prefill(nv + promptLen);
        double forwardFlops = flops.forwardAllLogits(nv + promptLen) - nv * flops.headPerRow();
        double decodeFlops = flops.decode(nv + lm.prefixLength() + 4, decodeTokens) / decodeTokens;
        double warmS = warmUp(lm, prompt);
        // quantized: the float model decodes in turns with it in every run, so the speed-up is judged at the same moments
        Gemma3LM ref = Quantization.parse(quantize) != Quantization.NONE ? Models.load(model, adapter, false, Quantization.NONE) : null;
        if (ref != null) warmS += warmUp(ref, prompt);
        double[] refDec = new double[repeat + 1], speedup = new double[repeat + 1], refFrac = new double[repeat + 1];
        double[] pre = new double[repeat + 1], fwd = new double[repeat + 1], dec = new double[repeat + 1], bat = new double[repeat + 1];
        // the read bandwidth is measured right before and after every slice of batch-1 decoding: on a shared host it changes
        // by up to 2x within seconds, so each slice is judged against the ceiling of its own moment
        double[] bw = new double[repeat + 1], decFrac = new double[repeat + 1];
        // the meter reads the packed weights themselves (the bytes decoding streams, where the system placed them): a separate
        // buffer can land in memory that reads at a different speed, which made fractions above 1 on a shared host
        Ceilings.Meter meter = ceilingMb > 0 ? new Ceilings.Meter(lm.model.weights.decodeMatrices()) : null;
        // quantized: the float weights' slices are judged against a meter over their own packed bytes, so the two speeds
        // can be told apart from where each model's memory lies
        Ceilings.Meter refMeter = meter != null && ref != null ? new Ceilings.Meter(ref.model.weights.decodeMatrices()) : null;
        // the FMA peak before the runs and again after them, the higher of the two: one moment's neighbour must not halve it
        double fmaBefore = meter == null ? 0 : Ceilings.fmaPeak();
        // and what the host takes from the cores (a thread stopped for tens of microseconds, many times a second)
        Ceilings.HostGaps host = meter == null ? null : Ceilings.hostGaps(1.0);
        ProductStats.Reading preProducts = null, fwdProducts = null;   // the matrix products of the best run
        long allocBytes = 0, allocTokens = 0, gcs = 0;
        double allocSeconds = 0;
        for (int rep = 0; rep <= repeat; rep++) {
            System.gc();   // each phase starts from an empty young generation: no collection lands inside a timed run
            CausalLM.Session s = lm.newSession();
            ProductStats.Reading p0 = ProductStats.FORWARD.read();
            long a = System.nanoTime();
            s.append(prompt);
            pre[rep] = promptLen / ((System.nanoTime() - a) / 1e9);
            ProductStats.Reading p1 = ProductStats.FORWARD.read().since(p0);
            if (rep > 0 || repeat == 0) if (preProducts == null || pre[rep] >= best(pre, rep)) preProducts = p1;
            // the forward as transformers' anchor measures it: logits for every position
            s = null;
            System.gc();
            ProductStats.Reading f0 = ProductStats.FORWARD.read();
            long f = System.nanoTime();
            lm.logits(java.util.List.of(prompt), new int[]{0});
            fwd[rep] = promptLen / ((System.nanoTime() - f) / 1e9);
            ProductStats.Reading f1 = ProductStats.FORWARD.read().since(f0);
            if (rep > 0 || repeat == 0) if (fwdProducts == null || fwd[rep] >= best(fwd, rep)) fwdProducts = f1;
            System.gc();
            // decode from a short context (by default) so the measurement is the per-token cost at batch 1. Batch 1, the
            // batched sequences and (quantized) the float model advance in turns, a slice of each per round, and the read
            // bandwidth is measured right before and after every batch-1 slice: a shared host's memory speed changes within
            // seconds (by up to 2x), so every figure is judged against what the memory gave at its own moment, and the ratios
            // compare runs that met the same moments
            Greedy d = new Greedy(lm, java.util.Arrays.copyOf(prompt, decodeContext), decodeTokens);
            Greedy fd = ref != null ? new Greedy(ref, java.util.Arrays.copyOf(prompt, decodeContext), decodeTokens) : null;
            Batched bd = decodeBatch > 0 ? new Batched(lm, prompt, decodeContext, decodeBatch) : null;
            int rounds = (decodeTokens + SLICE - 1) / SLICE;
            int batchedSteps = Math.max(8, decodeTokens / 4);
            Slices dec1 = new Slices(meter), ref1 = new Slices(refMeter);
            long batNs = 0;
            for (int i = 0, done = 0, bDone = 0; i < rounds; i++) {
                int k = (int) ((long) decodeTokens * (i + 1) / rounds) - done;
                int kb = (int) ((long) batchedSteps * (i + 1) / rounds) - bDone;
                dec1.run(() -> d.tokens(k));
                if (fd != null) ref1.run(() -> fd.tokens(k));
                if (bd != null && kb > 0) {
                    long b = System.nanoTime();
                    bd.steps(kb);
                    batNs += System.nanoTime() - b;
                }
                done += k;
                bDone += kb;
            }
            dec[rep] = decodeTokens / dec1.seconds();
            if (meter != null) {
                bw[rep] = dec1.bandwidth();
                decFrac[rep] = dec1.fraction(decodeTokens * lm.model.weights.weightBytes());
            }
            if (rep > 0) {
                allocBytes += dec1.allocated;
                allocTokens += decodeTokens;
                allocSeconds += dec1.seconds();
                gcs += dec1.gcs;
            }
            if (fd != null) {
                refDec[rep] = decodeTokens / ref1.seconds();
                speedup[rep] = dec[rep] / refDec[rep];
                if (refMeter != null) refFrac[rep] = ref1.fraction(decodeTokens * ref.model.weights.weightBytes());
            }
            if (bd != null) bat[rep] = (double) decodeBatch * batchedSteps / (batNs / 1e9);
        }
        long peakHeap = peakHeapBytes();
        long rss = rssBytes();
        long wBytes = lm.model.weights.weightBytes();
        dev.peft4j.model.QuantAccuracy.Result acc = null;
        if (Quantization.parse(quantize) != Quantization.NONE) {
            // the quantized model against the float one on the same tokens: top-1 agreement and KL, every position
            int[] ids = prompt;
            if (accuracyText != null) {
                if (!java.nio.file.Files.isRegularFile(accuracyText)) throw new UserException("--accuracy-text: " + accuracyText + ": file not found");
                try (dev.peft4j.tokenizer.Tokenizer tok = dev.peft4j.tokenizer.Tokenizer.load(Models.resolve(model, "model"))) {
                    int[] enc = tok.encode(java.nio.file.Files.readString(accuracyText), false);
                    ids = new int[Math.min(promptLen, enc.length + 1)];
                    ids[0] = lm.model.config.bosId();
                    System.arraycopy(enc, 0, ids, 1, ids.length - 1);
                }
            }
            acc = dev.peft4j.model.QuantAccuracy.compare(ref, lm, java.util.List.of(ids), 64);
            ref.model.weights.close();
        }
        double bestPrefill = best(pre), bestForward = best(fwd), bestDecode = best(dec), bestBatch = decodeBatch > 0 ? best(bat) : 0;
        // each batched run against the batch-1 decoding it took turns with (the same moments: a host's memory speed drifts)
        double[] batX = new double[bat.length];
        for (int i = 0; i < bat.length; i++) batX[i] = bat[i] / dec[i];
        Ceilings.Result ceil = meter == null ? null : new Ceilings.Result(median(bw), Math.max(fmaBefore, Ceilings.fmaPeak()), meter.bytes(), Parallel.threads());
        double decodeFraction = meter == null ? 0 : median(decFrac);
        if (meter != null) meter.close();
        if (refMeter != null) refMeter.close();
        double allocPerToken = allocTokens == 0 ? -1 : (double) allocBytes / allocTokens;
        if (json) {
            ObjectNode o = new ObjectMapper().createObjectNode();
            o.put("model", model.toString());
            o.put("threads", Parallel.threads());
            o.put("weights_dtype", lm.model.weights.embed.dtype.name());
            o.put("weights_bytes", wBytes);
            o.put("load_s", round(loadS));
            o.put("warm_up_s", round(warmS));
            if (ceil != null) {
                o.put("read_bandwidth_gb_per_s", round(ceil.readBytesPerS() / 1e9));
                o.put("fma_peak_gflop_per_s", round(ceil.fmaFlopPerS() / 1e9));
                o.put("ceiling_buffer_bytes", ceil.bufferBytes());
                o.put("host_gaps_fraction_of_time", round4(host.fraction()));
                o.put("host_gaps_per_s_per_thread", round(host.perSecond()));
                o.put("host_gaps_median_us", round(host.medianMicros()));
            }
            o.put("prefill_tokens", promptLen);
            phase(o, "prefill", bestPrefill, pre, prefillFlops / promptLen, ceil);
            products(o, "prefill", preProducts, promptLen / bestPrefill, ceil);
            phase(o, "forward_all_logits", bestForward, fwd, forwardFlops / promptLen, ceil);
            products(o, "forward_all_logits", fwdProducts, promptLen / bestForward, ceil);
            o.put("decode_tokens", decodeTokens);
            o.put("decode_context", decodeContext);
            phase(o, "decode", bestDecode, dec, decodeFlops, null);
            o.put("decode_weight_bandwidth_gb_per_s", round(bestDecode * wBytes / 1e9));
            if (ceil != null) {
                o.put("decode_ceiling_tokens_per_s", round(ceil.readBytesPerS() / wBytes));
                // each run against the bandwidth measured beside it; the median run
                o.put("decode_fraction_of_bandwidth", round4(decodeFraction));
                var fr = o.putArray("decode_fraction_runs");
                for (int i = repeat == 0 ? 0 : 1; i < decFrac.length; i++) fr.add(round4(decFrac[i]));
                var bwr = o.putArray("read_bandwidth_runs_gb_per_s");
                for (int i = repeat == 0 ? 0 : 1; i < bw.length; i++) bwr.add(round(bw[i] / 1e9));
            }
            if (decodeBatch > 0) {
                o.put("batched_decode_sequences", decodeBatch);
                o.put("batched_decode_tokens_per_s", round(bestBatch));
                o.put("batched_decode_speedup", round(bestBatch / bestDecode));
                var arr = o.putArray("batched_decode_runs");
                for (int i = repeat == 0 ? 0 : 1; i < bat.length; i++) arr.add(round(bat[i]));
                o.put("batched_decode_speedup_median", round(median(batX)));
                var bx = o.putArray("batched_decode_speedup_runs");
                for (int i = repeat == 0 ? 0 : 1; i < batX.length; i++) bx.add(round(batX[i]));
            }
            if (acc != null) {
                o.put("float_decode_tokens_per_s", round(best(refDec)));
                var fr = o.putArray("float_decode_runs");
                for (int i = repeat == 0 ? 0 : 1; i < refDec.length; i++) fr.add(round(refDec[i]));
                if (refMeter != null) {
                    var rf = o.putArray("float_decode_fraction_runs");
                    for (int i = repeat == 0 ? 0 : 1; i < refFrac.length; i++) rf.add(round4(refFrac[i]));
                }
                o.put("quantized_decode_speedup", round(median(speedup)));
                var sr = o.putArray("quantized_decode_speedup_runs");
                for (int i = repeat == 0 ? 0 : 1; i < speedup.length; i++) sr.add(round(speedup[i]));
                o.put("quantized_top1_agreement", round4(acc.top1Agreement()));
                o.put("quantized_mean_kl", acc.meanKl());
                o.put("quantized_max_kl", acc.maxKl());
                o.put("quantized_positions", acc.positions());
                o.put("float_median_top1_margin", acc.medianMargin());
                o.put("quantized_logit_noise_rms", acc.logitNoise());
                o.put("quantized_max_flip_margin", acc.maxFlipMargin());
                o.put("quantized_decided_positions", acc.decided());
                o.put("quantized_decided_top1_agreement", round4(acc.decidedAgreement()));
            }
            o.put("decode_alloc_bytes_per_token", Math.round(allocPerToken));
            o.put("decode_alloc_mb_per_s", allocSeconds == 0 ? -1 : round(allocBytes / allocSeconds / 1e6));
            o.put("decode_gc_count", gcs);
            o.put("peak_heap_bytes", peakHeap);
            o.put("max_heap_bytes", Runtime.getRuntime().maxMemory());
            o.put("peak_rss_bytes", rss);
            System.out.println(o);
        } else {
            System.out.printf("model        %s (%s weights, %.0f MB, %d threads)%n", model, lm.model.weights.embed.dtype, wBytes / 1e6, Parallel.threads());
            System.out.printf("load         %.2f s (then %.1f s of JIT warm-up)%n", loadS, warmS);
            if (ceil != null) {
                System.out.printf("ceilings     read bandwidth %.1f GB/s (a vector sum over the packed weights, right before and after each batch-1 slice; each run's, weighted by time: %s GB/s), float32 FMA peak %.0f GFLOP/s (this run, %d threads)%n",
                        ceil.readBytesPerS() / 1e9, runs(scaled(bw, 1e-9)), ceil.fmaFlopPerS() / 1e9, ceil.threads());
                System.out.printf("host         stops each thread %.0f times a second for a median %.0f µs: %.1f%% of its time (a product both threads share waits for the later one)%n",
                        host.perSecond(), host.medianMicros(), 100 * host.fraction());
            }
            System.out.printf("prefill      %.1f tok/s (one %d-token sequence, cache + last logits; %.3f GFLOP/token)%s%n", bestPrefill, promptLen,
                    prefillFlops / promptLen / 1e9, gflops(bestPrefill, prefillFlops / promptLen, ceil));
            System.out.println(productsLine(preProducts, promptLen / bestPrefill, ceil));
            System.out.printf("forward      %.1f tok/s (the same sequence, logits at every position; %.3f GFLOP/token)%s%n", bestForward,
                    forwardFlops / promptLen / 1e9, gflops(bestForward, forwardFlops / promptLen, ceil));
            System.out.println(productsLine(fwdProducts, promptLen / bestForward, ceil));
            System.out.printf("decode       %.1f tok/s (batch 1, %d tokens after %d of context; %.1f GB/s of weights%s)%n", bestDecode, decodeTokens, decodeContext, bestDecode * wBytes / 1e9,
                    ceil == null ? "" : String.format("; each run %s%% of the read bandwidth, every slice of %d tokens against the bandwidth measured right before and after it; median %.0f%%; ceiling %.1f tok/s", runs(scaled(decFrac, 100)), SLICE, 100 * decodeFraction, ceil.readBytesPerS() / wBytes));
            if (decodeBatch > 0) {
                System.out.printf("batched      %.1f tok/s (%d sequences advancing together, all tokens; %.2fx batch 1; each run against the batch-1 decoding it took turns with %s, median %.2fx)%n",
                        bestBatch, decodeBatch, bestBatch / bestDecode, runs(batX, "%.2f"), median(batX));
            }
            System.out.printf("allocation   %.0f bytes/token in the decode loop (%.2f MB/s, %d GCs)%s%n", allocPerToken,
                    allocSeconds == 0 ? 0 : allocBytes / allocSeconds / 1e6, gcs,
                    allocPerToken > 256 * 1024 ? " -- a kernel runs outside C2's vector intrinsics (boxed vectors)" : "");
            if (acc != null) {
                System.out.printf("vs float     %s decode %.2fx the float weights' (median of runs %s; the float weights decoding in turns with them: %s tok/s%s)%n", quantize,
                        median(speedup), runs(speedup, "%.2f"), runs(refDec), refMeter == null ? "" : String.format(", each run %s%% of the bandwidth of its own weights", runs(scaled(refFrac, 100))));
                System.out.printf("accuracy     %s vs float: top-1 agreement %.2f%% of %d positions, mean KL %.2e nats (max %.2e); float's median top-1 margin %.3g%n", quantize,
                        100 * acc.top1Agreement(), acc.positions(), acc.meanKl(), acc.maxKl(), acc.medianMargin());
                System.out.printf("             " + quantize + " logit noise (RMS) %.2e; every changed top-1 had a float margin <= %.3g; positions with a margin >= 4x the noise: %d, agreement there %.2f%%%n",
                        acc.logitNoise(), acc.maxFlipMargin(), acc.decided(), 100 * acc.decidedAgreement());
            }
            System.out.printf("runs         prefill %s, forward %s, decode %s tok/s%n", runs(pre), runs(fwd), runs(dec));
            System.out.printf("peak memory  heap %.0f MB (max %.0f MB), RSS %.0f MB%n", peakHeap / 1e6, Runtime.getRuntime().maxMemory() / 1e6, rss / 1e6);
        }
        return 0;
    }

    /**
     * Runs every phase until the JIT has compiled the kernels: the Vector API only reaches its speed in C2-compiled code (in
     * the interpreter and C1 every vector is a heap object, so a not-yet-compiled kernel allocates megabytes per token and runs
     * several times slower). On a busy machine C2 can take many seconds, so decoding is repeated in chunks until two
     * consecutive chunks agree within 10% with the decode loop allocating little (or four when it allocates), or 30 s have
     * passed. Returns the seconds spent.
     */
    private double warmUp(Gemma3LM lm, int[] prompt) {
        long t0 = System.nanoTime();
        int V = lm.vocabSize();
        lm.newSession().append(prompt);
        lm.logits(java.util.List.of(java.util.Arrays.copyOf(prompt, Math.min(prompt.length, 64))), new int[]{0});
        if (decodeBatch > 0) new Batched(lm, prompt, decodeContext, decodeBatch).steps(8);
        double last = 0;
        int chunk = 32, agreed = 0;
        while ((System.nanoTime() - t0) / 1e9 < 30) {
            CausalLM.Session d = lm.newSession();
            float[] logits = d.append(java.util.Arrays.copyOf(prompt, decodeContext));
            long al0 = allocatedBytes();
            long a = System.nanoTime();
            for (int i = 0; i < chunk && decodeContext + 1 + i < lm.maxPositions(); i++) logits = d.append(new int[]{Sampler.argmax(logits, 0, V)});
            double rate = chunk / ((System.nanoTime() - a) / 1e9);
            long perToken = (allocatedBytes() - al0) / chunk;
            agreed = last > 0 && Math.abs(rate - last) <= 0.1 * Math.max(rate, last) ? agreed + 1 : 0;
            last = rate;
            if (agreed >= 2 && perToken < 256 * 1024) break;
            if (agreed >= 4) break;   // stable but allocating: reported as the allocation rate
        }
        return (System.nanoTime() - t0) / 1e9;
    }

    /** Tokens of batch-1 decoding per slice: with a bandwidth reading before and after each (see {@link #call}). */
    static final int SLICE = 16;

    /**
     * Timed slices of decoding, each between two passes of a meter (null: none): their time, the bytes the memory could
     * have given meanwhile (Σ slice time x the faster of its two readings), and the heap allocated and collections inside.
     */
    static final class Slices {
        private final Ceilings.Meter meter;
        private long ns;
        private double allowed;
        long allocated, gcs;

        Slices(Ceilings.Meter meter) { this.meter = meter; }

        void run(Runnable slice) {
            double m0 = meter != null ? meter.read(1) : 0;
            long gc0 = gcCount(), al0 = allocatedBytes();
            long b = System.nanoTime();
            slice.run();
            long el = System.nanoTime() - b;
            allocated += allocatedBytes() - al0;
            gcs += gcCount() - gc0;
            ns += el;
            if (meter != null) allowed += el / 1e9 * Math.max(m0, meter.read(1));
        }

        double seconds() { return ns / 1e9; }

        /** The slices' bandwidths weighted by their time, bytes/s. */
        double bandwidth() { return allowed / seconds(); }

        /** {@code bytes} streamed over what the memory could have given in the same time. */
        double fraction(long bytes) { return bytes / allowed; }
    }

    /** Greedy decoding at batch 1 after a context, advanced a slice at a time. */
    static final class Greedy {
        private final CausalLM.Session s;
        private final int V;
        private float[] logits;

        Greedy(Gemma3LM lm, int[] ctx, int tokens) {
            V = lm.vocabSize();
            s = lm.newSession();
            s.reserve(ctx.length + tokens);
            logits = s.append(ctx);
        }

        void tokens(int k) {
            for (int i = 0; i < k; i++) logits = s.append(new int[]{Sampler.argmax(logits, 0, V)});
        }
    }

    /**
     * {@code n} sequences decoding together: each starts from a {@code context}-token context of its own (the prompt's first
     * token, then its tokens from position 1 + s on, cyclically), then every step runs one token of each sequence through
     * one {@link Gemma3Model#forward} call (the weights are read once per step), advanced a few steps at a time.
     */
    static final class Batched {
        private final Gemma3Model m;
        private final int n, V;
        private final KVCache[] caches;
        private final int[] next, all;
        private final float[] rows;
        private final java.util.List<Gemma3Model.Input> step;
        private final int[][] ids;

        Batched(Gemma3LM lm, int[] prompt, int context, int n) {
            this.m = lm.model;
            this.n = n;
            this.V = lm.vocabSize();
            int H = m.config.hidden();
            caches = new KVCache[n];
            next = new int[n];
            float[] row = new float[V];
            for (int s = 0; s < n; s++) {
                caches[s] = lm.newCache();
                int[] ctx = new int[context];
                ctx[0] = prompt[0];
                for (int i = 1; i < context; i++) ctx[i] = prompt[(i + s) % prompt.length];
                float[] h = m.forward(java.util.List.of(new Gemma3Model.Input(caches[s], lm.virtualVectors(), ctx)), null);
                m.logits(h, new int[]{h.length / H - 1}, row);
                next[s] = Sampler.argmax(row, 0, V);
            }
            rows = new float[n * V];
            all = new int[n];
            for (int s = 0; s < n; s++) all[s] = s;
            step = new java.util.ArrayList<>(n);
            ids = new int[n][1];
        }

        void steps(int k) {
            for (int i = 0; i < k; i++) {
                step.clear();
                for (int s = 0; s < n; s++) {
                    ids[s][0] = next[s];
                    step.add(new Gemma3Model.Input(caches[s], null, ids[s]));
                }
                float[] h = m.forward(step, null);
                m.logits(h, all, rows);
                // the rows' greedy picks over the kernel threads, as the serving engine takes them
                Parallel.forChunks(n, 1, (a, b) -> {
                    for (int s = a; s < b; s++) next[s] = Sampler.argmax(rows, s * V, V);
                });
            }
        }
    }

    private static void phase(ObjectNode o, String name, double best, double[] runs, double flopsPerToken, Ceilings.Result ceil) {
        o.put(name + "_tokens_per_s", round(best));
        o.put(name + "_gflop_per_token", round4(flopsPerToken / 1e9));
        o.put(name + "_gflop_per_s", round(best * flopsPerToken / 1e9));
        if (ceil != null) o.put(name + "_fraction_of_fma_peak", round4(best * flopsPerToken / ceil.fmaFlopPerS()));
        var arr = o.putArray(name + "_runs");
        for (int i = runs.length == 1 ? 0 : 1; i < runs.length; i++) arr.add(round(runs[i]));
    }

    private static String gflops(double tps, double flopsPerToken, Ceilings.Result ceil) {
        double g = tps * flopsPerToken;
        return String.format(", %.0f GFLOP/s%s", g / 1e9, ceil == null ? "" : String.format(" = %.0f%% of the FMA peak", 100 * g / ceil.fmaFlopPerS()));
    }

    /** Best of runs[1..upTo] (runs[0] when it is the only one). */
    private static double best(double[] runs, int upTo) {
        double b = 0;
        for (int i = runs.length == 1 ? 0 : 1; i <= upTo; i++) b = Math.max(b, runs[i]);
        return b;
    }

    /** The matrix products' own rate in a phase (the best run's): GFLOP/s, fraction of the FMA peak, share of the time. */
    private static void products(ObjectNode o, String name, ProductStats.Reading r, double phaseSeconds, Ceilings.Result ceil) {
        if (r == null || r.nanos() == 0) return;
        o.put(name + "_products_gflop_per_s", round(r.flopPerS() / 1e9));
        o.put(name + "_products_share_of_time", round4(r.seconds() / phaseSeconds));
        if (ceil != null) o.put(name + "_products_fraction_of_fma_peak", round4(r.flopPerS() / ceil.fmaFlopPerS()));
    }

    static String productsLine(ProductStats.Reading r, double phaseSeconds, Ceilings.Result ceil) {
        if (r == null || r.nanos() == 0) return "";
        return String.format("  products   %.0f GFLOP/s%s (matrix products alone, %.0f%% of the time)",
                r.flopPerS() / 1e9, ceil == null ? "" : String.format(" = %.0f%% of the FMA peak", 100 * r.flopPerS() / ceil.fmaFlopPerS()),
                100 * r.seconds() / phaseSeconds);
    }

    /** Median of the timed repetitions (the first run is the JIT warm-up, unless it is the only one). */
    private static double median(double[] runs) {
        double[] r = java.util.Arrays.copyOfRange(runs, runs.length == 1 ? 0 : 1, runs.length);
        java.util.Arrays.sort(r);
        return r.length % 2 == 1 ? r[r.length / 2] : (r[r.length / 2 - 1] + r[r.length / 2]) / 2;
    }

    private static double[] scaled(double[] r, double f) {
        double[] o = r.clone();
        for (int i = 0; i < o.length; i++) o[i] *= f;
        return o;
    }

    /** Best of the timed repetitions (the first run is the JIT warm-up, unless it is the only one). */
    private static double best(double[] runs) {
        return best(runs, runs.length - 1);
    }

    /** The timed runs of a phase whose first entry was the warm-up (unless it is the only one). */
    private static String runs(double[] r) {
        return runs(r, "%.0f");
    }

    private static String runs(double[] r, String format) {
        StringBuilder sb = new StringBuilder("[");
        for (int i = r.length == 1 ? 0 : 1; i < r.length; i++) sb.append(sb.length() > 1 ? " " : "").append(String.format(format, r[i]));
        return sb.append(']').toString();
    }

    /** Bytes allocated on the heap by all threads so far (HotSpot's per-thread counters), or -1 where unsupported. */
    static long allocatedBytes() {
        if (ManagementFactory.getThreadMXBean() instanceof com.sun.management.ThreadMXBean t && t.isThreadAllocatedMemorySupported()) {
            return t.getTotalThreadAllocatedBytes();
        }
        return -1;
    }

    static long gcCount() {
        long n = 0;
        for (var gc : ManagementFactory.getGarbageCollectorMXBeans()) n += Math.max(0, gc.getCollectionCount());
        return n;
    }

    static double round4(double v) { return Math.round(v * 10000) / 10000.0; }

    /**
     * Training throughput as the anchors measure it: batch x seq-len random tokens, loss on the second half of each sequence,
     * forward + backward + AdamW step. Prompt tuning: 20 virtual tokens; LoRA: r=8, alpha 16 on q_proj and v_proj.
     */
    private int trainBench() throws Exception {
        if (batch < 1) throw new UserException("--batch: expected >= 1, got " + batch);
        if (seqLen < 2) throw new UserException("--seq-len: expected >= 2, got " + seqLen);
        if (steps < 1) throw new UserException("--steps: expected >= 1, got " + steps);
        long t0 = System.nanoTime();
        Quantization quant = Quantization.parse(quantize);
        if (quant != Quantization.NONE && train.equals("full")) throw new UserException("--quantize: full fine-tuning trains every weight in float32; quantize a frozen base only (--train lora or prompt-tuning)");
        dev.peft4j.model.Gemma3Model m = dev.peft4j.model.Gemma3Model.load(Models.resolve(model, "model"), quant);
        double loadS = (System.nanoTime() - t0) / 1e9;
        int H = m.config.hidden(), V = m.config.vocabSize();
        SplittableRandom rng = new SplittableRandom(7);
        float[] prompt = null;
        dev.peft4j.train.Params params;
        boolean distill = train.equals("distill");
        if (distill && teacher == null) throw new UserException("--teacher: --train distill needs a teacher model");
        if (!distill && teacher != null) throw new UserException("--teacher: only used with --train distill");
        String kind = distill ? student : train;
        if (distill && !java.util.List.of("full", "lora", "prompt-tuning").contains(kind)) {
            throw new UserException("--student: expected full, lora or prompt-tuning, got '" + kind + "'");
        }
        switch (kind) {
            case "prompt-tuning" -> {
                prompt = dev.peft4j.peft.PromptInit.random(20, H, rng);
                params = dev.peft4j.train.Params.promptTuning(prompt, H);
            }
            case "lora" -> {
                for (dev.peft4j.model.Linear l : m.weights.linears()) {
                    if (!l.name.endsWith("q_proj") && !l.name.endsWith("v_proj")) continue;
                    l.lora = new dev.peft4j.model.Linear.Lora(8, 2f, dev.peft4j.peft.LoraInit.kaimingUniformA(8, l.in(), rng),
                            new float[l.out() * 8], l.in(), l.out());
                }
                params = dev.peft4j.train.Params.lora(m);
            }
            case "full" -> params = dev.peft4j.train.Params.full(m);
            default -> throw new UserException("--train: expected prompt-tuning, lora, full or distill, got '" + train + "'");
        }
        dev.peft4j.train.TrainStep ts = new dev.peft4j.train.TrainStep(m, params, prompt, dev.peft4j.train.AdamW.defaults(0.0),
                dev.peft4j.train.LrSchedule.of("constant", 1e-4, 0, 1000), 1.0);
        if (distill) {   // alpha 0.5, T 1, the teacher on every batch (no cache)
            var t = dev.peft4j.model.Gemma3Model.load(Models.resolve(teacher, "teacher"));
            ts.distillation(new dev.peft4j.train.Distillation(t, m, 0.5, kdBeta, 1.0, false,
                    teacherCache == null ? null : dev.peft4j.train.TeacherCache.open(teacherCache, t, 1.0, 64), 64));
        }
        java.util.List<dev.peft4j.train.TrainStep.Example> b = new java.util.ArrayList<>();
        for (int i = 0; i < batch; i++) {
            int[] ids = randomTokens(seqLen, m.config.bosId(), V, rng), labels = new int[seqLen];
            for (int t = 0; t < seqLen; t++) labels[t] = t >= seqLen / 2 ? ids[t] : -100;
            b.add(new dev.peft4j.train.TrainStep.Example(ids, labels));
        }
        ts.step(b); // warm-up (JIT)
        double best = Double.MAX_VALUE;
        double[] runs = new double[steps];
        double[] parts = null;   // distillation: teacher, KD, CE seconds of the best step
        ProductStats.Reading fwdP = null, bwdP = null;   // the best step's forward and backward matrix products
        for (int i = 0; i < steps; i++) {
            double[] before = distill ? ts.distillation().seconds() : null;
            System.gc();
            ProductStats.Reading fw0 = ProductStats.FORWARD.read(), bw0 = ProductStats.BACKWARD.read();
            long a = System.nanoTime();
            ts.step(b);
            double s = (System.nanoTime() - a) / 1e9;
            if (s < best) {
                fwdP = ProductStats.FORWARD.read().since(fw0);
                bwdP = ProductStats.BACKWARD.read().since(bw0);
            }
            runs[i] = batch * seqLen / s;
            if (s < best && distill) {
                double[] after = ts.distillation().seconds();
                parts = new double[]{after[0] - before[0], after[1] - before[1], after[2] - before[2]};
            }
            best = Math.min(best, s);
        }
        double tps = batch * seqLen / best;
        long peakHeap = peakHeapBytes();
        // model FLOPs of the step (see Flops): rows include the virtual tokens; targets = labeled positions after the shift
        int nv = prompt == null ? 0 : prompt.length / H;
        long targets = (long) batch * (seqLen - seqLen / 2 - 1);
        Flops fl = new Flops(m.config);
        int loraModules = train.equals("lora") ? 2 : 0;   // q_proj, v_proj
        double loraInOut = ((double) m.config.hidden() + m.config.heads() * m.config.headDim() + m.config.hidden() + m.config.kvHeads() * m.config.headDim()) / 2;
        double stepFlops = fl.trainStep(batch, seqLen + nv, targets, train, 8, loraModules, loraInOut);
        double fwdFlops = fl.trainForward(batch, seqLen + nv, targets);
        double gflops = stepFlops / best / 1e9;
        Ceilings.Result ceil = ceilingMb > 0 ? Ceilings.measure((long) ceilingMb << 20, 3) : null;
        if (json) {
            ObjectNode o = new ObjectMapper().createObjectNode();
            o.put("model", model.toString());
            o.put("method", train);
            if (distill) {
                o.put("teacher_forward_s", round(parts[0]));
                o.put("kd_loss_s", round(parts[1]));
                o.put("ce_loss_s", round(parts[2]));
                o.put("student", student);
                o.put("teacher", teacher.toString());
                o.put("kd_beta", kdBeta);
                o.put("teacher_cache", teacherCache != null);
            }
            o.put("threads", Parallel.threads());
            o.put("batch", batch);
            o.put("seq_len", seqLen);
            o.put("trainable_parameters", params.numel());
            o.put("load_s", round(loadS));
            o.put("step_s", round(best));
            o.put("train_tokens_per_s", round(tps));
            o.put("quantize", quant.id());
            o.put("weights_dtype", m.weights.embed.dtype.name());
            o.put("train_gflop_per_step", round(stepFlops / 1e9));
            o.put("train_gflop_per_token", round4(stepFlops / (batch * seqLen) / 1e9));
            o.put("train_backward_over_forward", round(stepFlops / fwdFlops - 1));
            o.put("train_gflop_per_s", round(gflops));
            if (ceil != null) {
                o.put("read_bandwidth_gb_per_s", round(ceil.readBytesPerS() / 1e9));
                o.put("fma_peak_gflop_per_s", round(ceil.fmaFlopPerS() / 1e9));
                o.put("train_fraction_of_fma_peak", round4(gflops * 1e9 / ceil.fmaFlopPerS()));
            }
            products(o, "train_forward", fwdP, best, ceil);
            products(o, "train_backward", bwdP, best, ceil);
            var arr = o.putArray("train_runs");
            for (double r : runs) arr.add(round(r));
            o.put("peak_heap_bytes", peakHeap);
            o.put("max_heap_bytes", Runtime.getRuntime().maxMemory());
            o.put("peak_rss_bytes", rssBytes());
            System.out.println(o);
        } else {
            System.out.printf("model        %s (%s weights, %d threads)%n", model, m.weights.embed.dtype, Parallel.threads());
            System.out.printf("training     %s, %s trainable parameters, batch %d x %d, loss on the second half%n",
                    distill ? "distill (" + student + " student, teacher " + teacher + ", beta " + kdBeta + (teacherCache != null ? ", warm top-64 cache" : "") + ")" : train, params.numel(), batch, seqLen);
            System.out.printf("step         %.2f s (best of %d)%n", best, steps);
            if (distill) System.out.printf("  of which   teacher forward %.2f s, KD loss+gradient %.2f s, CE loss+gradient %.2f s%n", parts[0], parts[1], parts[2]);
            System.out.printf("throughput   %.1f tokens/s (runs %s)%n", tps, runs(java.util.stream.DoubleStream.concat(java.util.stream.DoubleStream.of(0), java.util.stream.DoubleStream.of(runs)).toArray()));
            System.out.printf("FLOPs        %.1f GFLOP/step = %.3f GFLOP/token (forward + backward %.2fx forward: model FLOPs, see Flops), %.0f GFLOP/s%s%n",
                    stepFlops / 1e9, stepFlops / (batch * seqLen) / 1e9, stepFlops / fwdFlops, gflops,
                    ceil == null ? "" : String.format(" = %.0f%% of the FMA peak %.0f GFLOP/s (this run)", 100 * gflops * 1e9 / ceil.fmaFlopPerS(), ceil.fmaFlopPerS() / 1e9));
            System.out.println(productsLine(fwdP, best, ceil).replace("  products   ", "  forward products  "));
            System.out.println(productsLine(bwdP, best, ceil).replace("  products   ", "  backward products ").replace("matrix products alone", "dx = dy·W and dW += dyᵀ·x alone"));
            System.out.printf("peak memory  heap %.0f MB (max %.0f MB), RSS %.0f MB%n", peakHeap / 1e6, Runtime.getRuntime().maxMemory() / 1e6, rssBytes() / 1e6);
        }
        return 0;
    }

    /** BOS, then random ids past the special tokens 0..2 (within the first 200,000 of the vocabulary). */
    static int[] randomTokens(int n, int bos, int vocab, SplittableRandom rng) {
        int[] ids = new int[n];
        ids[0] = bos;
        for (int i = 1; i < n; i++) ids[i] = 3 + rng.nextInt(Math.min(vocab, 200_000) - 3);
        return ids;
    }

    static double round(double v) { return Math.round(v * 100) / 100.0; }

    /** Sum of the peak usage of the heap's memory pools. */
    static long peakHeapBytes() {
        long peak = 0;
        for (var pool : ManagementFactory.getMemoryPoolMXBeans()) {
            if (pool.getType() == java.lang.management.MemoryType.HEAP && pool.getPeakUsage() != null) peak += pool.getPeakUsage().getUsed();
        }
        return peak;
    }

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
