package dev.peft4j.cli;

import dev.peft4j.data.DataConfig;
import dev.peft4j.data.QuickstartAssets;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Generator;
import dev.peft4j.model.Models;
import dev.peft4j.model.RandomInit;
import dev.peft4j.model.Sampler;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.train.TrainConfig;
import dev.peft4j.train.Trainer;
import dev.peft4j.util.MetricsWriter;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "quickstart", mixinStandardHelpOptions = true,
        description = {"A complete run in about a minute with no download: build a small random Gemma 3 with the bundled tokenizer,",
                "pre-train it on the bundled Dolly-format examples, train a prompt-tuning adapter on it, generate with it."})
public final class QuickstartCommand implements Callable<Integer> {
    @Option(names = "--output", defaultValue = "peft4j-quickstart", description = "working directory (default ${DEFAULT-VALUE}); replaced if it holds an earlier quickstart")
    Path out;
    @Option(names = "--pretrain-steps", defaultValue = "300", description = "full fine-tuning steps that turn the random model into a base (default ${DEFAULT-VALUE})") int pretrainSteps;
    @Option(names = "--steps", defaultValue = "100", description = "prompt-tuning steps (default ${DEFAULT-VALUE})") int steps;
    @Option(names = "--seed", defaultValue = "42", description = "seed of the weights, data split and sampling (default ${DEFAULT-VALUE})") long seed;

    private static final String MARKER = ".peft4j-quickstart";

    @Override
    public Integer call() throws Exception {
        if (pretrainSteps < 1) throw new UserException("--pretrain-steps: expected >= 1, got " + pretrainSteps);
        if (steps < 1) throw new UserException("--steps: expected >= 1, got " + steps);
        if (Files.exists(out) && !Files.isDirectory(out)) throw new UserException("--output: " + out + " is a file, expected a directory");
        if (Files.exists(out)) {
            if (!Files.isRegularFile(out.resolve(MARKER))) {
                boolean empty;
                try (var s = Files.list(out)) { empty = s.findAny().isEmpty(); }
                if (!empty) throw new UserException(out + ": exists and is not a quickstart directory; pass another --output");
            }
            try (var w = Files.walk(out)) {
                for (Path p : w.sorted(java.util.Comparator.reverseOrder()).toList()) if (!p.equals(out)) Files.delete(p);
            }
        }
        Files.createDirectories(out);
        Files.writeString(out.resolve(MARKER), "peft4j quickstart working directory\n");
        long t0 = System.nanoTime();

        step(1, "bundled assets: a 1,024-token BPE tokenizer and " + "76 Dolly-format instruction examples");
        Path assets = QuickstartAssets.copyTo(out.resolve("assets"));
        Path data = assets.resolve(QuickstartAssets.DATA);

        step(2, "a small random Gemma 3 (4 layers, hidden 128, MQA, sliding + full attention) in the Hugging Face layout");
        Path random = out.resolve("random-model");
        Path cfg = out.resolve("assets/model-config.json");
        try (InputStream in = QuickstartCommand.class.getResourceAsStream("/quickstart/model-config.json")) {
            Files.copy(in, cfg, StandardCopyOption.REPLACE_EXISTING);
        }
        RandomInit.write(cfg, random, seed, false, 0);
        copyTokenizer(assets.resolve("tokenizer"), random);
        System.out.println("   " + random);

        step(3, "pre-train it (full fine-tuning, " + pretrainSteps + " steps, Dolly's template): a base that has learned the examples' words");
        Path base = out.resolve("base-model");
        new Trainer(options(random, base, "full", pretrainSteps, 3e-3, 5), dataArgs(data, "0", "dolly"), System.out).run();

        step(4, "prompt tuning on the frozen base (20 virtual tokens) teaches it Gemma's chat format instead: watch the loss go down");
        Path adapter = out.resolve("adapter");
        Trainer.Result r = new Trainer(options(base, adapter, "prompt-tuning", steps, 0.3, 0), dataArgs(data, "8", "gemma-chat"), System.out).run();
        var m = MetricsWriter.read(adapter.resolve("metrics.jsonl"));
        double first = m.get(0).get("loss").asDouble();
        double last = m.get(m.size() - 1).get("loss").asDouble();
        System.out.printf("   loss %.3f at step 1 -> %.3f at step %d; validation loss %.3f (curve: %s)%n", first, last, m.size(),
                r.finalValLoss() == null ? Double.NaN : r.finalValLoss(), adapter.resolve("loss_curve.svg"));

        step(5, "generate with the adapter (what a 1-minute model can say)");
        Gemma3LM lm = Models.load(base, adapter);
        try (Tokenizer tok = Tokenizer.load(base); var weights = lm.model.weights) {
            for (String q : List.of("Why is the sky blue?", "How many legs does a spider have?")) {
                int[] ids = tok.encode(Tokenizer.chatPrompt(q), true);
                Generator.Result g = new Generator(lm).generate(ids, 32, new Sampler(new Sampler.Options(0.7f, 40, 0.95f, 0f, 1.3f, seed)),
                        new int[]{tok.eosId(), tok.idOf("<end_of_turn>")}, new String[]{"### End"}, x -> tok.decode(x, true), null);
                String answer = tok.decode(g.tokens(), true);
                int cut = answer.indexOf("### End");
                System.out.println("   > " + q);
                System.out.println("   " + (cut >= 0 ? answer.substring(0, cut) : answer).strip().replace("\n", "\n   "));
            }
        }
        System.out.printf("%ndone in %.0f s. The adapter (PEFT format) is in %s; try:%n", (System.nanoTime() - t0) / 1e9, adapter);
        System.out.printf("  ./peft4j generate --model %s --adapter %s --chat --prompt \"What do bees make?\" --temperature 0.7 --repetition-penalty 1.3%n", base, adapter);
        System.out.println("For the real job, point --model at google/gemma-3-270m and --data at databricks-dolly-15k.jsonl (see README).");
        return 0;
    }

    private static void step(int n, String what) {
        System.out.println();
        System.out.println("[" + n + "/5] " + what);
    }

    private static void copyTokenizer(Path from, Path to) throws java.io.IOException {
        for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) {
            Files.copy(from.resolve(f), to.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        }
    }

    private DataConfig dataArgs(Path data, String valSize, String template) {
        DataConfig d = new DataConfig();
        d.data = data;
        d.format = "auto";
        d.template = template;
        d.maxSeqLen = 256;
        d.valSize = valSize;
        d.seed = seed;
        d.batchSize = 8;
        return d;
    }

    private TrainConfig options(Path model, Path output, String method, int steps, double lr, int warmup) {
        TrainConfig c = new TrainConfig(model, output, method);
        c.init = "text:Answer the question helpfully.";
        c.targetModules = List.of("q_proj", "v_proj");
        c.maxSteps = steps;
        c.lr = lr;
        c.warmupSteps = warmup;
        c.evalEvery = method.equals("full") ? 0 : 20;
        c.keepCheckpoints = 1;
        return c;
    }
}
