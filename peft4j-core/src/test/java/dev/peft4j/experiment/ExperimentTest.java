package dev.peft4j.experiment;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/** {@code peft4j experiment} on the shipped quickstart recipe (made smaller), and the refusal of bad recipes. */
class ExperimentTest {
    @TempDir
    Path tmp;

    static final Path QUICKSTART = Path.of("../recipes/quickstart.yaml");
    static final YAMLMapper YAML = new YAMLMapper();

    /** The shipped quickstart recipe with fewer steps and documents (same runs, tasks and options). */
    Path smallQuickstart() throws Exception {
        ObjectNode r = (ObjectNode) YAML.readTree(QUICKSTART.toFile());
        r.put("quickstart_pretrain_steps", 12);
        ((ObjectNode) r.get("train")).put("max_steps", 2);
        ((ObjectNode) r.get("train")).put("save_every", 1);
        ((ObjectNode) r.get("eval")).put("limit", 3);
        Path f = tmp.resolve("quickstart.yaml");
        YAML.writeValue(f.toFile(), r);
        return f;
    }

    static Experiment.Result run(Path recipe, Path out, Set<String> rerun, boolean dry, ByteArrayOutputStream log) throws Exception {
        return new Experiment(Recipe.load(recipe), new Experiment.Options(out, rerun, dry, false, new PrintStream(log, true))).run();
    }

    @Test
    void quickstartRecipeWritesAReportThatMatchesThePerRunResults() throws Exception {
        Path recipe = smallQuickstart(), out = tmp.resolve("exp");
        ByteArrayOutputStream log = new ByteArrayOutputStream();
        run(recipe, out, Set.of(), false, log);
        String text = log.toString();
        assertTrue(text.contains("[1/9] base: evaluate"), text);
        assertTrue(text.contains("overall ETA") || text.contains("[9/9]"), text);

        Path report = out.resolve("REPORT.md");
        assertTrue(Files.isRegularFile(report));
        String md = Files.readString(report);
        List<String> runs = List.of("full", "prompt-tuning", "lora", "distill");
        String header = md.lines().filter(l -> l.startsWith("| Benchmark |")).findFirst().orElseThrow();
        List<String> cols = cells(header);
        assertEquals(List.of("Benchmark", "Metric", "Base", "full", "prompt-tuning", "lora", "distill"), cols);
        ObjectMapper json = new ObjectMapper();
        JsonNode base = json.readTree(out.resolve("base_results.json").toFile());
        List<String> rows = List.of(Report.AVG, "hellaswag", "formal_logic", "professional_law", "high_school_computer_science",
                "abstract_algebra", "high_school_mathematics");
        for (String row : rows) {
            String line = md.lines().filter(l -> l.startsWith("| " + row + " |")).findFirst().orElseThrow(() -> new AssertionError("row " + row + " in\n" + md));
            List<String> c = cells(line);
            assertEquals(7, c.size(), line);
            double b = value(base, row);
            assertEquals(String.format(Locale.ROOT, "%.2f", 100 * b), c.get(2), row + " base");
            for (int i = 0; i < runs.size(); i++) {
                JsonNode r = json.readTree(out.resolve("runs").resolve(runs.get(i)).resolve("eval_results.json").toFile());
                double v = value(r, row);
                double ch = 100 * v - 100 * b;
                String chs = String.format(Locale.ROOT, "%+.2f", ch);
                assertEquals(String.format(Locale.ROOT, "%.2f", 100 * v) + " (" + (ch > 0 ? "**" + chs + "**" : chs) + ")", c.get(3 + i), row + " " + runs.get(i));
            }
        }
        assertTrue(md.contains("## Ranking per benchmark") && md.contains("best ") && md.contains("second-best "), md);
        assertTrue(md.contains("## Training cost"), md);
        for (String r : runs) {
            assertTrue(md.lines().anyMatch(l -> l.startsWith("| " + r + " | ")), "cost row of " + r);
            assertTrue(Files.isRegularFile(out.resolve("runs").resolve(r).resolve("README.md")), "card of " + r);
        }
        assertTrue(Files.readString(out.resolve("accuracy.svg")).contains("<svg"));
        assertTrue(Files.readString(out.resolve("loss_curves.svg")).contains("<svg"));
        JsonNode results = json.readTree(out.resolve("results.json").toFile());
        assertEquals(4, results.get("runs").size());
        JsonNode distill = results.get("runs").get(3);
        assertEquals("distill", distill.get("method").asText());
        assertEquals(value(json.readTree(out.resolve("runs/distill/eval_results.json").toFile()), "hellaswag"),
                distill.at("/scores/hellaswag/value").asDouble(), 0.0);
        assertTrue(distill.at("/training/trainable_parameters").asLong() > 0);
        assertEquals(2, distill.at("/training/steps").asInt());
        JsonNode args = json.readTree(out.resolve("runs/distill/training_args.json").toFile());
        assertEquals(out.resolve("runs/full").toString(), args.get("teacher").asText(), "run:full is the full run's output");

        // a second invocation skips everything and reuses every evaluation
        ByteArrayOutputStream again = new ByteArrayOutputStream();
        Experiment.Result r2 = run(recipe, out, Set.of(), false, again);
        assertTrue(r2.plan().stream().filter(l -> l.contains(": train")).allMatch(l -> l.contains("finished: skipped")), r2.plan().toString());
        assertTrue(r2.plan().stream().filter(l -> l.contains(": evaluate")).allMatch(l -> l.contains("cached")), r2.plan().toString());
        assertEquals(md, Files.readString(report));

        // a changed entry of a finished run is refused, naming the recipe line, unless --rerun names it
        String changed = Files.readString(recipe).replace("lora_r: 8", "lora_r: 4");
        assertNotEquals(changed, Files.readString(recipe));
        Files.writeString(recipe, changed);
        UserException e = assertThrows(UserException.class, () -> run(recipe, out, Set.of(), false, new ByteArrayOutputStream()));
        assertTrue(e.getMessage().contains("run 'lora' changed") && e.getMessage().contains("--rerun lora")
                && e.getMessage().matches(".*quickstart\\.yaml:\\d+:.*"), e.getMessage());
        Experiment.Result dry = run(recipe, out, Set.of("lora"), true, new ByteArrayOutputStream());
        assertTrue(dry.plan().stream().anyMatch(l -> l.contains("run lora: train") && l.contains("rerun")), dry.plan().toString());

        // a run killed after a checkpoint resumes from it
        Files.delete(out.resolve("runs/prompt-tuning/train_summary.json"));
        Experiment.Result resumed = run(recipe, out, Set.of("lora"), true, new ByteArrayOutputStream());
        assertTrue(resumed.plan().stream().anyMatch(l -> l.contains("run prompt-tuning: train") && l.contains("resumes")), resumed.plan().toString());
    }

    static List<String> cells(String line) {
        List<String> c = new ArrayList<>();
        for (String s : line.substring(1, line.length() - 1).split("\\|")) c.add(s.strip());
        return c;
    }

    static double value(JsonNode res, String row) {
        if (row.equals(Report.AVG)) return Report.score(res, Report.AVG).value();
        String task = row.equals("hellaswag") ? "hellaswag" : "mmlu_" + row;
        JsonNode t = res.get("results").get(task);
        return t.has("acc_norm,none") ? t.get("acc_norm,none").asDouble() : t.get("acc,none").asDouble();
    }

    // ----- bad recipes are refused before anything runs, with the line

    static final String GOOD = """
            name: t
            base_model: some/model
            data:
              file: d.jsonl
            eval:
              tasks: [hellaswag]
            runs:
              - name: a
                method: lora
                lora_r: 4
              - name: b
                method: distill
                teacher: google/gemma-3-1b-pt
                student: lora
                lora_r: 8
            """;

    static UserException refused(String yaml) {
        return assertThrows(UserException.class, () -> Recipe.parse(Path.of("r.yaml"), yaml));
    }

    @Test
    void badRecipesAreRefusedWithTheirLine() {
        Recipe ok = Recipe.parse(Path.of("r.yaml"), GOOD);
        assertEquals(2, ok.runs.size());
        assertEquals(8, ok.runs.get(1).train().loraR);
        assertEquals("lora", ok.runs.get(1).trained());

        UserException m = refused(GOOD.replace("method: lora\n", "method: qlora\n"));
        assertTrue(m.getMessage().startsWith("r.yaml:9:") && m.getMessage().contains("unknown method 'qlora'"), m.getMessage());
        UserException opt = refused(GOOD.replace("    lora_r: 4\n", "    num_virtual_tokens: 4\n"));
        assertTrue(opt.getMessage().startsWith("r.yaml:10:") && opt.getMessage().contains("option of method"), opt.getMessage());
        UserException teacher = refused(GOOD.replace("    teacher: google/gemma-3-1b-pt\n", ""));
        assertTrue(teacher.getMessage().startsWith("r.yaml:1") && teacher.getMessage().contains("needs a teacher"), teacher.getMessage());
        UserException dup = refused(GOOD.replace("name: b", "name: a"));
        assertTrue(dup.getMessage().startsWith("r.yaml:11:") && dup.getMessage().contains("duplicate run name 'a'"), dup.getMessage());
        UserException task = refused(GOOD.replace("[hellaswag]", "[hellaswag, mmlu_cooking]"));
        assertTrue(task.getMessage().startsWith("r.yaml:6:") && task.getMessage().contains("unknown task 'mmlu_cooking'"), task.getMessage());
        UserException key = refused(GOOD.replace("data:", "dataa:"));
        assertTrue(key.getMessage().startsWith("r.yaml:3:") && key.getMessage().contains("unknown key 'dataa'"), key.getMessage());
        UserException yaml = refused(GOOD + "  - name: [unclosed\n");
        assertTrue(yaml.getMessage().contains("not valid YAML"), yaml.getMessage());
        UserException ref = refused(GOOD.replace("teacher: google/gemma-3-1b-pt", "teacher: run:a"));
        assertTrue(ref.getMessage().contains("not a full-model run"), ref.getMessage());

        Recipe q = Recipe.parse(Path.of("r.yaml"), GOOD.replace("    lora_r: 4\n", "    lora_r: 4\n    quantize: q8\n"));
        assertEquals(dev.peft4j.model.Quantization.Q8, q.runs.get(0).train().quantize);
        assertEquals(dev.peft4j.model.Quantization.NONE, q.runs.get(1).train().quantize);
        UserException q4 = refused(GOOD.replace("    lora_r: 4\n", "    lora_r: 4\n    quantize: q4\n"));
        assertTrue(q4.getMessage().startsWith("r.yaml:11:") && q4.getMessage().contains("expected q8 or none, got 'q4'"), q4.getMessage());
        UserException full = refused(GOOD.replace("    student: lora\n", "    student: full\n    quantize: q8\n").replace("    lora_r: 8\n", ""));
        assertTrue(full.getMessage().startsWith("r.yaml:15:") && full.getMessage().contains("full-model run"), full.getMessage());
        UserException shared = refused(GOOD.replace("runs:\n", "train:\n  quantize: q8\nruns:\n").replace("    student: lora\n", "    student: full\n").replace("    lora_r: 8\n", ""));
        assertTrue(shared.getMessage().startsWith("r.yaml:8:") && shared.getMessage().contains("train.quantize"), shared.getMessage());
    }

    /**
     * A QLoRA-style run ({@code quantize: q8}): trained over the 8-bit base and evaluated over it too (its training
     * arguments and its results' model_args say so; the cache keeps it apart from a float evaluation), while the base row
     * stays float; the report and results.json say "q8".
     */
    @Test
    void quantizedRunTrainsAndEvaluatesOverTheQ8Base() throws Exception {
        ObjectNode r = (ObjectNode) YAML.readTree(QUICKSTART.toFile());
        r.put("quickstart_pretrain_steps", 12);
        ((ObjectNode) r.get("train")).put("max_steps", 2);
        ((ObjectNode) r.get("eval")).put("limit", 3);
        var runs = r.putArray("runs");
        runs.addObject().put("name", "qlora").put("method", "lora").put("lora_r", 4).put("lr", 3e-3).put("quantize", "q8");
        Path recipe = tmp.resolve("q.yaml"), out = tmp.resolve("q");
        YAML.writeValue(recipe.toFile(), r);
        run(recipe, out, Set.of(), false, new ByteArrayOutputStream());
        ObjectMapper json = new ObjectMapper();
        assertEquals("q8", json.readTree(out.resolve("runs/qlora/training_args.json").toFile()).get("quantize").asText());
        JsonNode ev = json.readTree(out.resolve("runs/qlora/eval_results.json").toFile());
        assertTrue(ev.at("/config/model_args").asText().endsWith(",quantize=q8"), ev.at("/config/model_args").asText());
        assertFalse(json.readTree(out.resolve("base_results.json").toFile()).at("/config/model_args").asText().contains("quantize"));
        assertTrue(Files.readString(out.resolve("REPORT.md")).contains("| qlora | lora, q8 base |"), Files.readString(out.resolve("REPORT.md")));
        assertEquals("q8", json.readTree(out.resolve("results.json").toFile()).at("/runs/0/quantize").asText());
    }

    @Test
    void shippedRecipesParse() {
        Recipe q = Recipe.load(QUICKSTART);
        assertEquals(List.of("full", "prompt-tuning", "lora", "distill"), q.runs.stream().map(Recipe.Run::name).toList());
        Recipe seed = Recipe.load(Path.of("../recipes/gemma3-270m-dolly.yaml"));
        assertEquals(List.of("prompt-tuning", "lora", "distill", "full"), seed.runs.stream().map(Recipe.Run::name).toList());
        assertEquals(200.0, seed.eval.limit());
        assertEquals(6, seed.eval.tasks().size());
        Recipe.Run pt = seed.runs.get(0), lora = seed.runs.get(1), kd = seed.runs.get(2);
        assertEquals(20, pt.train().numVirtualTokens);
        assertTrue(pt.train().init.startsWith("text:"));
        assertEquals(8, lora.train().loraR);
        assertEquals(16.0, lora.train().loraAlpha);
        assertEquals(List.of("q_proj", "k_proj", "v_proj", "o_proj"), lora.train().targetModules);
        assertEquals("google/gemma-3-1b-pt", kd.train().teacher.toString());
        assertEquals("full", kd.trained());
    }
}
