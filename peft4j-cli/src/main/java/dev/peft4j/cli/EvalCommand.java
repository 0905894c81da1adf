package dev.peft4j.cli;

import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectWriter;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.eval.Evaluator;
import dev.peft4j.eval.HarnessLM;
import dev.peft4j.eval.Reports;
import dev.peft4j.eval.Tasks;
import dev.peft4j.eval.TextCodec;
import dev.peft4j.util.AtomicFiles;
import dev.peft4j.model.CausalLM;
import dev.peft4j.model.Models;
import dev.peft4j.model.Quantization;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.UserException;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "eval", mixinStandardHelpOptions = true,
        description = "Evaluate a model (optionally with a PEFT adapter) on lm-evaluation-harness tasks: mmlu, mmlu_<subject>, "
                + "mmlu_{humanities,social_sciences,stem,other}, hellaswag, arc_easy, arc_challenge, piqa, boolq, winogrande, triviaqa.")
public final class EvalCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "model directory (Hugging Face layout) or Hub repo id") Path model;
    @Option(names = "--adapter", description = "PEFT adapter directory (prompt tuning, P-tuning, prefix tuning, LoRA or IA3)") Path adapter;
    @Option(names = "--tokenizer", description = "tokenizer directory (default: the model directory)") Path tokenizer;
    @Option(names = "--quantize", description = "quantize the weights at load: q8 (8-bit blocks of 32, as llama.cpp's Q8_0)") String quantize;
    @Option(names = "--tasks", required = true, split = ",", description = "comma-separated task or group names") List<String> tasks;
    @Option(names = "--data-dir", defaultValue = "data", description = "datasets root (default ${DEFAULT-VALUE}); see README, Evaluation") Path dataDir;
    @Option(names = "--num-fewshot", defaultValue = "0", description = "few-shot examples per prompt (default ${DEFAULT-VALUE})") int numFewshot;
    @Option(names = "--limit", description = "evaluate only the first N documents of each task (a value below 1 is a fraction)") Double limit;
    @Option(names = "--batch-size", defaultValue = "8", description = "contexts per forward pass (default ${DEFAULT-VALUE})") int batchSize;
    @Option(names = "--output", description = "results JSON file (lm-eval layout)") Path output;
    @Option(names = "--log-samples", description = "also write samples_<task>_<date>.jsonl next to --output") boolean logSamples;
    @Option(names = "--no-progress", description = "no progress bar") boolean noProgress;

    /** A loaded model and its tokenizer; {@code resources} (or null) is closed when the evaluation ends. */
    public record Loaded(CausalLM lm, TextCodec codec, AutoCloseable resources) {
        public Loaded(CausalLM lm, TextCodec codec) { this(lm, codec, null); }
    }

    /** How the command gets a model; {@code tokenizer} null means the model's directory (tests substitute a small model). */
    public interface Loader {
        Loaded load(Path model, Path adapter, Path tokenizer);

        /** With the weights quantized at load ({@code --quantize}); loaders that cannot quantize refuse it. */
        default Loaded load(Path model, Path adapter, Path tokenizer, Quantization quant) {
            if (quant != Quantization.NONE) throw new UserException("--quantize: not supported by this model loader");
            return load(model, adapter, tokenizer);
        }
    }

    public static Loader loader = new Loader() {
        @Override
        public Loaded load(Path m, Path a, Path t) { return load(m, a, t, Quantization.NONE); }

        @Override
        public Loaded load(Path m, Path a, Path t, Quantization quant) {
            Path dir = Models.resolve(m, "model");   // a directory, or a Hub repo id from the cache
            CausalLM lm = Models.load(dir, a, false, quant);
            Tokenizer tok = Tokenizer.load(t != null ? t : dir);
            return new Loaded(lm, TextCodec.of(tok), tok);
        }
    };

    @Override
    public Integer call() throws Exception {
        if (numFewshot < 0) throw new UserException("--num-fewshot must be 0 or more, got " + numFewshot);
        if (batchSize < 1) throw new UserException("--batch-size must be at least 1, got " + batchSize);
        if (logSamples && output == null) throw new UserException("--log-samples needs --output (the samples are written next to it)");
        Tasks.Selection sel = Tasks.resolve(tasks);
        if (!Files.isDirectory(dataDir)) throw new UserException("--data-dir: " + dataDir.toAbsolutePath() + " is not a directory");
        Quantization quant = Quantization.parse(quantize);
        String modelArgs = Evaluator.modelArgs(model, adapter, quant);
        Evaluator.Options opt = new Evaluator.Options(numFewshot, limit, batchSize, modelArgs,
                noProgress ? Evaluator.ProgressFactory.NONE : EvalCommand::progressBar);
        Evaluator.Prepared prep = Evaluator.prepare(sel, dataDir, opt);   // data errors before the model loads

        Loaded l = loader.load(model, adapter, tokenizer, quant);
        try (AutoCloseable ignored = l.resources()) {
            return report(l, Evaluator.run(new HarnessLM(l.lm(), l.codec(), batchSize), prep));
        }
    }

    private int report(Loaded l, Evaluator.Output out) throws IOException {
        ObjectNode res = out.results();
        res.put("model_name", model.toString());
        if (adapter != null) res.put("adapter", adapter.toString());
        res.put("max_length", l.lm().maxPositions());
        res.set("tokenizer_bos_token", res.arrayNode().add(l.codec().bosToken()).add(l.codec().bosId()));
        res.set("tokenizer_eos_token", res.arrayNode().add(l.codec().eosToken()).add(l.codec().eosId()));

        if (output != null) {
            AtomicFiles.writeString(output, writer().writeValueAsString(res) + "\n");
            System.err.println("wrote " + output);
            if (logSamples) {
                String dateId = LocalDateTime.now().toString().replace(":", "-");
                Path dir = output.toAbsolutePath().getParent();
                ObjectMapper m = new ObjectMapper();
                for (Map.Entry<String, List<ObjectNode>> e : out.samples().entrySet()) {
                    StringBuilder sb = new StringBuilder();
                    for (ObjectNode s : e.getValue()) sb.append(m.writeValueAsString(s)).append('\n');
                    Path f = dir.resolve("samples_" + e.getKey() + "_" + dateId + ".jsonl");
                    AtomicFiles.writeString(f, sb.toString());
                    System.err.println("wrote " + f);
                }
            }
        }
        System.out.print(Reports.resultsTable(res));
        System.out.flush();
        return 0;
    }

    /** JSON as Python's {@code json.dumps(indent=2)} lays it out. */
    static ObjectWriter writer() {
        DefaultPrettyPrinter pp = new DefaultPrettyPrinter()
                .withSeparators(Separators.createDefaultInstance().withObjectFieldValueSpacing(Separators.Spacing.AFTER));
        pp.indentArraysWith(DefaultIndenter.SYSTEM_LINEFEED_INSTANCE);
        return new ObjectMapper().writer(pp);
    }

    private static java.util.function.IntConsumer progressBar(String name, long total) {
        ProgressBar pb = new ProgressBarBuilder().setTaskName(name).setInitialMax(total).setStyle(ProgressBarStyle.ASCII)
                .setConsumer(new ConsoleProgressBarConsumer(System.err)).setUpdateIntervalMillis(500).showSpeed().build();
        return n -> {
            if (n < 0) pb.close();
            else pb.stepBy(n);
        };
    }
}
