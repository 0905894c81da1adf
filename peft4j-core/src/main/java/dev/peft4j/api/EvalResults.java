package dev.peft4j.api;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.eval.Reports;
import dev.peft4j.util.AtomicFiles;

import java.nio.file.Path;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The outcome of {@link Model#evaluate}: per task or group, its metrics as objects ({@link #tasks()}), and the whole run as
 * lm-evaluation-harness's results JSON ({@link #toJson()}, {@link #write}), which {@code peft4j compare} and lm-eval's own
 * tools read.
 */
public final class EvalResults {
    /**
     * One task's or group's metrics.
     *
     * @param name    task or group name, e.g. {@code arc_easy}
     * @param metrics metric name ({@code acc}, {@code acc_norm}, {@code exact_match}) to value
     * @param stderr  metric name to its standard error (NaN when lm-eval reports N/A)
     * @param samples documents evaluated (for a task; 0 for a group)
     */
    public record TaskResult(String name, Map<String, Double> metrics, Map<String, Double> stderr, int samples) {
        /**
         * Its value.
         *
         * @param metric a metric name such as {@code acc}
         * @return its value
         * @throws IllegalArgumentException when absent
         */
        public double metric(String metric) {
            Double v = metrics.get(metric);
            if (v == null) throw new IllegalArgumentException(name + " has no metric " + metric + " (it has " + metrics.keySet() + ")");
            return v;
        }
    }

    private final ObjectNode json;
    private final Map<String, TaskResult> tasks = new LinkedHashMap<>();

    EvalResults(ObjectNode json) {
        this.json = json;
        JsonNode ns = json.path("n-samples");
        for (Iterator<Map.Entry<String, JsonNode>> it = json.path("results").fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            Map<String, Double> m = new LinkedHashMap<>(), se = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> f = e.getValue().fields(); f.hasNext(); ) {
                Map.Entry<String, JsonNode> kv = f.next();
                String k = kv.getKey();
                int comma = k.indexOf(',');
                if (comma < 0 || k.equals("alias")) continue;
                String metric = k.substring(0, comma);
                double v = kv.getValue().isNumber() ? kv.getValue().asDouble() : Double.NaN;
                if (metric.endsWith("_stderr")) se.put(metric.substring(0, metric.length() - 7), v);
                else m.put(metric, v);
            }
            tasks.put(e.getKey(), new TaskResult(e.getKey(), Map.copyOf(m), Map.copyOf(se), ns.path(e.getKey()).path("effective").asInt(0)));
        }
    }

    /**
     * Every task and group of the results, in lm-eval's order.
     *
     * @return every task and group of the results, in lm-eval's order
     */
    public Map<String, TaskResult> tasks() { return java.util.Collections.unmodifiableMap(tasks); }

    /**
     * Its result.
     *
     * @param name task or group name
     * @return its result
     * @throws IllegalArgumentException when it was not evaluated
     */
    public TaskResult task(String name) {
        TaskResult r = tasks.get(name);
        if (r == null) throw new IllegalArgumentException("no results for " + name + " (have " + tasks.keySet() + ")");
        return r;
    }

    /**
     * The results JSON in lm-eval's layout, indented as Python's {@code json.dumps(indent=2)}.
     *
     * @return the results JSON in lm-eval's layout, indented as Python's {@code json.dumps(indent=2)}
     */
    public String toJson() {
        DefaultPrettyPrinter pp = new DefaultPrettyPrinter()
                .withSeparators(Separators.createDefaultInstance().withObjectFieldValueSpacing(Separators.Spacing.AFTER));
        pp.indentArraysWith(DefaultIndenter.SYSTEM_LINEFEED_INSTANCE);
        try {
            return new ObjectMapper().writer(pp).writeValueAsString(json) + "\n";
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Sets where to write {@link #toJson()} (atomically: a temporary name, then a rename).
     *
     * @param file where to write {@link #toJson()} (atomically: a temporary name, then a rename)
     */
    public void write(Path file) {
        AtomicFiles.writeString(file, toJson());
    }

    /**
     * The table lm-eval prints (Markdown): task, version, filter, n-shot, metric, value, stderr.
     *
     * @return the table lm-eval prints (Markdown): task, version, filter, n-shot, metric, value, stderr
     */
    public String table() { return Reports.resultsTable(json); }
}
