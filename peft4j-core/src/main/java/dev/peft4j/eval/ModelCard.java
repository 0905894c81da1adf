package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/** The adapter's README.md: Hugging Face model-card front matter, usage, training details and the evaluation table. */
public final class ModelCard {
    private ModelCard() {}

    static final String DEFAULT_BASE = "google/gemma-3-270m";

    private static JsonNode readJson(Path p, boolean required) {
        if (!Files.isRegularFile(p)) {
            if (required) throw new UserException(p + ": not found (is " + p.getParent() + " a PEFT adapter directory?)");
            return null;
        }
        try {
            JsonNode n = new ObjectMapper().readTree(p.toFile());
            if (n == null || !n.isObject()) throw new UserException(p + ": expected a JSON object");
            return n;
        } catch (IOException e) {
            throw new UserException(p + ": not valid JSON (" + e.getMessage().split("\n")[0] + ")");
        }
    }

    /** Training-args file names looked for in the adapter directory, in order. */
    static final List<String> TRAINING_ARGS = List.of("training_args.json", "train_args.json", "training_config.json");

    public static String render(Path adapterDir, JsonNode base, JsonNode tuned, String baseModelOverride) {
        JsonNode cfg = readJson(adapterDir.resolve("adapter_config.json"), true);
        JsonNode train = null;
        String trainFile = null;
        for (String f : TRAINING_ARGS) {
            train = readJson(adapterDir.resolve(f), false);
            if (train != null) { trainFile = f; break; }
        }
        String baseModel = baseModelOverride != null ? baseModelOverride
                : cfg.hasNonNull("base_model_name_or_path") ? cfg.get("base_model_name_or_path").asText()
                : train != null && train.hasNonNull("base_model") ? train.get("base_model").asText() : DEFAULT_BASE;
        String peftType = cfg.path("peft_type").asText("UNKNOWN");
        String method = peftType.toLowerCase(Locale.ROOT).replace('_', '-');
        Set<String> datasets = new LinkedHashSet<>();
        if (train != null) {
            for (String k : List.of("dataset", "datasets", "dataset_name")) {
                JsonNode d = train.get(k);
                if (d == null || d.isNull()) continue;
                if (d.isArray()) d.forEach(x -> datasets.add(x.asText()));
                else datasets.add(d.asText());
            }
        }
        String name = adapterDir.toAbsolutePath().normalize().getFileName().toString();

        StringBuilder sb = new StringBuilder();
        sb.append("---\n");
        sb.append("base_model: ").append(yaml(baseModel)).append('\n');
        if (!datasets.isEmpty()) {
            sb.append("datasets:\n");
            for (String d : datasets) sb.append("- ").append(yaml(d)).append('\n');
        }
        sb.append("library_name: peft\n");
        sb.append("pipeline_tag: text-generation\n");
        sb.append("tags:\n");
        for (String t : List.of("base_model:adapter:" + baseModel, method, "peft", "peft4j")) sb.append("- ").append(yaml(t)).append('\n');
        sb.append("---\n\n");

        sb.append("# ").append(name).append("\n\n");
        boolean hubId = baseModel.matches("[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*");
        sb.append("A ").append(describe(peftType, cfg)).append(" adapter for ")
                .append(hubId ? "[" + baseModel + "](https://huggingface.co/" + baseModel + ")" : "`" + baseModel + "`")
                .append(", trained with peft4j. It loads with Hugging Face PEFT.\n\n");

        sb.append("## Usage\n\n");
        sb.append("```python\n");
        sb.append("from transformers import AutoModelForCausalLM, AutoTokenizer\n");
        sb.append("from peft import PeftModel\n\n");
        sb.append("base = AutoModelForCausalLM.from_pretrained(\"").append(baseModel).append("\")\n");
        sb.append("tokenizer = AutoTokenizer.from_pretrained(\"").append(baseModel).append("\")\n");
        sb.append("model = PeftModel.from_pretrained(base, \"").append(name).append("\")  # this directory or its Hub repo\n");
        sb.append("inputs = tokenizer(\"Explain photosynthesis in one sentence.\", return_tensors=\"pt\")\n");
        sb.append("print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0], skip_special_tokens=True))\n");
        sb.append("```\n\n");
        sb.append("With peft4j:\n\n```bash\n");
        sb.append("./peft4j generate --model <base-model-dir> --adapter ").append(name).append(" --prompt \"Explain photosynthesis in one sentence.\"\n");
        sb.append("./peft4j eval --model <base-model-dir> --adapter ").append(name)
                .append(" --tasks mmlu_formal_logic,hellaswag --data-dir data --output results.json\n");
        sb.append("```\n\n");

        sb.append("## Training details\n\n");
        List<String[]> rows = new ArrayList<>();
        rows.add(new String[]{"PEFT method", peftType});
        for (String k : List.of("num_virtual_tokens", "prompt_tuning_init", "prompt_tuning_init_text", "r", "lora_alpha",
                "lora_dropout", "target_modules", "use_rslora", "task_type")) {
            JsonNode v = cfg.get(k);
            if (v != null && !v.isNull()) rows.add(new String[]{k, v.isValueNode() ? v.asText() : v.toString()});
        }
        if (train != null) {
            for (Iterator<String> it = train.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                JsonNode v = train.get(k);
                rows.add(new String[]{k, v.isValueNode() ? v.asText() : v.toString()});
            }
        }
        sb.append(Reports.markdown(new String[]{"Setting", "Value"}, new boolean[]{false, false},
                rows.stream().map(r -> new String[]{r[0], r[1].replace("|", "\\|").replace("\n", "\\n")}).toList()));
        sb.append('\n');
        if (trainFile == null) sb.append("(No training arguments file was found in the adapter directory.)\n\n");
        else sb.append("(From `").append(trainFile).append("` and `adapter_config.json`.)\n\n");

        sb.append("## Evaluation\n\n");
        sb.append("lm-evaluation-harness prompts and metrics as reimplemented by peft4j; accuracy in percent, change in points")
                .append(" (bold where the adapter is better).\n\n");
        sb.append(Reports.compare(base, tuned)).append('\n');
        sb.append("Shots: ").append(shots(tuned)).append(".\n");
        return sb.toString();
    }

    private static String shots(JsonNode r) {
        JsonNode n = r.path("n-shot");
        Set<String> vals = new LinkedHashSet<>();
        n.fields().forEachRemaining(e -> vals.add(e.getValue().asText()));
        if (vals.size() == 1) return vals.iterator().next() + "-shot for every task";
        List<String> parts = new ArrayList<>();
        n.fields().forEachRemaining(e -> parts.add(e.getKey() + " " + e.getValue().asText()));
        return String.join(", ", parts);
    }

    private static String describe(String peftType, JsonNode cfg) {
        return switch (peftType) {
            case "PROMPT_TUNING" -> "prompt-tuning (" + cfg.path("num_virtual_tokens").asText("?") + " virtual tokens)";
            case "LORA" -> "LoRA (r=" + cfg.path("r").asText("?") + ", alpha=" + cfg.path("lora_alpha").asText("?") + ")";
            default -> peftType;
        };
    }

    private static String yaml(String s) {
        return s.matches("[A-Za-z0-9_./:-]+") ? s : '"' + s.replace("\\", "\\\\").replace("\"", "\\\"") + '"';
    }
}
