package dev.peft4j.eval;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.UserException;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads a task's documents from {@code --data-dir}. Layouts (first match wins; a candidate ending in {@code *.parquet}
 * is a set of shards, read in name order):
 * <ul>
 *   <li>MMLU: {@code <data-dir>/mmlu/<split>/<subject>_<split>.csv} (the original Hendrycks CSVs, no header:
 *       question,A,B,C,D,answer; split {@code dev}, {@code val} or {@code test}), or cais/mmlu's Parquet files
 *       {@code <data-dir>/mmlu/<subject>/<split>-*.parquet}.</li>
 *   <li>Others: Hugging Face rows with their field names, as JSON Lines in {@code <data-dir>/<task>/<split>.jsonl}
 *       (also {@code <task>-<split>.jsonl}, {@code <task>_<split>.jsonl}, with {@code val} for validation,
 *       e.g. {@code hellaswag/hellaswag-val.jsonl}), or as Parquet: {@code <split>.parquet},
 *       {@code <split>-00000-of-00001.parquet} (shards), the same under {@code data/} or the dataset's config folder
 *       (e.g. {@code ARC-Easy/}), or the Hub's converted layout {@code <config>/<split>/0000.parquet}.</li>
 * </ul>
 */
public final class Datasets {
    private Datasets() {}

    private static final ObjectMapper JSON = new ObjectMapper();

    /** A document and where it came from ({@code file:line}) for error messages. */
    public record Doc(JsonNode json, String source) {}

    /** Files that would be tried for a split, in order; a name with {@code *} stands for the shards it matches. */
    public static List<Path> candidates(Path dataDir, Task task, String split) {
        LinkedHashSet<Path> out = new LinkedHashSet<>();
        for (String d : task.dataset().dirs()) {
            Path dir = d.isEmpty() ? dataDir : dataDir.resolve(d);
            if (task.dataset().format().equals("csv-mmlu")) {
                for (String s : mmluSplitNames(split)) out.add(dir.resolve(s).resolve(task.dataset().subject() + "_" + s + ".csv"));
                parquet(out, dir.resolve(task.dataset().subject()), split);
            } else {
                String base = Path.of(d.isEmpty() ? task.name() : d).getFileName().toString();
                String shortSplit = split.equals("validation") ? "val" : split;
                out.add(dir.resolve(split + ".jsonl"));
                for (String s : new LinkedHashSet<>(List.of(shortSplit, split))) {
                    out.add(dir.resolve(base + "-" + s + ".jsonl"));
                    out.add(dir.resolve(base + "_" + s + ".jsonl"));
                }
                parquet(out, dir, split);
                parquet(out, dir.resolve("data"), split);
                Object config = task.config() == null ? null : task.config().get("dataset_name");
                String sub = config instanceof String c && !c.isEmpty() && !base.equals(c) ? c : null;
                if (sub != null) parquet(out, dir.resolve(sub), split);
                // refs/convert/parquet: <config>/<split>/0000.parquet
                out.add(dir.resolve(sub != null ? sub : "default").resolve(split).resolve("*.parquet"));
                out.add(dir.resolve(split).resolve("*.parquet"));
            }
        }
        return new ArrayList<>(out);
    }

    private static void parquet(LinkedHashSet<Path> out, Path dir, String split) {
        out.add(dir.resolve(split + ".parquet"));
        out.add(dir.resolve(split + "-*.parquet"));
    }

    /** The files a candidate stands for (none when absent): itself, or its shards in name order, checked complete. */
    static List<Path> resolve(Path candidate) {
        String name = candidate.getFileName().toString();
        if (!name.contains("*")) return Files.isRegularFile(candidate) ? List.of(candidate) : List.of();
        Path dir = candidate.getParent();
        if (!Files.isDirectory(dir)) return List.of();
        List<Path> files = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, name)) {
            for (Path p : ds) if (Files.isRegularFile(p)) files.add(p);
        } catch (IOException e) {
            throw new UserException(dir + ": cannot list (" + e.getMessage() + ")");
        }
        files.sort(Comparator.comparing(p -> p.getFileName().toString()));
        // <split>-00001-of-00003.parquet: all shards must be there
        Integer total = null;
        java.util.TreeSet<Integer> seen = new java.util.TreeSet<>();
        for (Path p : files) {
            Matcher m = SHARD.matcher(p.getFileName().toString());
            if (!m.matches()) continue;
            int of = Integer.parseInt(m.group(2));
            if (total != null && total != of) {
                throw new UserException(dir + ": shards of " + name + " disagree on their count (" + total + " and " + of + ")");
            }
            total = of;
            seen.add(Integer.parseInt(m.group(1)));
        }
        if (total != null) {
            for (int i = 0; i < total; i++) {
                if (!seen.contains(i)) {
                    throw new UserException(dir + ": missing shard " + i + " of " + total + " (found " + seen.size() + " files matching " + name + ")");
                }
            }
        }
        return files;
    }

    private static final Pattern SHARD = Pattern.compile(".*-(\\d+)-of-(\\d+)\\.parquet");

    private static List<String> mmluSplitNames(String split) {
        return split.equals("validation") ? List.of("val", "validation") : List.of(split);
    }

    /** Loads and validates (runs process_docs, doc_to_text/choice/target on) every document of a split. */
    public static List<Doc> load(Path dataDir, Task task, String split) {
        List<Path> tried = candidates(dataDir, task, split);
        List<Path> files = tried.stream().map(Datasets::resolve).filter(f -> !f.isEmpty()).findFirst().orElseThrow(() -> new UserException(
                "missing data for task " + task.name() + " (" + split + " split): looked for "
                        + String.join(", ", tried.stream().map(Path::toString).toList())));
        List<Doc> raw = new ArrayList<>();
        for (Path f : files) raw.addAll(read(f, task));
        String file = files.size() == 1 ? files.get(0).toString() : files.get(0) + " (and " + (files.size() - 1) + " more shards)";
        List<Doc> out = new ArrayList<>(raw.size());
        for (Doc d : raw) {
            for (String f : task.dataset().required()) {
                if (!d.json().has(f) || d.json().get(f).isNull()) {
                    throw new UserException(d.source() + ": malformed " + task.name() + " row: missing field '" + f + "'");
                }
            }
            try {
                JsonNode p = task.processDoc().apply(d.json());
                task.docToText().apply(p);
                if (task.docToChoice() != null) task.docToChoice().apply(p);
                Object target = task.docToTarget().apply(p);
                if (task.docToChoice() != null && target instanceof Integer i) {
                    int n = task.docToChoice().apply(p).size();
                    if (i < 0 || i >= n) throw new IllegalArgumentException("gold index " + i + " is out of range for " + n + " choices");
                }
                out.add(new Doc(p, d.source()));
            } catch (UserException e) {
                throw e;
            } catch (RuntimeException e) {
                throw new UserException(d.source() + ": malformed " + task.name() + " row: " + e.getMessage());
            }
        }
        if (out.isEmpty()) throw new UserException(file + ": no documents");
        return out;
    }

    private static List<Doc> read(Path file, Task task) {
        String name = file.getFileName().toString();
        if (name.endsWith(".parquet")) {
            List<Doc> out = new ArrayList<>();
            int row = 0;
            for (ObjectNode n : Parquet.read(file)) out.add(new Doc(n, file + " row " + ++row));
            return out;
        }
        if (name.endsWith(".csv")) return readMmluCsv(file, task.dataset().subject());
        return readJsonl(file);
    }

    static List<Doc> readJsonl(Path file) {
        List<Doc> out = new ArrayList<>();
        try (BufferedReader r = Files.newBufferedReader(file, StandardCharsets.UTF_8)) {
            String line;
            int no = 0;
            while ((line = r.readLine()) != null) {
                no++;
                if (line.isBlank()) continue;
                JsonNode n;
                try {
                    n = JSON.readTree(line);
                } catch (JsonProcessingException e) {
                    throw new UserException(file + ":" + no + ": not valid JSON (" + e.getOriginalMessage() + ")");
                }
                if (!n.isObject()) throw new UserException(file + ":" + no + ": expected a JSON object per line");
                out.add(new Doc(n, file + ":" + no));
            }
        } catch (IOException e) {
            throw new UserException(file + ": cannot read (" + e.getMessage() + ")");
        }
        return out;
    }

    /** MMLU CSV rows as cais/mmlu documents: {@code question, subject, choices[4], answer (0..3)}. */
    static List<Doc> readMmluCsv(Path file, String subject) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UserException(file + ": cannot read (" + e.getMessage() + ")");
        }
        List<Doc> out = new ArrayList<>();
        for (Csv.Row row : Csv.parse(text, file.toString())) {
            String where = file + ":" + row.line();
            List<String> f = row.fields();
            if (f.size() != 6) {
                throw new UserException(where + ": malformed MMLU row: expected 6 fields (question,A,B,C,D,answer), got " + f.size());
            }
            String a = f.get(5).strip();
            int answer = "ABCD".indexOf(a);
            if (a.length() != 1 || answer < 0) throw new UserException(where + ": malformed MMLU row: answer must be A, B, C or D, got '" + a + "'");
            ObjectNode doc = JSON.createObjectNode();
            doc.put("question", f.get(0));
            doc.put("subject", subject);
            ArrayNode choices = doc.putArray("choices");
            for (int i = 1; i <= 4; i++) choices.add(f.get(i));
            doc.put("answer", answer);
            out.add(new Doc(doc, where));
        }
        return out;
    }
}
