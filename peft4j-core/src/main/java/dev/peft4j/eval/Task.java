package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.List;
import java.util.Map;
import java.util.function.Function;

/**
 * One lm-evaluation-harness task, as data (the fields of its YAML config). {@code docToText} returns a String, or an
 * Integer for "partial evaluation" tasks (winogrande: the index of the right context); {@code docToTarget} returns an
 * Integer (index into the choices), a String, or a List of Strings (generation aliases).
 *
 * @param name         task name, e.g. {@code mmlu_formal_logic}
 * @param alias        {@code task_alias} (what tables show)
 * @param group        innermost group this task belongs to (e.g. {@code mmlu_humanities}), or null
 * @param dataset      where the documents come from (see {@link Data})
 * @param evalSplit    split evaluated ({@code test_split}, else {@code validation_split})
 * @param fewshotSplit split few-shot examples are drawn from
 * @param firstN       {@code sampler: first_n} (MMLU) instead of the seeded default sampler
 * @param drawExtra    the default sampler draws n+1 and removes the evaluated doc (lm-eval does this when the task has
 *                     neither {@code fewshot_split} nor {@code test_split}, see REFERENCE 3.3)
 * @param multipleInput "partial evaluation": one context per choice, one shared continuation (winogrande)
 * @param processDoc   {@code process_docs}, applied to evaluated and few-shot docs alike (identity when none)
 * @param metrics      metric names: acc, acc_norm, exact_match
 * @param until        stop sequences (generation tasks)
 * @param filter       filter name in metric keys ({@code none}, {@code remove_whitespace})
 * @param config       the YAML-like config written to results.json {@code configs}
 */
public record Task(
        String name, String alias, double version, String group,
        Data dataset, String evalSplit, String fewshotSplit, boolean firstN, boolean drawExtra,
        String description, OutputType outputType, boolean multipleInput,
        Function<JsonNode, JsonNode> processDoc,
        Function<JsonNode, Object> docToText,
        Function<JsonNode, List<String>> docToChoice,
        Function<JsonNode, Object> docToTarget,
        List<String> metrics, List<String> until, String filter,
        Map<String, Object> config) {

    public enum OutputType { MULTIPLE_CHOICE, GENERATE_UNTIL }

    /**
     * Where a task's documents live under {@code --data-dir}.
     * @param format     {@code csv-mmlu} (Hendrycks CSVs) or {@code jsonl}
     * @param dirs       candidate sub-directories of the data dir, tried in order
     * @param subject    MMLU subject (CSV file prefix), else null
     * @param required   fields every JSONL row must have
     */
    public record Data(String format, List<String> dirs, String subject, List<String> required) {}

}
