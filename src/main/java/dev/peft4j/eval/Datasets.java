package dev.peft4j.eval;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.UserException;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;

/**
 * Reads a task's documents from {@code --data-dir}. Layouts (first match wins):
 * <ul>
 *   <li>MMLU: {@code <data-dir>/mmlu/<split>/<subject>_<split>.csv} (the original Hendrycks CSVs, no header:
 *       question,A,B,C,D,answer; split {@code dev}, {@code val} or {@code test}).</li>
 *   <li>Others: one JSON object per line, Hugging Face field names, in {@code <data-dir>/<task>/<split>.jsonl}
 *       (also {@code <task>-<split>.jsonl}, {@code <task>_<split>.jsonl}, with {@code val} for validation,
 *       e.g. {@code hellaswag/hellaswag-val.jsonl}).</li>
 * </ul>
 */
public final class Datasets {
    private Datasets() {}

    private static final ObjectMapper JSON = new ObjectMapper();

    /** A document and where it came from ({@code file:line}) for error messages. */
    public record Doc(JsonNode json, String source) {}

    /** Files that would be tried for a split, in order. */
    public static List<Path> candidates(Path dataDir, Task task, String split) {
        LinkedHashSet<Path> out = new LinkedHashSet<>();
        for (String d : task.dataset().dirs()) {
            Path dir = d.isEmpty() ? dataDir : dataDir.resolve(d);
            if (task.dataset().format().equals("csv-mmlu")) {
                for (String s : mmluSplitNames(split)) out.add(dir.resolve(s).resolve(task.dataset().subject() + "_" + s + ".csv"));
            } else {
                String base = Path.of(d.isEmpty() ? task.name() : d).getFileName().toString();
                String shortSplit = split.equals("validation") ? "val" : split;
                out.add(dir.resolve(split + ".jsonl"));
                for (String s : new LinkedHashSet<>(List.of(shortSplit, split))) {
                    out.add(dir.resolve(base + "-" + s + ".jsonl"));
                    out.add(dir.resolve(base + "_" + s + ".jsonl"));
                }
            }
        }
        return new ArrayList<>(out);
    }

    private static List<String> mmluSplitNames(String split) {
        return split.equals("validation") ? List.of("val", "validation") : List.of(split);
    }

    /** Loads and validates (runs process_docs, doc_to_text/choice/target on) every document of a split. */
    public static List<Doc> load(Path dataDir, Task task, String split) {
        List<Path> tried = candidates(dataDir, task, split);
        Path file = tried.stream().filter(Files::isRegularFile).findFirst().orElseThrow(() -> new UserException(
                "missing data for task " + task.name() + " (" + split + " split): looked for "
                        + String.join(", ", tried.stream().map(Path::toString).toList())));
        List<Doc> raw = task.dataset().format().equals("csv-mmlu") ? readMmluCsv(file, task.dataset().subject()) : readJsonl(file);
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
