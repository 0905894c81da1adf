package dev.peft4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.model.CausalLM;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Models;
import dev.peft4j.model.Sampler;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Measure load time, prefill tok/s (one sequence), decode tok/s (batch 1) and peak memory.")
public final class BenchCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "model directory (Hugging Face layout) or Hub repo id") Path model;
    @Option(names = "--adapter", description = "PEFT adapter directory to load with the model") Path adapter;
    @Option(names = "--prompt-len", defaultValue = "512", description = "prefill: tokens of the random prompt (default ${DEFAULT-VALUE})") int promptLen;
    @Option(names = "--decode-tokens", defaultValue = "128", description = "decode: tokens generated (default ${DEFAULT-VALUE})") int decodeTokens;
    @Option(names = "--repeat", defaultValue = "2", description = "timed repetitions (after one warm-up); the best is reported (default ${DEFAULT-VALUE})") int repeat;
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
        if (train != null) return trainBench();
        if (promptLen < 4) throw new UserException("--prompt-len: expected >= 4, got " + promptLen);
        if (decodeTokens < 1) throw new UserException("--decode-tokens: expected >= 1, got " + decodeTokens);
        long t0 = System.nanoTime();
        Gemma3LM lm = Models.load(model, adapter);
        if (promptLen > lm.maxPositions()) throw new UserException("--prompt-len: " + promptLen + " is more than max_position_embeddings " + lm.maxPositions());
        double loadS = (System.nanoTime() - t0) / 1e9;
        int V = lm.vocabSize();
        SplittableRandom rng = new SplittableRandom(1);
        int[] prompt = randomTokens(promptLen, lm.model.config.bosId(), V, rng);
        double bestPrefill = 0, bestDecode = 0, bestForward = 0;
        for (int rep = 0; rep <= repeat; rep++) {
            CausalLM.Session s = lm.newSession();
            long a = System.nanoTime();
            float[] logits = s.append(prompt);
            double pre = promptLen / ((System.nanoTime() - a) / 1e9);
            // the forward as transformers' anchor measures it: logits for every position
            long f = System.nanoTime();
            lm.logits(java.util.List.of(prompt), new int[]{0});
            double fwd = promptLen / ((System.nanoTime() - f) / 1e9);
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
                bestForward = Math.max(bestForward, fwd);
                bestDecode = Math.max(bestDecode, dec);
            }
        }
        long peakHeap = peakHeapBytes();
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
            o.put("forward_all_logits_tokens_per_s", round(bestForward));
            o.put("decode_tokens", decodeTokens);
            o.put("decode_tokens_per_s", round(bestDecode));
            o.put("decode_weight_bandwidth_gb_per_s", round(bestDecode * wBytes / 1e9));
            o.put("peak_heap_bytes", peakHeap);
            o.put("peak_rss_bytes", rss);
            System.out.println(o);
        } else {
            System.out.printf("model        %s (%s weights, %.0f MB, %d threads)%n", model, lm.model.weights.embed.dtype, wBytes / 1e6, Parallel.threads());
            System.out.printf("load         %.2f s%n", loadS);
            System.out.printf("prefill      %.1f tok/s (one %d-token sequence, cache + last logits)%n", bestPrefill, promptLen);
            System.out.printf("forward      %.1f tok/s (the same sequence, logits at every position)%n", bestForward);
            System.out.printf("decode       %.1f tok/s (batch 1, %d tokens; %.1f GB/s of weights)%n", bestDecode, decodeTokens, bestDecode * wBytes / 1e9);
            System.out.printf("peak memory  heap %.0f MB, RSS %.0f MB%n", peakHeap / 1e6, rss / 1e6);
        }
        return 0;
    }

    /**
     * Training throughput as the anchors measure it: batch x seq-len random tokens, loss on the second half of each sequence,
     * forward + backward + AdamW step. Prompt tuning: 20 virtual tokens; LoRA: r=8, alpha 16 on q_proj and v_proj.
     */
    private int trainBench() throws Exception {
        if (batch < 1) throw new UserException("--batch: expected >= 1, got " + batch);
        if (seqLen < 2) throw new UserException("--seq-len: expected >= 2, got " + seqLen);
        if (steps < 1) throw new UserException("--steps: expected >= 1, got " + steps);
        long t0 = System.nanoTime();
        dev.peft4j.model.Gemma3Model m = dev.peft4j.model.Gemma3Model.load(Models.resolve(model, "model"));
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
        double[] parts = null;   // distillation: teacher, KD, CE seconds of the best step
        for (int i = 0; i < steps; i++) {
            double[] before = distill ? ts.distillation().seconds() : null;
            long a = System.nanoTime();
            ts.step(b);
            double s = (System.nanoTime() - a) / 1e9;
            if (s < best && distill) {
                double[] after = ts.distillation().seconds();
                parts = new double[]{after[0] - before[0], after[1] - before[1], after[2] - before[2]};
            }
            best = Math.min(best, s);
        }
        double tps = batch * seqLen / best;
        long peakHeap = peakHeapBytes();
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
            System.out.printf("throughput   %.1f tokens/s%n", tps);
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
