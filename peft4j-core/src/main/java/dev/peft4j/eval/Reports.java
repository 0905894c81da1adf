package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;

/** Markdown tables from results JSON: lm-eval's results table, and the tuned-vs-baseline comparison. */
public final class Reports {
    private Reports() {}

    /** The five MMLU subjects whose unweighted mean the comparison reports. */
    public static final List<String> FIVE_SUBJECTS = List.of("formal_logic", "professional_law",
            "high_school_computer_science", "abstract_algebra", "high_school_mathematics");

    public static JsonNode readResults(Path file, String option) {
        if (Files.isDirectory(file)) throw new UserException(option + ": " + file + " is a directory, expected a results JSON file");
        if (!Files.isRegularFile(file)) throw new UserException(option + ": " + file + " not found");
        try {
            JsonNode n = new ObjectMapper().readTree(file.toFile());
            if (n == null || !n.has("results") || !n.get("results").isObject()) {
                throw new UserException(option + ": " + file + " is not an lm-eval results file (no \"results\" object)");
            }
            return n;
        } catch (IOException e) {
            throw new UserException(option + ": " + file + " is not valid JSON (" + e.getMessage().split("\n")[0] + ")");
        }
    }

    /** lm-eval's {@code make_table}: Tasks | Version | Filter | n-shot | Metric | | Value | | Stderr. */
    public static String resultsTable(JsonNode root) {
        List<String[]> rows = new ArrayList<>();
        for (Iterator<String> it = root.get("results").fieldNames(); it.hasNext(); ) {
            String name = it.next();
            JsonNode r = root.get("results").get(name);
            String alias = r.path("alias").asText(name);
            String version = fmtVersion(root.path("versions").get(name));
            JsonNode shot = root.path("n-shot").get(name);
            boolean first = true;
            for (Iterator<String> ks = r.fieldNames(); ks.hasNext(); ) {
                String key = ks.next();
                if (key.equals("alias") || key.contains("_stderr,") || !key.contains(",")) continue;
                String metric = key.substring(0, key.indexOf(',')), filter = key.substring(key.indexOf(',') + 1);
                JsonNode se = r.get(metric + "_stderr," + filter);
                boolean higher = root.path("higher_is_better").path(name).path(metric).asBoolean(true);
                rows.add(new String[]{first ? alias : "", first ? version : "", filter, shot == null ? "" : shot.asText(), metric,
                        higher ? "↑" : "↓", String.format(Locale.ROOT, "%.4f", r.get(key).asDouble()), "±",
                        se == null || !se.isNumber() ? "N/A" : String.format(Locale.ROOT, "%.4f", se.asDouble())});
                first = false;
            }
        }
        return markdown(new String[]{"Tasks", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"},
                new boolean[]{false, true, false, true, false, false, true, false, true}, rows);
    }

    private static String fmtVersion(JsonNode v) {
        if (v == null) return "N/A";
        if (v.isNumber() && v.asDouble() == Math.rint(v.asDouble())) return String.valueOf((long) v.asDouble());
        return v.asText();
    }

    static String markdown(String[] header, boolean[] right, List<String[]> rows) {
        int[] w = new int[header.length];
        for (int i = 0; i < header.length; i++) w[i] = Math.max(3, header[i].length());
        for (String[] r : rows) for (int i = 0; i < r.length; i++) w[i] = Math.max(w[i], r[i].length());
        StringBuilder sb = new StringBuilder();
        line(sb, header, w, right);
        sb.append('|');
        for (int i = 0; i < w.length; i++) sb.append("-".repeat(right[i] ? w[i] - 1 : w[i])).append(right[i] ? ":|" : "|");
        sb.append('\n');
        for (String[] r : rows) line(sb, r, w, right);
        return sb.toString();
    }

    private static void line(StringBuilder sb, String[] cells, int[] w, boolean[] right) {
        sb.append('|');
        for (int i = 0; i < cells.length; i++) {
            String pad = " ".repeat(w[i] - cells[i].length());
            sb.append(right[i] ? pad + cells[i] : cells[i] + pad).append('|');
        }
        sb.append('\n');
    }

    /** The primary metric of a results entry: acc_norm if present (HellaSwag, ARC, PIQA), else the first metric. */
    static String primaryMetric(JsonNode entry) {
        String first = null;
        for (Iterator<String> ks = entry.fieldNames(); ks.hasNext(); ) {
            String k = ks.next();
            if (k.equals("alias") || k.contains("_stderr,") || !k.contains(",") || !entry.get(k).isNumber()) continue;
            if (k.startsWith("acc_norm,")) return k;
            if (first == null) first = k;
        }
        return first;
    }

    /**
     * The comparison table: one row per benchmark present in both files (MMLU subjects only in the breakdown), headed by the
     * unweighted mean of the five MMLU subjects; values in percent, change in points, bold where the tuned model is better.
     */
    public static String compare(JsonNode base, JsonNode tuned) {
        JsonNode br = base.get("results"), tr = tuned.get("results");
        List<String[]> rows = new ArrayList<>();
        List<Double> fiveT = new ArrayList<>(), fiveB = new ArrayList<>();
        for (String s : FIVE_SUBJECTS) {
            JsonNode b = br.get("mmlu_" + s), t = tr.get("mmlu_" + s);
            if (b != null && t != null && b.has("acc,none") && t.has("acc,none")) {
                fiveB.add(b.get("acc,none").asDouble());
                fiveT.add(t.get("acc,none").asDouble());
            }
        }
        if (!fiveT.isEmpty()) {
            String label = fiveT.size() == FIVE_SUBJECTS.size() ? "MMLU (5-subject average)"
                    : "MMLU (average of " + fiveT.size() + " of the 5 subjects)";
            rows.add(row(label, "acc", mean(fiveT), mean(fiveB)));
        }
        List<String[]> breakdown = new ArrayList<>();
        for (Iterator<String> it = tr.fieldNames(); it.hasNext(); ) {
            String name = it.next();
            JsonNode t = tr.get(name), b = br.get(name);
            if (b == null) continue;
            boolean subject = name.startsWith("mmlu_") && Tasks.task(name) != null;
            String metric = primaryMetric(t);
            if (metric == null || !b.has(metric)) continue;
            String m = metric.substring(0, metric.indexOf(','));
            String label = subject ? name.substring(5) : name;
            String[] r = row(label, m, t.get(metric).asDouble(), b.get(metric).asDouble());
            (subject ? breakdown : rows).add(r);
        }
        if (rows.isEmpty() && breakdown.isEmpty()) {
            throw new UserException("--base and --tuned have no task in common");
        }
        StringBuilder sb = new StringBuilder();
        String[] header = {"Benchmark", "Metric", "Tuned", "Baseline", "Change"};
        boolean[] right = {false, false, true, true, true};
        if (!rows.isEmpty()) sb.append(markdown(header, right, rows));
        if (!breakdown.isEmpty()) {
            if (!sb.isEmpty()) sb.append('\n');
            sb.append("MMLU sub-tasks:\n\n");
            header[0] = "MMLU subject";
            sb.append(markdown(header, right, breakdown));
        }
        return sb.toString();
    }

    private static double mean(List<Double> xs) { return xs.stream().mapToDouble(Double::doubleValue).average().orElse(Double.NaN); }

    private static String[] row(String label, String metric, double tuned, double base) {
        return new String[]{label, metric, String.format(Locale.ROOT, "%.2f", 100 * tuned), String.format(Locale.ROOT, "%.2f", 100 * base), change(tuned, base)};
    }

    /**
     * The change of an accuracy against the base in points, two decimals with its sign, bold when it is a gain at that
     * precision ("+0.00", never "-0.00", for a change that rounds to zero).
     */
    public static String change(double tuned, double base) {
        double c = Math.round((100 * tuned - 100 * base) * 100) / 100.0;
        if (c == 0) return "+0.00";
        String s = String.format(Locale.ROOT, "%+.2f", c);
        return c > 0 ? "**" + s + "**" : s;
    }
}
