package dev.peft4j.examples;

import dev.peft4j.api.EvalOptions;
import dev.peft4j.api.EvalResults;
import dev.peft4j.api.LoadOptions;
import dev.peft4j.api.Model;
import dev.peft4j.api.Peft4j;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Evaluate a base model and the same model with an adapter on lm-evaluation-harness tasks, and print the change per metric.
 * The results are also written as lm-eval JSON ({@code base.json}, {@code tuned.json}; {@code peft4j compare} reads them).
 *
 * <pre>EvaluateExample MODEL ADAPTER DATA_DIR [TASKS [LIMIT [OUT_DIR]]]     e.g. google/gemma-3-270m runs/gemma-pt data arc_easy,hellaswag 200</pre>
 */
public final class EvaluateExample {
    private EvaluateExample() {}

    /** @param args model, adapter, datasets folder, optional comma-separated tasks (default arc_easy), limit (default 100) and folder for base.json/tuned.json (default .) */
    public static void main(String[] args) {
        if (args.length < 3) {
            System.err.println("usage: EvaluateExample MODEL ADAPTER DATA_DIR [TASKS [LIMIT [OUT_DIR]]]");
            System.exit(2);
        }
        List<String> tasks = Arrays.asList((args.length > 3 ? args[3] : "arc_easy").split(","));
        int limit = args.length > 4 ? Integer.parseInt(args[4]) : 100;
        EvalOptions options = EvalOptions.builder().tasks(tasks).dataDir(Path.of(args[2])).limit(limit).build();

        EvalResults base, tuned;
        try (Model m = Peft4j.load(args[0])) {
            base = m.evaluate(options);
        }
        try (Model m = Peft4j.load(args[0], LoadOptions.builder().adapter(args[1]).build())) {
            tuned = m.evaluate(options);
        }
        Path out = Path.of(args.length > 5 ? args[5] : ".");
        base.write(out.resolve("base.json"));
        tuned.write(out.resolve("tuned.json"));

        System.out.printf("%-28s %-10s %8s %8s %8s%n", "task", "metric", "base", "tuned", "change");
        for (Map.Entry<String, EvalResults.TaskResult> e : tuned.tasks().entrySet()) {
            for (Map.Entry<String, Double> m : e.getValue().metrics().entrySet()) {
                double b = base.task(e.getKey()).metric(m.getKey());
                System.out.printf("%-28s %-10s %8.4f %8.4f %+8.4f%n", e.getKey(), m.getKey(), b, m.getValue(), m.getValue() - b);
            }
        }
    }
}
