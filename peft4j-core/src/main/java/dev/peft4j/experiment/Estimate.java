package dev.peft4j.experiment;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.data.DataConfig;
import dev.peft4j.data.Tokenized;
import dev.peft4j.data.TrainingData;
import dev.peft4j.eval.Evaluator;
import dev.peft4j.eval.HarnessLM;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.peft.LoraInit;
import dev.peft4j.peft.PromptInit;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.train.AdamW;
import dev.peft4j.train.Distillation;
import dev.peft4j.train.LrSchedule;
import dev.peft4j.train.Params;
import dev.peft4j.train.TrainConfig;
import dev.peft4j.train.TrainStep;
import dev.peft4j.util.Fmt;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/**
 * The duration estimate of an experiment's plan from measured throughput: training tokens of each run (steps x batch x grad
 * accumulation x the data's mean example length) over the tokens/s of that kind of run — taken from a finished run of the
 * experiment when there is one, else measured with one timed training step (after one warm-up step) on a real batch with the
 * base model (and the teacher); evaluation tokens (the requests' distinct contexts and continuations) over the measured
 * forward tokens/s. An estimate: the machine's load, sequence lengths and JIT warm-up all move it.
 */
final class Estimate {
    private final Map<String, Double> train = new HashMap<>();
    private double evalS;
    private String basis = "not measured";

    double trainS(Recipe.Run r) { return train.getOrDefault(r.name(), 0.0); }
    double evalS() { return evalS; }
    String basis() { return basis; }

    static Estimate of(Recipe recipe, Experiment exp, Path baseDir, DataConfig data, Evaluator.Prepared prep, PrintStream log) {
        Estimate e = new Estimate();
        if (!Files.isDirectory(baseDir) || (data.data != null && !Files.isRegularFile(data.data))) {
            e.basis = "not measured: the base model or data are built on the first run";
            return e;
        }
        log.println("measuring throughput for the estimate...");
        TrainingData td = exp.trainingData(baseDir, data);
        int n = Math.max(1, td.train().size());
        double meanLen = td.train().stream().mapToInt(Tokenized::length).average().orElse(1);
        Map<String, Double> tps = new HashMap<>();
        ObjectMapper json = new ObjectMapper();
        List<String> measured = new ArrayList<>(), reused = new ArrayList<>();
        double fwdTps = 0;
        List<TrainStep.Example> batch = new ArrayList<>();
        for (int i = 0; i < Math.min(data.batchSize, td.train().size()); i++) {
            Tokenized t = td.train().get(i);
            batch.add(new TrainStep.Example(t.inputIds(), t.labels()));
        }
        int batchTokens = batch.stream().mapToInt(x -> x.ids().length).sum();
        for (Recipe.Run r : recipe.runs) {
            String kind = r.method() + (r.method().equals("distill") ? "/" + r.trained() : "");
            Double v = null;
            Path summary = exp.runDir(r).resolve("train_summary.json");
            if (Files.isRegularFile(summary)) {
                try {
                    JsonNode s = json.readTree(summary.toFile());
                    if (s.path("tokens_per_s").asDouble() > 0) v = s.get("tokens_per_s").asDouble();
                } catch (java.io.IOException ignored) { }
            }
            if (v != null) reused.add(r.name());
            if (v == null) v = tps.get(kind);
            if (v == null && !batch.isEmpty()) {
                double[] m = measure(exp.trainConfig(r, baseDir), baseDir, batch);
                v = batchTokens / m[0];
                if (fwdTps == 0 && m[1] > 0) fwdTps = batchTokens / m[1];
                measured.add(kind + " " + Fmt.rate(v) + " tok/s");
            }
            if (v != null) tps.put(kind, v);
            TrainConfig c = r.train();
            long steps = c.maxSteps > 0 ? c.maxSteps : (long) c.epochs * Math.max(1, ((n + data.batchSize - 1) / data.batchSize + c.gradAccum - 1) / c.gradAccum);
            double tokens = steps * c.gradAccum * Math.min(data.batchSize, n) * meanLen;
            e.train.put(r.name(), v == null ? 0 : tokens / v);
        }
        if (fwdTps == 0) fwdTps = 3 * tps.values().stream().mapToDouble(Double::doubleValue).max().orElse(0);
        if (prep != null && fwdTps > 0) {
            try (Tokenizer tok = Tokenizer.load(baseDir)) {
                Set<String> contexts = new HashSet<>();
                long tokens = 0;
                for (HarnessLM.LLRequest q : prep.loglikelihoodRequestList()) {
                    if (contexts.add(q.context())) tokens += tok.encode(q.context(), false).length;
                    tokens += tok.encode(q.continuation(), false).length;
                }
                e.evalS = tokens / fwdTps;
            }
        }
        e.basis = "measured: " + (measured.isEmpty() ? "" : String.join(", ", measured)) + (reused.isEmpty() ? "" : (measured.isEmpty() ? "" : "; ")
                + "from finished runs: " + String.join(", ", reused)) + (fwdTps > 0 ? "; forward " + Fmt.rate(fwdTps) + " tok/s" : "");
        return e;
    }

    /** Seconds of one training step and of one forward pass (no tape) on the batch, after a warm-up step. */
    private static double[] measure(TrainConfig c, Path baseDir, List<TrainStep.Example> batch) {
        Gemma3Model m = Gemma3Model.load(baseDir);
        Distillation d = null;
        try {
            int H = m.config.hidden();
            SplittableRandom rng = new SplittableRandom(1);
            String kind = c.method.equals("distill") ? c.student : c.method;
            float[] prompt = null;
            Params params;
            switch (kind) {
                case "prompt-tuning", "p-tuning" -> {
                    prompt = PromptInit.random(c.numVirtualTokens, H, rng);
                    params = Params.promptTuning(prompt, H);
                }
                case "lora", "ia3" -> {
                    for (Linear l : m.weights.linears()) {
                        if (!l.name.endsWith("q_proj") && !l.name.endsWith("v_proj")) continue;
                        l.lora = new Linear.Lora(c.loraR, 2f, LoraInit.kaimingUniformA(c.loraR, l.in(), rng), new float[l.out() * c.loraR], l.in(), l.out());
                    }
                    params = Params.lora(m);
                }
                default -> params = Params.full(m);
            }
            TrainStep ts = new TrainStep(m, params, prompt, AdamW.defaults(0.0), LrSchedule.of("constant", 1e-9, 0, 10), 1.0);
            if (c.method.equals("distill")) {
                // a local teacher directory; a Hub id or a run:NAME not trained yet: the base stands in (no download for an estimate)
                Path t = c.teacher != null && Files.isDirectory(c.teacher) ? c.teacher : baseDir;
                d = new Distillation(Gemma3Model.load(t), m, c.kdAlpha, c.kdBeta, c.kdTemperature, c.kdScaleT2, null, c.teacherTopK);
                ts.distillation(d);
            }
            ts.step(batch);
            long a = System.nanoTime();
            ts.step(batch);
            double step = (System.nanoTime() - a) / 1e9;
            List<Gemma3Model.Input> in = new ArrayList<>();
            for (TrainStep.Example x : batch) in.add(new Gemma3Model.Input(m.newCache(), null, x.ids()));
            a = System.nanoTime();
            m.forward(in, null);
            return new double[]{step, (System.nanoTime() - a) / 1e9};
        } finally {
            if (d != null) d.close();
            m.weights.close();
        }
    }
}
