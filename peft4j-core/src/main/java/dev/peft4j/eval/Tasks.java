package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.eval.Task.Data;
import dev.peft4j.eval.Task.OutputType;
import dev.peft4j.util.UserException;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.function.Function;

/** The task registry: lm-eval task definitions (REFERENCE 3.7) and the MMLU groups. */
public final class Tasks {
    private Tasks() {}

    /** A group of tasks or groups, aggregated with {@code weight_by_size} (REFERENCE 3.5). */
    public record Group(String name, String alias, double version, List<String> children) {}

    public static final List<String> MMLU_STEM = List.of("abstract_algebra", "anatomy", "astronomy", "college_biology",
            "college_chemistry", "college_computer_science", "college_mathematics", "college_physics", "computer_security",
            "conceptual_physics", "electrical_engineering", "elementary_mathematics", "high_school_biology",
            "high_school_chemistry", "high_school_computer_science", "high_school_mathematics", "high_school_physics",
            "high_school_statistics", "machine_learning");
    public static final List<String> MMLU_OTHER = List.of("business_ethics", "clinical_knowledge", "college_medicine",
            "global_facts", "human_aging", "management", "marketing", "medical_genetics", "miscellaneous", "nutrition",
            "professional_accounting", "professional_medicine", "virology");
    public static final List<String> MMLU_SOCIAL_SCIENCES = List.of("econometrics", "high_school_geography",
            "high_school_government_and_politics", "high_school_macroeconomics", "high_school_microeconomics",
            "high_school_psychology", "human_sexuality", "professional_psychology", "public_relations", "security_studies",
            "sociology", "us_foreign_policy");
    public static final List<String> MMLU_HUMANITIES = List.of("formal_logic", "high_school_european_history",
            "high_school_us_history", "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
            "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law", "world_religions");

    private static final Map<String, Task> TASKS = new TreeMap<>();
    private static final Map<String, Group> GROUPS = new LinkedHashMap<>();

    static {
        Map<String, List<String>> cats = new LinkedHashMap<>();
        cats.put("humanities", MMLU_HUMANITIES);
        cats.put("other", MMLU_OTHER);
        cats.put("social_sciences", MMLU_SOCIAL_SCIENCES);
        cats.put("stem", MMLU_STEM);
        List<String> groupNames = new ArrayList<>();
        for (var e : cats.entrySet()) {
            String g = "mmlu_" + e.getKey();
            List<String> children = new ArrayList<>();
            for (String subject : e.getValue().stream().sorted().toList()) {
                Task t = mmlu(subject, e.getKey(), g);
                TASKS.put(t.name(), t);
                children.add(t.name());
            }
            GROUPS.put(g, new Group(g, e.getKey().replace('_', ' '), 2.0, children));
            groupNames.add(g);
        }
        GROUPS.put("mmlu", new Group("mmlu", "mmlu", 2.0, groupNames));
        for (Task t : List.of(hellaswag(), arc("arc_easy", "ARC-Easy"), arc("arc_challenge", "ARC-Challenge"), piqa(), boolq(),
                winogrande(), triviaqa())) {
            TASKS.put(t.name(), t);
        }
    }

    public static Task task(String name) { return TASKS.get(name); }
    public static Group group(String name) { return GROUPS.get(name); }
    public static Set<String> taskNames() { return TASKS.keySet(); }
    public static Set<String> groupNames() { return GROUPS.keySet(); }

    /** What {@code --tasks} asked for: the names as given (tasks and groups) and the tasks they expand to. */
    public record Selection(List<String> requested, List<Task> tasks) {}

    /** Expands a task list (tasks and groups) into tasks in a stable order; unknown names are a UserException. */
    public static Selection resolve(List<String> names) {
        LinkedHashSet<String> out = new LinkedHashSet<>();
        LinkedHashSet<String> requested = new LinkedHashSet<>();
        for (String raw : names) {
            String n = raw.strip();
            if (n.isEmpty()) continue;
            if (!TASKS.containsKey(n) && !GROUPS.containsKey(n)) {
                throw new UserException("--tasks: unknown task '" + n + "'. Known tasks: " + knownList());
            }
            requested.add(n);
            expand(n, out);
        }
        if (out.isEmpty()) throw new UserException("--tasks: no task given. Known tasks: " + knownList());
        return new Selection(List.copyOf(requested), out.stream().map(TASKS::get).toList());
    }

    private static void expand(String n, Set<String> out) {
        Group g = GROUPS.get(n);
        if (g == null) { out.add(n); return; }
        for (String c : g.children()) expand(c, out);
    }

    /** Short description of the known names, for error messages. */
    public static String knownList() {
        List<String> plain = TASKS.keySet().stream().filter(n -> !n.startsWith("mmlu_")).toList();
        return String.join(", ", plain) + ", " + String.join(", ", GROUPS.keySet())
                + ", mmlu_<subject> for the 57 MMLU subjects (e.g. mmlu_formal_logic)";
    }

    // ---------------------------------------------------------------- helpers

    static String str(JsonNode doc, String field) {
        JsonNode n = doc.get(field);
        if (n == null || n.isNull()) throw new IllegalArgumentException("missing field '" + field + "'");
        if (!n.isValueNode()) throw new IllegalArgumentException("field '" + field + "' must be a string");
        return n.asText();
    }

    static List<String> strList(JsonNode n, String field) {
        if (n == null || !n.isArray()) throw new IllegalArgumentException("field '" + field + "' must be a list of strings");
        List<String> out = new ArrayList<>();
        for (JsonNode x : n) out.add(x.asText());
        return out;
    }

    /** An integer label given as a number, a digit string or a boolean (false = 0, true = 1). */
    static int label(JsonNode doc, String field) {
        JsonNode n = doc.get(field);
        if (n == null || n.isNull()) throw new IllegalArgumentException("missing field '" + field + "'");
        if (n.isBoolean()) return n.asBoolean() ? 1 : 0;
        if (n.isIntegralNumber()) return n.asInt();
        String s = n.asText().strip();
        if (!s.matches("[0-9]+")) throw new IllegalArgumentException("field '" + field + "' must be an integer label, got '" + s + "'");
        return Integer.parseInt(s);
    }

    private static Map<String, Object> cfg(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) if (kv[i + 1] != null) m.put((String) kv[i], kv[i + 1]);
        return m;
    }

    private static List<Map<String, Object>> metricList(List<String> metrics, Map<String, Object> extra) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (String m : metrics) {
            Map<String, Object> e = cfg("metric", m, "aggregation", "mean", "higher_is_better", true);
            e.putAll(extra);
            out.add(e);
        }
        return out;
    }

    private static Map<String, Object> common(String name, String datasetPath, String datasetName, String outputType,
                                              String training, String validation, String test, String fewshotSplit,
                                              String docToText, String docToTarget, Object docToChoice,
                                              List<String> metrics, double version) {
        return cfg("task", name, "dataset_path", datasetPath, "dataset_name", datasetName,
                "training_split", training, "validation_split", validation, "test_split", test, "fewshot_split", fewshotSplit,
                "doc_to_text", docToText, "doc_to_target", docToTarget, "doc_to_choice", docToChoice,
                "description", "", "target_delimiter", " ", "fewshot_delimiter", "\n\n", "output_type", outputType,
                "metric_list", metricList(metrics, Map.of()), "repeats", 1, "should_decontaminate", false,
                "metadata", Map.of("version", version));
    }

    // ---------------------------------------------------------------- task definitions (REFERENCE 3.7)

    static Task mmlu(String subject, String category, String group) {
        String name = "mmlu_" + subject;
        String description = "The following are multiple choice questions (with answers) about "
                + String.join(" ", subject.split("_")) + ".\n\n";
        Function<JsonNode, Object> text = d -> {
            List<String> c = strList(d.get("choices"), "choices");
            return Py.strip(str(d, "question")) + "\nA. " + c.get(0) + "\nB. " + c.get(1) + "\nC. " + c.get(2)
                    + "\nD. " + c.get(3) + "\nAnswer:";
        };
        Map<String, Object> config = common(name, "cais/mmlu", subject, "multiple_choice", null, null, "test", "dev",
                "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
                "answer", List.of("A", "B", "C", "D"), List.of("acc"), 1.0);
        config.put("task_alias", subject);
        config.put("tag", "mmlu_" + category + "_tasks");
        config.put("description", description);
        config.put("fewshot_config", Map.of("sampler", "first_n"));
        return new Task(name, subject, 1.0, group,
                new Data("csv-mmlu", List.of("mmlu", ""), subject, List.of()), "test", "dev", true, false,
                description, OutputType.MULTIPLE_CHOICE, false, Function.identity(),
                text, d -> List.of("A", "B", "C", "D"), d -> label(d, "answer"),
                List.of("acc"), List.of(), "none", config);
    }

    /** HellaSwag's {@code preprocess} (lm_eval/tasks/hellaswag/utils.py). */
    static String hellaswagPreprocess(String text) {
        text = Py.strip(text);
        text = text.replace(" [title]", ". ");
        text = text.replaceAll("\\[.*?\\]", "");
        text = text.replace("  ", " ");
        return text;
    }

    static JsonNode hellaswagProcess(JsonNode doc) {
        ObjectNode out = ((ObjectNode) doc).deepCopy();
        String ctx = str(doc, "ctx_a") + " " + Py.capitalize(str(doc, "ctx_b"));
        out.put("query", hellaswagPreprocess(str(doc, "activity_label") + ": " + ctx));
        ArrayNode choices = out.putArray("choices");
        for (String e : strList(doc.get("endings"), "endings")) choices.add(hellaswagPreprocess(e));
        out.put("gold", label(doc, "label"));
        return out;
    }

    static Task hellaswag() {
        Map<String, Object> config = common("hellaswag", "Rowan/hellaswag", null, "multiple_choice", "train", "validation", null,
                null, "{{query}}", "{{label}}", "choices", List.of("acc", "acc_norm"), 1.0);
        config.put("process_docs", "utils.process_docs");
        return new Task("hellaswag", "hellaswag", 1.0, null,
                new Data("jsonl", List.of("hellaswag"), null, List.of("activity_label", "ctx_a", "ctx_b", "endings", "label")),
                "validation", "train", false, true, "", OutputType.MULTIPLE_CHOICE, false, Tasks::hellaswagProcess,
                d -> str(d, "query"), d -> strList(d.get("choices"), "choices"), d -> label(d, "label"),
                List.of("acc", "acc_norm"), List.of(), "none", config);
    }

    static Task arc(String name, String config) {
        Map<String, Object> c = common(name, "allenai/ai2_arc", config, "multiple_choice", "train", "validation", "test", null,
                "Question: {{question}}\nAnswer:", "{{choices.label.index(answerKey)}}", "{{choices.text}}",
                List.of("acc", "acc_norm"), 1.0);
        return new Task(name, name, 1.0, null,
                new Data("jsonl", List.of(name, config, "ai2_arc/" + config), null, List.of("question", "choices", "answerKey")),
                "test", "train", false, false, "", OutputType.MULTIPLE_CHOICE, false, Function.identity(),
                d -> "Question: " + str(d, "question") + "\nAnswer:",
                d -> strList(d.path("choices").get("text"), "choices.text"),
                d -> {
                    List<String> labels = strList(d.path("choices").get("label"), "choices.label");
                    String key = str(d, "answerKey");
                    int i = labels.indexOf(key);
                    if (i < 0) throw new IllegalArgumentException("answerKey '" + key + "' is not one of choices.label " + labels);
                    return i;
                },
                List.of("acc", "acc_norm"), List.of(), "none", c);
    }

    static Task piqa() {
        Map<String, Object> c = common("piqa", "baber/piqa", null, "multiple_choice", "train", "validation", null, null,
                "Question: {{goal}}\nAnswer:", "label", "{{[sol1, sol2]}}", List.of("acc", "acc_norm"), 1.0);
        return new Task("piqa", "piqa", 1.0, null,
                new Data("jsonl", List.of("piqa"), null, List.of("goal", "sol1", "sol2", "label")),
                "validation", "train", false, true, "", OutputType.MULTIPLE_CHOICE, false, Function.identity(),
                d -> "Question: " + str(d, "goal") + "\nAnswer:", d -> List.of(str(d, "sol1"), str(d, "sol2")),
                d -> label(d, "label"), List.of("acc", "acc_norm"), List.of(), "none", c);
    }

    static Task boolq() {
        Map<String, Object> c = common("boolq", "aps/super_glue", "boolq", "multiple_choice", "train", "validation", null, null,
                "{{passage}}\nQuestion: {{question}}?\nAnswer:", "label", List.of("no", "yes"), List.of("acc"), 2.0);
        return new Task("boolq", "boolq", 2.0, null,
                new Data("jsonl", List.of("boolq", "super_glue/boolq"), null, List.of("passage", "question", "label")),
                "validation", "train", false, true, "", OutputType.MULTIPLE_CHOICE, false, Function.identity(),
                d -> str(d, "passage") + "\nQuestion: " + str(d, "question") + "?\nAnswer:", d -> List.of("no", "yes"),
                d -> label(d, "label"), List.of("acc"), List.of(), "none", c);
    }

    static Task winogrande() {
        Map<String, Object> c = common("winogrande", "allenai/winogrande", "winogrande_xl", "multiple_choice", "train",
                "validation", null, null, "preprocess_winogrande.doc_to_text", "preprocess_winogrande.doc_to_target",
                "preprocess_winogrande.doc_to_choice", List.of("acc"), 1.0);
        Function<JsonNode, Integer> blank = d -> {
            int i = str(d, "sentence").indexOf('_');
            if (i < 0) throw new IllegalArgumentException("field 'sentence' has no '_' blank");
            return i;
        };
        return new Task("winogrande", "winogrande", 1.0, null,
                new Data("jsonl", List.of("winogrande", "winogrande_xl"), null, List.of("sentence", "option1", "option2", "answer")),
                "validation", "train", false, true, "", OutputType.MULTIPLE_CHOICE, true, Function.identity(),
                d -> switch (str(d, "answer")) {
                    case "1" -> 0;
                    case "2" -> 1;
                    default -> throw new IllegalArgumentException("field 'answer' must be \"1\" or \"2\", got '" + str(d, "answer") + "'");
                },
                d -> {
                    String s = str(d, "sentence");
                    int i = blank.apply(d);
                    return List.of(s.substring(0, i) + str(d, "option1"), s.substring(0, i) + str(d, "option2"));
                },
                d -> Py.strip(str(d, "sentence").substring(blank.apply(d) + 1)),
                List.of("acc"), List.of(), "none", c);
    }

    static Task triviaqa() {
        Map<String, Object> c = common("triviaqa", "mandarjoshi/trivia_qa", "rc.nocontext", "generate_until", "train",
                "validation", null, null, "Question: {{question}}?\nAnswer:", "{{answer.aliases}}", null, List.of(), 3.0);
        c.put("metric_list", List.of(cfg("metric", "exact_match", "aggregation", "mean", "higher_is_better", true,
                "ignore_case", true, "ignore_punctuation", true)));
        c.put("generation_kwargs", cfg("until", List.of("\n", ".", ","), "do_sample", false, "temperature", 0.0));
        c.put("filter_list", List.of(cfg("name", "remove_whitespace",
                "filter", List.of(Map.of("function", "remove_whitespace"), Map.of("function", "take_first")))));
        return new Task("triviaqa", "triviaqa", 3.0, null,
                new Data("jsonl", List.of("triviaqa", "trivia_qa/rc.nocontext", "trivia_qa"), null, List.of("question", "answer")),
                "validation", "train", false, true, "", OutputType.GENERATE_UNTIL, false, Function.identity(),
                d -> "Question: " + str(d, "question") + "?\nAnswer:", null,
                d -> {
                    List<String> a = strList(d.path("answer").get("aliases"), "answer.aliases");
                    if (a.isEmpty()) throw new IllegalArgumentException("field 'answer.aliases' is empty");
                    return a;
                },
                List.of("exact_match"), List.of("\n", ".", ","), "remove_whitespace", c);
    }

    static ObjectNode obj() { return JsonNodeFactory.instance.objectNode(); }
}
