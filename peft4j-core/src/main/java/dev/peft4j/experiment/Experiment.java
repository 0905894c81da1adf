package dev.peft4j.experiment;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.data.DataConfig;
import dev.peft4j.data.QuickstartAssets;
import dev.peft4j.data.TrainingData;
import dev.peft4j.eval.Evaluator;
import dev.peft4j.eval.HarnessLM;
import dev.peft4j.eval.Tasks;
import dev.peft4j.eval.TextCodec;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Models;
import dev.peft4j.model.Quantization;
import dev.peft4j.model.RandomInit;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.train.TrainConfig;
import dev.peft4j.train.Trainer;
import dev.peft4j.util.AtomicFiles;
import dev.peft4j.util.Fmt;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

/**
 * Runs a {@link Recipe}: builds the plan (base evaluation, then per run training and evaluation), trains every run that is not
 * finished (a killed run resumes from its last checkpoint, a finished one is skipped, a finished run whose recipe entry changed
 * is refused unless named in {@code rerun}), evaluates the base and each run with results cached per (model, adapter, task
 * settings), and writes {@code REPORT.md}, {@code results.json}, the charts and each run's model card ({@link Report}).
 *
 * <p>Output folder layout: {@code recipe.yaml} (the recipe as last run), {@code runs/NAME/} (the training output of each run
 * plus {@code eval_results.json}; {@code runs/NAME.recipe_entry.json} is the recipe entry it was started with), {@code base_results.json}, {@code eval-cache/KEY.json},
 * {@code quickstart/} (the quickstart recipe's model, data and smoke-test evaluation set), the report files.
 */
public final class Experiment {
    /**
     * @param output the experiment folder (null: experiments/NAME)
     * @param rerun  runs to train again even though they are finished
     * @param dryRun print the plan and the estimate only
     * @param measure measure throughput for the estimate (one training step per kind of run on the base model)
     */
    public record Options(Path output, Set<String> rerun, boolean dryRun, boolean measure, PrintStream log) {}

    private static final ObjectMapper JSON = new ObjectMapper();
    static final String ENTRY = "recipe_entry.json", EVAL_RESULTS = "eval_results.json", BASE_RESULTS = "base_results.json";

    private final Recipe recipe;
    private final Options opt;
    private final PrintStream log;
    private final Path out;

    public Experiment(Recipe recipe, Options opt) {
        this.recipe = recipe;
        this.opt = opt;
        this.log = opt.log();
        this.out = opt.output() != null ? opt.output() : Path.of("experiments", recipe.name);
    }

    public Path output() { return out; }

    /** One step of the plan. */
    record Phase(String run, String kind, String state, double estimateS) {
        String label() { return (run == null ? "base" : "run " + run) + ": " + kind; }
    }

    /** What the command did: the plan and, unless a dry run, the report files. */
    public record Result(List<String> plan, double estimateS, Path report, Path results) {}

    public Result run() throws IOException {
        for (String r : opt.rerun()) {
            if (!recipe.byName().containsKey(r)) throw new UserException("--rerun " + r + ": no run of that name in " + recipe.file
                    + " (runs: " + String.join(", ", recipe.byName().keySet()) + ")");
        }
        if (Files.exists(out) && !Files.isDirectory(out)) throw new UserException("--output: " + out + " is a file, expected a directory");
        // the shared settings must not change under finished runs
        Path shared = out.resolve("shared_settings.json");
        String sharedNow = Recipe.canonical(recipe.sharedSettings());
        if (Files.isRegularFile(shared) && !Files.readString(shared).strip().equals(sharedNow) && anyFinished() && !opt.dryRun()) {
            throw new UserException(recipe.file + ": base_model, tokenizer or data differ from the experiment in " + out
                    + " (finished runs used the earlier ones); use another output folder");
        }
        // refuse changed entries of finished runs before anything runs
        for (Recipe.Run r : recipe.runs) {
            Path e = entryFile(r);
            if (finished(r) && Files.isRegularFile(e) && !Files.readString(e).strip().equals(entryText(r)) && !opt.rerun().contains(r.name())) {
                throw new UserException(recipe.file + ":" + r.line() + ": run '" + r.name() + "' changed since it finished in "
                        + runDir(r) + "; give --rerun " + r.name() + " to train it again (or undo the change)");
            }
        }
        Path dataDir = evalDataDir();
        Path baseDir = baseModelDir();
        DataConfig data = dataConfig();
        if (!recipe.baseModel.equals("quickstart") && data.data != null && !Files.isRegularFile(data.data)) {
            throw new UserException(recipe.file + ":" + recipe.line("/data/file") + ": data.file: " + data.data + " not found");
        }
        if (!recipe.eval.dataDir().equals("quickstart") && !Files.isDirectory(dataDir)) {
            throw new UserException(recipe.file + ":" + recipe.line("/eval/data_dir") + ": eval.data_dir: " + dataDir.toAbsolutePath() + " is not a directory");
        }
        Evaluator.Prepared prep = recipe.eval.dataDir().equals("quickstart") && !Files.isDirectory(dataDir) ? null : prepareEval(dataDir, "check");

        if (!opt.dryRun() && recipe.baseModel.equals("quickstart")) {
            // built first, so that the estimate can measure it
            Files.createDirectories(out);
            baseDir = buildQuickstartBase();
            if (prep == null) prep = prepareEval(evalDataDir(), "check");
        }
        Estimate est = opt.measure() ? Estimate.of(recipe, this, baseDir, data, prep, log) : null;
        List<Phase> plan = plan(est);
        double total = plan.stream().mapToDouble(Phase::estimateS).sum();
        log.println("experiment " + recipe.name + " (" + recipe.file + ") -> " + out);
        List<String> lines = new ArrayList<>();
        for (int i = 0; i < plan.size(); i++) {
            Phase p = plan.get(i);
            String l = String.format("%2d. %-40s %-28s %s", i + 1, p.label(), p.state(), p.estimateS() > 0 ? "~" + Fmt.duration(p.estimateS()) : "");
            lines.add(l);
            log.println("  " + l);
        }
        if (est != null) log.println("  estimated total: ~" + Fmt.duration(total) + " (" + est.basis() + ")");
        if (opt.dryRun()) return new Result(lines, total, null, null);

        Files.createDirectories(out);
        AtomicFiles.writeString(out.resolve("recipe.yaml"), Files.readString(recipe.file));
        AtomicFiles.writeString(shared, sharedNow + "\n");

        long t0 = System.nanoTime();
        double doneEstimate = 0;
        JsonNode baseResults = null;
        Map<String, JsonNode> results = new LinkedHashMap<>();
        for (int i = 0; i < plan.size(); i++) {
            Phase p = plan.get(i);
            double elapsed = (System.nanoTime() - t0) / 1e9;
            double remaining = plan.subList(i, plan.size()).stream().mapToDouble(Phase::estimateS).sum();
            // scale the remaining estimate by how the finished phases compared with theirs
            double factor = doneEstimate > 1 ? elapsed / doneEstimate : 1.0;
            log.printf("%n[%d/%d] %s%s%n", i + 1, plan.size(), p.label(),
                    remaining > 0 ? "  (elapsed " + Fmt.duration(elapsed) + ", overall ETA ~" + Fmt.duration(remaining * factor) + ")" : "");
            if (p.run() == null) {
                baseResults = evaluate(baseDir, null, Quantization.NONE, prep, out.resolve(BASE_RESULTS));
            } else {
                Recipe.Run r = recipe.byName().get(p.run());
                if (p.kind().equals("train")) train(r, baseDir, data);
                else results.put(r.name(), evaluate(r.trained().equals("full") ? runDir(r) : baseDir,
                        r.trained().equals("full") ? null : runDir(r), r.train().quantize, prep, runDir(r).resolve(EVAL_RESULTS)));
            }
            doneEstimate += p.estimateS();
        }
        Report rep = new Report(recipe, out, baseDir, baseResults, results);
        rep.write();
        log.printf("%nexperiment finished in %s: %s, %s%n", Fmt.duration((System.nanoTime() - t0) / 1e9), out.resolve("REPORT.md"), out.resolve("results.json"));
        return new Result(lines, total, out.resolve("REPORT.md"), out.resolve("results.json"));
    }

    private boolean anyFinished() {
        for (Recipe.Run r : recipe.runs) if (finished(r)) return true;
        return false;
    }

    Path runDir(Recipe.Run r) { return out.resolve("runs").resolve(r.name()); }

    /** The recipe entry a run was started with (beside its folder: the trainer owns the folder). */
    Path entryFile(Recipe.Run r) { return out.resolve("runs").resolve(r.name() + "." + ENTRY); }

    boolean finished(Recipe.Run r) { return Files.isRegularFile(runDir(r).resolve("train_summary.json")); }

    private String entryText(Recipe.Run r) { return Recipe.canonical(r.entry()); }

    private List<Phase> plan(Estimate est) throws IOException {
        List<Phase> plan = new ArrayList<>();
        Path baseDir = recipe.baseModel.equals("quickstart") ? out.resolve("quickstart/base") : null;
        plan.add(new Phase(null, "evaluate", cachedEval(baseDir, null, Quantization.NONE) ? "cached" : "to do", est == null ? 0 : est.evalS()));
        for (Recipe.Run r : recipe.runs) {
            boolean done = finished(r) && !opt.rerun().contains(r.name());
            String state = done ? "finished: skipped" : opt.rerun().contains(r.name()) ? "rerun" :
                    Trainer.hasCheckpoint(runDir(r)) ? "resumes from its checkpoint" : "to do";
            plan.add(new Phase(r.name(), "train", state, done || est == null ? 0 : est.trainS(r)));
            boolean evalDone = done && cachedEval(r.trained().equals("full") ? runDir(r) : baseDir, r.trained().equals("full") ? null : runDir(r), r.train().quantize);
            plan.add(new Phase(r.name(), "evaluate", evalDone ? "cached" : "to do", evalDone || est == null ? 0 : est.evalS()));
        }
        return plan;
    }

    private boolean cachedEval(Path model, Path adapter, Quantization quant) throws IOException {
        if (model == null) return false;
        if (!Files.isDirectory(model) || (adapter != null && !Files.isDirectory(adapter))) return false;
        return Files.isRegularFile(out.resolve("eval-cache").resolve(evalKey(model, adapter, quant) + ".json"));
    }

    // ------------------------------------------------------------------ settings

    Path evalDataDir() {
        return recipe.eval.dataDir().equals("quickstart") ? out.resolve("quickstart/eval") : Path.of(recipe.eval.dataDir());
    }

    private Path baseModelDir() {
        if (recipe.baseModel.equals("quickstart")) return out.resolve("quickstart/base");
        return Models.resolve(Path.of(recipe.baseModel), "base_model");
    }

    DataConfig dataConfig() {
        DataConfig d = recipe.data;
        if (d.data != null && d.data.toString().equals("quickstart")) {
            DataConfig c = copy(d);
            c.data = out.resolve("quickstart/assets").resolve(QuickstartAssets.DATA);
            return c;
        }
        return d;
    }

    private static DataConfig copy(DataConfig d) {
        DataConfig c = new DataConfig();
        c.data = d.data; c.format = d.format; c.fields = d.fields; c.categories = d.categories; c.template = d.template;
        c.maxSeqLen = d.maxSeqLen; c.truncate = d.truncate; c.strict = d.strict; c.valSize = d.valSize; c.seed = d.seed;
        c.batchSize = d.batchSize; c.bucket = d.bucket;
        return c;
    }

    /** The training settings of a run, pointing at this experiment's folders. */
    TrainConfig trainConfig(Recipe.Run r, Path baseDir) {
        TrainConfig s = r.train();
        TrainConfig c = new TrainConfig(baseDir, runDir(r), r.method());
        for (var f : TrainConfig.class.getFields()) {
            if (java.lang.reflect.Modifier.isStatic(f.getModifiers())) continue;
            try { f.set(c, f.get(s)); } catch (IllegalAccessException e) { throw new IllegalStateException(e); }
        }
        c.model = baseDir;
        c.output = runDir(r);
        c.method = r.method();
        c.tokenizer = recipe.tokenizer;
        if (r.teacherRun() != null) c.teacher = runDir(recipe.byName().get(r.teacherRun()));
        return c;
    }

    // ------------------------------------------------------------------ phases

    private void train(Recipe.Run r, Path baseDir, DataConfig data) throws IOException {
        Path dir = runDir(r);
        boolean rerun = opt.rerun().contains(r.name());
        if (finished(r) && !rerun) {
            log.println("finished earlier: skipped (" + dir + ")");
            return;
        }
        TrainConfig c = trainConfig(r, baseDir);
        Path entry = entryFile(r);
        boolean sameEntry = Files.isRegularFile(entry) && Files.readString(entry).strip().equals(entryText(r));
        if (rerun || (Files.isDirectory(dir) && !sameEntry)) {
            if (Files.isDirectory(dir)) {
                log.println(rerun ? "--rerun: training again from the start" : "the recipe entry changed: starting this unfinished run again");
                AtomicFiles.deleteTree(dir);
            }
        } else if (Files.isRegularFile(dir.resolve("training_args.json"))) {
            c.resume = true;   // a killed run continues from its last checkpoint (or starts over when it has none)
        }
        Files.createDirectories(dir);
        AtomicFiles.writeString(entry, entryText(r) + "\n");
        new Trainer(c, data, log).run();
    }

    private Evaluator.Prepared prepareEval(Path dataDir, String what) {
        Recipe.Eval e = recipe.eval;
        Evaluator.Options o = new Evaluator.Options(e.numFewshot(), e.limit(), e.batchSize(), "peft4j experiment " + recipe.name,
                Evaluator.ProgressFactory.NONE);
        try {
            return Evaluator.prepare(Tasks.resolve(e.tasks()), dataDir, o);
        } catch (UserException ex) {
            throw new UserException(recipe.file + ":" + recipe.line("/eval") + ": eval: " + ex.getMessage());
        }
    }

    /** The cache key of an evaluation: model and adapter identity (weight files' names, sizes, times) and the task settings. */
    String evalKey(Path model, Path adapter, Quantization quant) throws IOException {
        try {
            MessageDigest d = MessageDigest.getInstance("SHA-256");
            for (Path p : adapter == null ? List.of(model) : List.of(model, adapter)) {
                d.update(p.toAbsolutePath().normalize().toString().getBytes());
                try (Stream<Path> s = Files.list(p)) {
                    for (Path f : s.filter(x -> x.toString().endsWith(".safetensors") || x.toString().endsWith(".json")).sorted().toList()) {
                        if (f.getFileName().toString().equals(EVAL_RESULTS) || f.getFileName().toString().equals("metrics.jsonl")) continue;
                        d.update((f.getFileName() + ":" + Files.size(f) + ":" + Files.getLastModifiedTime(f).toMillis() + "\n").getBytes());
                    }
                }
            }
            Recipe.Eval e = recipe.eval;
            d.update(("tasks=" + String.join(",", e.tasks()) + " limit=" + e.limit() + " fewshot=" + e.numFewshot()
                    + " data=" + evalDataDir().toAbsolutePath().normalize()
                    + (quant == Quantization.NONE ? "" : " quantize=" + quant.id())).getBytes());
            return HexFormat.of().formatHex(d.digest()).substring(0, 24);
        } catch (java.security.NoSuchAlgorithmException ex) {
            throw new IllegalStateException(ex);
        }
    }

    private JsonNode evaluate(Path model, Path adapter, Quantization quant, Evaluator.Prepared prep, Path copyTo) throws IOException {
        Path cache = out.resolve("eval-cache").resolve(evalKey(model, adapter, quant) + ".json");
        if (Files.isRegularFile(cache)) {
            log.println("evaluation: reusing " + cache);
            JsonNode r = JSON.readTree(cache.toFile());
            AtomicFiles.writeString(copyTo, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(r) + "\n");
            return r;
        }
        long t0 = System.nanoTime();
        Gemma3LM lm = Models.load(model, adapter, false, quant);
        ObjectNode res;
        try (Tokenizer tok = Tokenizer.load(recipe.tokenizer != null ? recipe.tokenizer : model); var w = lm.model.weights) {
            Evaluator.ProgressFactory progress = (name, total) -> {
                long[] done = {0, System.nanoTime()};
                return n -> {
                    if (n < 0) return;
                    done[0] += n;
                    if (System.nanoTime() - done[1] > 5e9 || done[0] == total) {
                        done[1] = System.nanoTime();
                        double s = (System.nanoTime() - t0) / 1e9;
                        log.printf("  evaluation %s: %d/%d requests, %s elapsed, ETA %s%n", name, done[0], total, Fmt.duration(s),
                                Fmt.duration(done[0] == 0 ? 0 : s * (total - done[0]) / done[0]));
                    }
                };
            };
            Recipe.Eval e = recipe.eval;
            Evaluator.Prepared p = Evaluator.prepare(Tasks.resolve(e.tasks()), evalDataDir(), new Evaluator.Options(e.numFewshot(), e.limit(),
                    e.batchSize(), Evaluator.modelArgs(model, adapter, quant), progress));
            res = Evaluator.run(new HarnessLM(lm, TextCodec.of(tok), e.batchSize()), p).results();
        }
        res.put("model_name", model.toString());
        if (adapter != null) res.put("adapter", adapter.toString());
        res.put("eval_seconds", (System.nanoTime() - t0) / 1e9);
        String text = JSON.writerWithDefaultPrettyPrinter().writeValueAsString(res) + "\n";
        AtomicFiles.writeString(cache, text);
        AtomicFiles.writeString(copyTo, text);
        log.println("evaluation: " + Fmt.duration((System.nanoTime() - t0) / 1e9) + " -> " + copyTo);
        return res;
    }

    // ------------------------------------------------------------------ the quickstart recipe

    /**
     * The quickstart's model, built once into {@code quickstart/}: the bundled tokenizer and data, a small random Gemma 3
     * pre-trained on the data (full fine-tuning, as {@code peft4j quickstart} does), and the bundled smoke-test evaluation set.
     */
    private Path buildQuickstartBase() throws IOException {
        Path q = out.resolve("quickstart");
        Path base = q.resolve("base");
        Path done = q.resolve(".base-done");
        extractEval(q.resolve("eval"));
        Path assets = QuickstartAssets.copyTo(q.resolve("assets"));
        if (Files.isRegularFile(done)) return base;
        log.println("building the quickstart base model (random tiny Gemma 3 pre-trained on the bundled data, "
                + recipe.quickstartPretrainSteps + " steps)");
        Path random = q.resolve("random-model");
        Path cfg = q.resolve("model-config.json");
        try (InputStream in = Experiment.class.getResourceAsStream("/quickstart/model-config.json")) {
            AtomicFiles.write(cfg, in.readAllBytes());
        }
        if (Files.isDirectory(random)) AtomicFiles.deleteTree(random);
        RandomInit.write(cfg, random, 42, false, 0);
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) {
            Files.copy(assets.resolve("tokenizer").resolve(f), random.resolve(f), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        }
        TrainConfig c = new TrainConfig(random, base, "full");
        c.maxSteps = recipe.quickstartPretrainSteps;
        c.lr = 3e-3;
        c.warmupSteps = 5;
        c.keepCheckpoints = 1;
        c.overwrite = true;
        DataConfig d = new DataConfig();
        d.data = assets.resolve(QuickstartAssets.DATA);
        d.template = "dolly";
        d.maxSeqLen = 256;
        d.valSize = "0";
        d.seed = 42;
        d.batchSize = 8;
        if (Files.isDirectory(base) && !Files.isRegularFile(base.resolve("training_args.json"))) AtomicFiles.deleteTree(base);
        new Trainer(c, d, log).run();
        AtomicFiles.deleteTree(base.resolve("checkpoints"));
        AtomicFiles.writeString(done, "done\n");
        return base;
    }

    /** Files of the bundled smoke-test evaluation set (resources under /quickstart/eval/). */
    static final List<String> EVAL_FILES = List.of("README.txt", "hellaswag/validation.jsonl",
            "mmlu/test/formal_logic_test.csv", "mmlu/test/professional_law_test.csv", "mmlu/test/high_school_computer_science_test.csv",
            "mmlu/test/abstract_algebra_test.csv", "mmlu/test/high_school_mathematics_test.csv");

    /** Writes the bundled smoke-test evaluation set (MMLU-format and HellaSwag-format sample) into {@code dir}. */
    public static Path extractEval(Path dir) {
        for (String f : EVAL_FILES) AtomicFiles.write(dir.resolve(f), QuickstartAssets.resource("eval/" + f));
        return dir;
    }

    /** The training data as the runs will see it (for the estimate). */
    TrainingData trainingData(Path baseDir, DataConfig data) {
        try (Tokenizer tok = Tokenizer.load(recipe.tokenizer != null ? recipe.tokenizer : baseDir)) {
            return data.prepare(tok);
        }
    }
}
