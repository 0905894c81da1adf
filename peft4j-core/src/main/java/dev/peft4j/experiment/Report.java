package dev.peft4j.experiment;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.eval.ModelCard;
import dev.peft4j.eval.Reports;
import dev.peft4j.eval.Tasks;
import dev.peft4j.util.AtomicFiles;
import dev.peft4j.util.Fmt;
import dev.peft4j.util.MetricsWriter;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;
import org.knowm.xchart.VectorGraphicsEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The experiment's report: {@code REPORT.md} (the seed card's comparison table with one column per strategy — tuned value and
 * change against the base, bold for gains — the five-subject MMLU average first, the other benchmarks, then the MMLU
 * sub-tasks; a ranking per benchmark; the training cost of each run; the charts), {@code results.json} (everything in one
 * file), {@code accuracy.svg} (accuracy per benchmark per strategy with standard-error bars) and {@code loss_curves.svg}
 * (the training loss of every run), drawn with XChart; and each run's model card ({@code runs/NAME/README.md}).
 */
final class Report {
    private static final ObjectMapper JSON = new ObjectMapper();
    static final String AVG = "MMLU (5-subject average)";

    private final Recipe recipe;
    private final Path out, baseDir;
    private final JsonNode base;
    private final Map<String, JsonNode> runs;

    Report(Recipe recipe, Path out, Path baseDir, JsonNode base, Map<String, JsonNode> runs) {
        this.recipe = recipe;
        this.out = out;
        this.baseDir = baseDir;
        this.base = base;
        this.runs = runs;
    }

    /** One benchmark score: value and standard error as fractions (NaN when absent). */
    record Score(String metric, double value, double stderr) {}

    /** The benchmarks of the table, in order: the five-subject average, other tasks, then MMLU subjects. */
    List<String> benchmarks() {
        List<String> b = new ArrayList<>();
        List<String> subjects = new ArrayList<>(), others = new ArrayList<>();
        for (Iterator<String> it = base.get("results").fieldNames(); it.hasNext(); ) {
            String n = it.next();
            if (n.startsWith("mmlu_") && Tasks.task(n) != null) subjects.add(n);
            else if (Tasks.task(n) != null) others.add(n);
        }
        long five = Reports.FIVE_SUBJECTS.stream().filter(s -> subjects.contains("mmlu_" + s)).count();
        if (five > 0) b.add(AVG);
        b.addAll(others);
        b.addAll(subjects);
        return b;
    }

    static Score score(JsonNode results, String bench) {
        JsonNode r = results.get("results");
        if (bench.equals(AVG)) {
            double sum = 0, var = 0;
            int n = 0;
            for (String s : Reports.FIVE_SUBJECTS) {
                JsonNode t = r.get("mmlu_" + s);
                if (t == null || !t.has("acc,none")) continue;
                sum += t.get("acc,none").asDouble();
                double se = t.path("acc_stderr,none").asDouble(Double.NaN);
                var += se * se;
                n++;
            }
            return new Score("acc", n == 0 ? Double.NaN : sum / n, n == 0 ? Double.NaN : Math.sqrt(var) / n);
        }
        JsonNode t = r.get(bench);
        if (t == null) return new Score("acc", Double.NaN, Double.NaN);
        String metric = t.has("acc_norm,none") ? "acc_norm" : "acc";
        return new Score(metric, t.path(metric + ",none").asDouble(Double.NaN), t.path(metric + "_stderr,none").asDouble(Double.NaN));
    }

    static String pct(double v) { return Double.isNaN(v) ? "-" : String.format(Locale.ROOT, "%.2f", 100 * v); }

    static String change(double tuned, double b) { return dev.peft4j.eval.Reports.change(tuned, b); }

    void write() throws IOException {
        List<String> benches = benchmarks();
        List<String> names = new ArrayList<>(runs.keySet());
        StringBuilder md = new StringBuilder();
        md.append("# Strategy comparison: ").append(recipe.name).append("\n\n");
        md.append("Base model `").append(recipe.baseModel).append("`, data `").append(recipe.data.data).append("` (template ")
                .append(recipe.data.template).append("); evaluation: ").append(String.join(", ", recipe.eval.tasks()))
                .append(", ").append(recipe.eval.numFewshot()).append("-shot")
                .append(recipe.eval.limit() == null ? "" : ", --limit " + fmtLimit(recipe.eval.limit())).append(".\n\n");
        md.append("Each cell: accuracy in percent (tuned) and, in brackets, the change in points against the base (bold: a gain).\n\n");
        // the table
        md.append("| Benchmark | Metric | Base |");
        for (String n : names) md.append(' ').append(n).append(" |");
        md.append("\n|---|---|---:|");
        md.append("---:|".repeat(names.size()));
        md.append('\n');
        for (String b : benches) {
            Score bs = score(base, b);
            String label = b.startsWith("mmlu_") ? b.substring(5) : b;
            md.append("| ").append(label).append(" | ").append(bs.metric()).append(" | ").append(pct(bs.value())).append(" |");
            for (String n : names) {
                Score s = score(runs.get(n), b);
                md.append(' ').append(pct(s.value())).append(" (").append(change(s.value(), bs.value())).append(") |");
            }
            md.append('\n');
        }
        // ranking
        md.append("\n## Ranking per benchmark\n\n");
        String[] ord = {"best", "second-best", "third", "fourth", "fifth", "sixth", "seventh", "eighth"};
        ObjectNode rankings = JSON.createObjectNode();
        for (String b : benches) {
            if (b.startsWith("mmlu_")) continue;
            List<String> sorted = new ArrayList<>(names);
            sorted.sort(Comparator.comparingDouble((String n) -> -nz(score(runs.get(n), b).value())).thenComparing(names::indexOf));
            ArrayNode ra = rankings.putArray(b);
            md.append("- **").append(b).append("**: ");
            // equal values (as shown) share a place
            int place = 0;
            String prev = null;
            for (int i = 0; i < sorted.size(); i++) {
                String n = sorted.get(i), v = pct(score(runs.get(n), b).value());
                ra.add(n);
                if (v.equals(prev)) {
                    md.append(", ").append(n);
                    continue;
                }
                if (prev != null) md.append(" (").append(prev).append("); ");
                md.append(place < ord.length ? ord[place] : (place + 1) + "th").append(' ').append(n);
                place++;
                prev = v;
            }
            if (prev != null) md.append(" (").append(prev).append(")");
            md.append("; base ").append(pct(score(base, b).value())).append('\n');
        }
        // training cost
        md.append("\n## Training cost\n\n| Run | Method | Steps | Tokens | Wall time | Trainable parameters | Final loss |\n|---|---|---:|---:|---:|---:|---:|\n");
        Map<String, JsonNode> summaries = new LinkedHashMap<>();
        for (String n : names) {
            Recipe.Run r = recipe.byName().get(n);
            JsonNode s = readJson(out.resolve("runs").resolve(n).resolve("train_summary.json"));
            summaries.put(n, s);
            String method = r.method() + (r.method().equals("distill") ? " (" + r.trained() + " student, teacher " + r.train().teacher + ")" : "")
                    + (r.train().quantize == dev.peft4j.model.Quantization.NONE ? "" : ", " + r.train().quantize.id() + " base");
            md.append("| ").append(n).append(" | ").append(method).append(" | ").append(s.path("steps").asLong())
                    .append(" | ").append(Fmt.count(s.path("tokens_total").asLong(s.path("tokens_this_run").asLong())))
                    .append(" | ").append(Fmt.duration(s.path("seconds_total").asDouble(s.path("seconds_this_run").asDouble())))
                    .append(" | ").append(Fmt.count(s.path("trainable_parameters").asLong()))
                    .append(" | ").append(Fmt.loss(s.path("final_loss").asDouble(Double.NaN))).append(" |\n");
        }
        // charts
        boolean charts = charts(benches, names);
        if (charts) {
            md.append("\n## Charts\n\n![accuracy per benchmark](accuracy.svg)\n\n![training loss](loss_curves.svg)\n");
        }
        md.append("\nModel cards: ");
        for (int i = 0; i < names.size(); i++) md.append(i > 0 ? ", " : "").append("[").append(names.get(i)).append("](runs/").append(names.get(i)).append("/README.md)");
        md.append(". All numbers: `results.json`.\n");
        AtomicFiles.writeString(out.resolve("REPORT.md"), md.toString());

        // cards
        for (String n : names) card(recipe.byName().get(n), runs.get(n));

        // results.json
        ObjectNode all = JSON.createObjectNode();
        all.put("experiment", recipe.name);
        all.put("recipe", recipe.file.toString());
        all.put("base_model", recipe.baseModel);
        all.set("eval", JSON.valueToTree(Map.of("tasks", recipe.eval.tasks(), "num_fewshot", recipe.eval.numFewshot(),
                "limit", recipe.eval.limit() == null ? "none" : fmtLimit(recipe.eval.limit()))));
        ObjectNode bn = all.putObject("base");
        bn.set("scores", scores(base, benches));
        bn.set("results", base.get("results"));
        ArrayNode rs = all.putArray("runs");
        for (String n : names) {
            Recipe.Run r = recipe.byName().get(n);
            ObjectNode o = rs.addObject();
            o.put("name", n);
            o.put("method", r.method());
            if (r.method().equals("distill")) o.put("student", r.trained());
            if (r.train().quantize != dev.peft4j.model.Quantization.NONE) o.put("quantize", r.train().quantize.id());
            o.set("recipe_entry", r.entry());
            o.put("output", out.resolve("runs").resolve(n).toString());
            o.set("training", summaries.get(n));
            o.set("scores", scores(runs.get(n), benches));
            ObjectNode ch = o.putObject("change_points");
            for (String b : benches) ch.put(b, 100 * score(runs.get(n), b).value() - 100 * score(base, b).value());
            o.set("results", runs.get(n).get("results"));
            o.put("card", out.resolve("runs").resolve(n).resolve("README.md").toString());
        }
        all.set("rankings", rankings);
        AtomicFiles.writeString(out.resolve("results.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(all) + "\n");
    }

    private static double nz(double v) { return Double.isNaN(v) ? Double.NEGATIVE_INFINITY : v; }

    private static String fmtLimit(double l) { return l == Math.rint(l) ? String.valueOf((long) l) : String.valueOf(l); }

    private ObjectNode scores(JsonNode res, List<String> benches) {
        ObjectNode o = JSON.createObjectNode();
        for (String b : benches) {
            Score s = score(res, b);
            ObjectNode x = o.putObject(b);
            x.put("metric", s.metric());
            x.put("value", s.value());
            x.put("stderr", s.stderr());
        }
        return o;
    }

    private static JsonNode readJson(Path p) throws IOException {
        return Files.isRegularFile(p) ? JSON.readTree(p.toFile()) : JSON.createObjectNode();
    }

    private void card(Recipe.Run r, JsonNode tuned) throws IOException {
        Path dir = out.resolve("runs").resolve(r.name());
        String text;
        String baseName = recipe.baseModel.equals("quickstart") ? baseDir.toString() : recipe.baseModel;
        if (Files.isRegularFile(dir.resolve("adapter_config.json"))) {
            text = ModelCard.render(dir, base, tuned, baseName);
        } else {
            StringBuilder sb = new StringBuilder();
            sb.append("---\nbase_model: ").append(baseName).append("\nlibrary_name: transformers\npipeline_tag: text-generation\ntags:\n- peft4j\n- ")
                    .append(r.method()).append("\n---\n\n# ").append(r.name()).append("\n\n");
            sb.append(r.method().equals("distill") ? "`" + baseName + "` fine-tuned in full by knowledge distillation from `" + r.train().teacher
                    + "` (kd_alpha " + r.train().kdAlpha + ", kd_beta " + r.train().kdBeta + ", temperature " + r.train().kdTemperature + ")"
                    : "`" + baseName + "` fine-tuned in full").append(" with peft4j on `").append(recipe.data.data).append("`.\n\n");
            sb.append("## Evaluation\n\n").append(Reports.compare(base, tuned)).append('\n');
            sb.append("Training settings: `training_args.json`; loss curve: `loss_curve.svg`.\n");
            text = sb.toString();
        }
        AtomicFiles.writeString(dir.resolve("README.md"), text);
    }

    /** accuracy.svg and loss_curves.svg; false if the charts could not be drawn (no fonts on a headless machine). */
    private boolean charts(List<String> benches, List<String> names) {
        try {
            System.setProperty("java.awt.headless", "true");
            List<String> main = benches.stream().filter(b -> !b.startsWith("mmlu_")).toList();
            CategoryChart bar = new CategoryChartBuilder().width(900).height(500).title("Accuracy per benchmark (error bars: standard error)")
                    .xAxisTitle("benchmark").yAxisTitle("accuracy (%)").build();
            bar.getStyler().setLegendPosition(Styler.LegendPosition.OutsideE);
            bar.getStyler().setErrorBarsColorSeriesColor(true);
            addBars(bar, "base", base, main);
            for (String n : names) addBars(bar, n, runs.get(n), main);
            AtomicFiles.write(out.resolve("accuracy.svg"), o -> VectorGraphicsEncoder.saveVectorGraphic(bar, o, VectorGraphicsEncoder.VectorGraphicsFormat.SVG));

            XYChart loss = new XYChartBuilder().width(900).height(500).title("Training loss").xAxisTitle("step").yAxisTitle("loss").build();
            loss.getStyler().setLegendPosition(Styler.LegendPosition.OutsideE);
            boolean any = false;
            for (String n : names) {
                Path m = out.resolve("runs").resolve(n).resolve("metrics.jsonl");
                if (!Files.isRegularFile(m)) continue;
                List<Double> x = new ArrayList<>(), y = new ArrayList<>();
                for (JsonNode l : MetricsWriter.read(m)) {
                    if (!l.has("loss")) continue;
                    x.add(l.get("step").asDouble());
                    y.add(l.get("loss").asDouble());
                }
                if (x.isEmpty()) continue;
                XYSeries s = loss.addSeries(n, x, y);
                s.setMarker(SeriesMarkers.NONE);
                any = true;
            }
            if (any) AtomicFiles.write(out.resolve("loss_curves.svg"), o -> VectorGraphicsEncoder.saveVectorGraphic(loss, o, VectorGraphicsEncoder.VectorGraphicsFormat.SVG));
            return true;
        } catch (RuntimeException | Error e) {
            System.err.println("warning: charts not drawn (" + e + ")");
            return false;
        }
    }

    private static void addBars(CategoryChart chart, String name, JsonNode res, List<String> benches) {
        List<Double> v = new ArrayList<>(), e = new ArrayList<>();
        for (String b : benches) {
            Score s = score(res, b);
            v.add(Double.isNaN(s.value()) ? 0 : 100 * s.value());
            e.add(Double.isNaN(s.stderr()) ? 0 : 100 * s.stderr());
        }
        chart.addSeries(name, benches, v, e);
    }
}
