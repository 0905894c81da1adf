package dev.peft4j.experiment;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import com.fasterxml.jackson.dataformat.yaml.YAMLMapper;
import dev.peft4j.data.DataConfig;
import dev.peft4j.eval.Tasks;
import dev.peft4j.train.TrainConfig;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * An experiment recipe ({@code peft4j experiment RECIPE.yaml}): a base model, training data and template, evaluation tasks and
 * a list of named runs, each a training method with its options. Parsed with Jackson's YAML module; every mistake is refused
 * before anything runs, naming the recipe file and line.
 *
 * <pre>
 * name: gemma3-270m-dolly          # optional (default: the file name); the output folder is experiments/NAME
 * base_model: google/gemma-3-270m  # directory or Hub repo id; "quickstart" builds the quickstart's tiny pre-trained model
 * data:                             # the data options of `peft4j train` (snake_case); file "quickstart" is the bundled sample
 *   file: databricks-dolly-15k.jsonl
 *   template: dolly
 * train:                            # options shared by every run (each run may override them)
 *   epochs: 1
 * eval:
 *   tasks: [mmlu_formal_logic, hellaswag]
 *   data_dir: data                  # "quickstart": the bundled smoke-test sample
 *   limit: 200
 *   num_fewshot: 0
 * runs:
 *   - name: lora
 *     method: lora                  # prompt-tuning, p-tuning, lora, ia3, full or distill
 *     lora_r: 8
 *   - name: distill
 *     method: distill
 *     teacher: google/gemma-3-1b-pt # or run:NAME, the output of an earlier full-model run
 * </pre>
 * Relative paths are resolved against the current directory, as on the command line.
 */
public final class Recipe {
    /** One named run: its method, the option values as written (for change detection) and the training settings. */
    public record Run(String name, String method, ObjectNode entry, TrainConfig train, int line) {
        /** The method of what is trained: the method, or the student's for distillation. */
        public String trained() { return method.equals("distill") ? train.student : method; }
        /** Teacher reference "run:NAME", or null. */
        public String teacherRun() {
            return train.teacher != null && train.teacher.toString().startsWith("run:") ? train.teacher.toString().substring(4) : null;
        }
    }

    /** Evaluation settings shared by the base and every run. */
    public record Eval(List<String> tasks, String dataDir, Double limit, int numFewshot, int batchSize) {}

    public final Path file;
    public final String name;
    public final String baseModel;
    public final Path tokenizer;
    public final int quickstartPretrainSteps;
    public final DataConfig data;
    public final Eval eval;
    public final List<Run> runs;
    public final JsonNode root;

    static final Set<String> TOP = Set.of("name", "base_model", "tokenizer", "quickstart_pretrain_steps", "data", "train", "eval", "runs");
    static final Set<String> DATA = Set.of("file", "format", "fields", "categories", "template", "max_seq_len", "truncate", "strict",
            "val_size", "seed", "batch_size", "bucket");
    static final Set<String> EVAL = Set.of("tasks", "data_dir", "limit", "num_fewshot", "batch_size");
    /** Options every method takes. */
    static final Set<String> COMMON = Set.of("epochs", "max_steps", "grad_accum", "lr", "schedule", "warmup_steps", "weight_decay",
            "max_grad_norm", "eval_every", "save_every", "keep_checkpoints", "quantize");
    /** Options of one method. */
    static final Map<String, Set<String>> METHOD = Map.of(
            "prompt-tuning", Set.of("num_virtual_tokens", "init"),
            "p-tuning", Set.of("num_virtual_tokens", "encoder_hidden_size"),
            "lora", Set.of("lora_r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "init_lora_weights"),
            "ia3", Set.of("target_modules", "feedforward_modules"),
            "full", Set.of("save_dtype"),
            "distill", Set.of("teacher", "student", "kd_alpha", "kd_beta", "kd_temperature", "kd_scale_t2", "teacher_cache", "teacher_top_k"));
    public static final List<String> METHODS = List.of("prompt-tuning", "p-tuning", "lora", "ia3", "full", "distill");

    private final Map<String, Integer> lines;

    private Recipe(Path file, JsonNode root, Map<String, Integer> lines) {
        this.file = file;
        this.root = root;
        this.lines = lines;
        if (root == null || !root.isObject()) throw err("", "expected a mapping with base_model, data, eval and runs");
        for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (!TOP.contains(k)) throw err("/" + k, "unknown key '" + k + "' (expected one of " + String.join(", ", sorted(TOP)) + ")");
        }
        String stem = file.getFileName().toString().replaceFirst("\\.ya?ml$", "");
        this.name = text(root, "/name", stem);
        if (!name.matches("[A-Za-z0-9][A-Za-z0-9._-]*")) throw err("/name", "expected letters, digits, '.', '_' or '-', got '" + name + "'");
        this.baseModel = required(root, "/base_model");
        String tk = text(root, "/tokenizer", null);
        this.tokenizer = tk == null ? null : Path.of(tk);
        this.quickstartPretrainSteps = integer(root, "/quickstart_pretrain_steps", 300, 1);
        this.data = parseData();
        this.eval = parseEval();
        this.runs = parseRuns();
    }

    /** Reads and checks a recipe file. */
    public static Recipe load(Path file) {
        if (!Files.isRegularFile(file)) throw new UserException(file + ": recipe not found");
        String text;
        try {
            text = Files.readString(file);
        } catch (IOException e) {
            throw new UserException(file + ": cannot read (" + e.getMessage() + ")");
        }
        return parse(file, text);
    }

    /** Parses recipe text (the file name is used in messages and for the default name). */
    public static Recipe parse(Path file, String text) {
        YAMLMapper mapper = new YAMLMapper();
        Map<String, Integer> lines = new HashMap<>();
        try (JsonParser p = new YAMLFactory().createParser(text)) {
            // the line of every value, by JSON pointer
            JsonToken t;
            while ((t = p.nextToken()) != null) {
                String ptr = p.getParsingContext().pathAsPointer().toString();
                if (t == JsonToken.START_OBJECT || t == JsonToken.START_ARRAY) ptr = p.getParsingContext().getParent() == null ? ""
                        : p.getParsingContext().getParent().pathAsPointer().toString();
                lines.putIfAbsent(ptr, p.currentTokenLocation().getLineNr());
            }
            return new Recipe(file, mapper.readTree(text), lines);
        } catch (JsonProcessingException e) {
            int line = e.getLocation() == null ? 0 : e.getLocation().getLineNr();
            throw new UserException(file + (line > 0 ? ":" + line : "") + ": not valid YAML (" + e.getOriginalMessage().split("\n")[0] + ")");
        } catch (IOException e) {
            throw new UserException(file + ": " + e.getMessage());
        }
    }

    /** The recipe line of a JSON pointer (or of its nearest parent that has one). */
    public int line(String ptr) {
        String p = ptr;
        while (true) {
            Integer l = lines.get(p);
            if (l != null) return l;
            if (p.isEmpty()) return 1;
            p = p.substring(0, p.lastIndexOf('/'));
        }
    }

    UserException err(String ptr, String msg) {
        String where = ptr.isEmpty() ? "" : " " + ptr.substring(1).replace('/', '.');
        return new UserException(file + ":" + line(ptr) + ":" + where + (where.isEmpty() ? " " : ": ") + msg);
    }

    private static List<String> sorted(Set<String> s) { return s.stream().sorted().toList(); }

    private String text(JsonNode n, String ptr, String def) {
        JsonNode v = root.at(ptr);
        if (v.isMissingNode() || v.isNull()) return def;
        if (!v.isValueNode()) throw err(ptr, "expected a single value");
        return v.asText();
    }

    private String required(JsonNode n, String ptr) {
        String s = text(n, ptr, null);
        if (s == null || s.isBlank()) throw err(ptr, "required");
        return s;
    }

    private int integer(JsonNode n, String ptr, int def, int min) {
        JsonNode v = root.at(ptr);
        if (v.isMissingNode() || v.isNull()) return def;
        if (!v.canConvertToInt() || !v.isIntegralNumber()) throw err(ptr, "expected an integer, got '" + v.asText() + "'");
        if (v.asInt() < min) throw err(ptr, "expected >= " + min + ", got " + v.asInt());
        return v.asInt();
    }

    private double number(String ptr, double def) {
        JsonNode v = root.at(ptr);
        if (v.isMissingNode() || v.isNull()) return def;
        if (v.isNumber()) return v.asDouble();
        try {
            return Double.parseDouble(v.asText());
        } catch (NumberFormatException e) {
            throw err(ptr, "expected a number, got '" + v.asText() + "'");
        }
    }

    private boolean bool(String ptr, boolean def) {
        JsonNode v = root.at(ptr);
        if (v.isMissingNode() || v.isNull()) return def;
        if (!v.isBoolean()) throw err(ptr, "expected true or false, got '" + v.asText() + "'");
        return v.asBoolean();
    }

    private List<String> list(String ptr) {
        JsonNode v = root.at(ptr);
        if (v.isMissingNode() || v.isNull()) return null;
        List<String> out = new ArrayList<>();
        if (v.isArray()) for (JsonNode x : v) out.add(x.asText().strip());
        else for (String s : v.asText().split(",")) if (!s.isBlank()) out.add(s.strip());
        return out;
    }

    private void onlyKeys(String ptr, Set<String> allowed) {
        JsonNode n = root.at(ptr);
        if (n.isMissingNode() || n.isNull()) return;
        if (!n.isObject()) throw err(ptr, "expected a mapping");
        for (Iterator<String> it = n.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (!allowed.contains(k)) throw err(ptr + "/" + k, "unknown key '" + k + "' (expected one of " + String.join(", ", sorted(allowed)) + ")");
        }
    }

    private DataConfig parseData() {
        if (root.at("/data").isMissingNode()) throw err("", "data: required (at least data.file)");
        onlyKeys("/data", DATA);
        DataConfig d = new DataConfig();
        d.data = Path.of(required(root, "/data/file"));
        d.format = text(root, "/data/format", d.format);
        d.fields = text(root, "/data/fields", null);
        d.categories = list("/data/categories");
        d.template = text(root, "/data/template", d.template);
        d.maxSeqLen = integer(root, "/data/max_seq_len", d.maxSeqLen, 2);
        d.truncate = bool("/data/truncate", false);
        d.strict = bool("/data/strict", false);
        d.valSize = text(root, "/data/val_size", d.valSize);
        d.seed = integer(root, "/data/seed", (int) d.seed, Integer.MIN_VALUE);
        d.batchSize = integer(root, "/data/batch_size", d.batchSize, 1);
        d.bucket = integer(root, "/data/bucket", 0, 0);
        return d;
    }

    private Eval parseEval() {
        if (root.at("/eval").isMissingNode()) throw err("", "eval: required (at least eval.tasks)");
        onlyKeys("/eval", EVAL);
        List<String> tasks = list("/eval/tasks");
        if (tasks == null || tasks.isEmpty()) throw err("/eval/tasks", "required: a list of lm-eval task names");
        for (int i = 0; i < tasks.size(); i++) {
            String t = tasks.get(i);
            if (Tasks.task(t) == null && Tasks.group(t) == null) {
                throw err("/eval/tasks", "unknown task '" + t + "' (known: mmlu, mmlu_<subject>, hellaswag, arc_easy, arc_challenge, piqa, boolq, winogrande, triviaqa)");
            }
        }
        JsonNode lim = root.at("/eval/limit");
        Double limit = lim.isMissingNode() || lim.isNull() ? null : number("/eval/limit", 0);
        if (limit != null && !(limit > 0)) throw err("/eval/limit", "expected > 0, got " + limit);
        return new Eval(List.copyOf(tasks), text(root, "/eval/data_dir", "data"), limit, integer(root, "/eval/num_fewshot", 0, 0),
                integer(root, "/eval/batch_size", 8, 1));
    }

    private List<Run> parseRuns() {
        JsonNode rs = root.at("/runs");
        if (rs.isMissingNode() || !rs.isArray() || rs.isEmpty()) throw err("/runs", "required: a list of runs, each with a name and a method");
        onlyKeys("/train", COMMON);
        List<Run> out = new ArrayList<>();
        Set<String> names = new LinkedHashSet<>();
        for (int i = 0; i < rs.size(); i++) {
            String ptr = "/runs/" + i;
            JsonNode r = rs.get(i);
            if (!r.isObject()) throw err(ptr, "expected a mapping with name and method");
            String name = required(r, ptr + "/name");
            if (!name.matches("[A-Za-z0-9][A-Za-z0-9._-]*") || name.equals("base")) {
                throw err(ptr + "/name", "expected letters, digits, '.', '_' or '-' (and not 'base'), got '" + name + "'");
            }
            if (!names.add(name)) throw err(ptr + "/name", "duplicate run name '" + name + "'");
            String method = required(r, ptr + "/method");
            if (!METHODS.contains(method)) throw err(ptr + "/method", "unknown method '" + method + "' (expected " + String.join(", ", METHODS) + ")");
            String student = method.equals("distill") ? text(r, ptr + "/student", "full") : null;
            if (student != null && !List.of("full", "lora", "prompt-tuning").contains(student)) {
                throw err(ptr + "/student", "expected full, lora or prompt-tuning, got '" + student + "'");
            }
            Set<String> allowed = new LinkedHashSet<>(COMMON);
            allowed.add("name");
            allowed.add("method");
            allowed.addAll(METHOD.get(method));
            if (student != null) allowed.addAll(METHOD.get(student));
            for (Iterator<String> it = r.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                if (allowed.contains(k)) continue;
                String owner = METHOD.entrySet().stream().filter(e -> e.getValue().contains(k)).map(Map.Entry::getKey).sorted().findFirst().orElse(null);
                throw err(ptr + "/" + k, owner == null ? "unknown option '" + k + "'"
                        : "'" + k + "' is an option of method " + owner + ", not of " + method + (student != null ? " with student " + student : ""));
            }
            if (method.equals("distill") && (r.get("teacher") == null || r.get("teacher").asText().isBlank())) {
                throw err(ptr, "run '" + name + "': method distill needs a teacher (a model directory, a Hub repo id or run:NAME)");
            }
            // the effective entry: the shared train options, then the run's own
            ObjectNode entry = r.deepCopy();
            JsonNode shared = root.at("/train");
            if (shared.isObject()) for (Iterator<String> it = shared.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                if (!entry.has(k)) entry.set(k, shared.get(k));
            }
            TrainConfig c = new TrainConfig(null, null, method);
            for (Iterator<String> it = entry.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                String kp = r.has(k) ? ptr + "/" + k : "/train/" + k;
                apply(c, k, kp);
            }
            Run run = new Run(name, method, entry, c, line(ptr));
            if (c.quantize != dev.peft4j.model.Quantization.NONE && run.trained().equals("full")) {
                throw err(r.has("quantize") ? ptr + "/quantize" : "/train/quantize", "a full-model run trains every weight in float32; "
                        + "quantize applies to a frozen base (prompt-tuning, p-tuning, lora, ia3, or distill with student lora or prompt-tuning)");
            }
            String tr = run.teacherRun();
            if (tr != null) {
                Run src = out.stream().filter(x -> x.name.equals(tr)).findFirst().orElse(null);
                if (src == null) throw err(ptr + "/teacher", "run:" + tr + " must name an earlier run of this recipe");
                if (!src.trained().equals("full")) throw err(ptr + "/teacher", "run:" + tr + " is not a full-model run (its output is an adapter)");
            }
            out.add(run);
        }
        return List.copyOf(out);
    }

    private void apply(TrainConfig c, String k, String ptr) {
        switch (k) {
            case "name", "method" -> { }
            case "epochs" -> c.epochs = integer(root, ptr, 1, 0);
            case "max_steps" -> c.maxSteps = integer(root, ptr, 0, 0);
            case "grad_accum" -> c.gradAccum = integer(root, ptr, 1, 1);
            case "lr" -> c.lr = number(ptr, c.lr);
            case "schedule" -> c.schedule = text(root, ptr, c.schedule);
            case "warmup_steps" -> c.warmupSteps = integer(root, ptr, 0, 0);
            case "weight_decay" -> c.weightDecay = number(ptr, 0);
            case "max_grad_norm" -> c.maxGradNorm = number(ptr, 1);
            case "eval_every" -> c.evalEvery = integer(root, ptr, 0, 0);
            case "save_every" -> c.saveEvery = integer(root, ptr, 0, 0);
            case "keep_checkpoints" -> c.keepCheckpoints = integer(root, ptr, 2, 1);
            case "quantize" -> {
                String v = text(root, ptr, "none");
                try {
                    c.quantize = dev.peft4j.model.Quantization.parse(v);
                } catch (UserException e) {
                    throw err(ptr, "expected q8 or none, got '" + v + "'");
                }
            }
            case "num_virtual_tokens" -> c.numVirtualTokens = integer(root, ptr, 20, 1);
            case "init" -> c.init = text(root, ptr, c.init);
            case "encoder_hidden_size" -> c.encoderHiddenSize = integer(root, ptr, 0, 0);
            case "lora_r" -> c.loraR = integer(root, ptr, 8, 1);
            case "lora_alpha" -> c.loraAlpha = number(ptr, 16);
            case "lora_dropout" -> c.loraDropout = number(ptr, 0);
            case "target_modules" -> c.targetModules = list(ptr);
            case "feedforward_modules" -> c.feedforwardModules = list(ptr);
            case "use_rslora" -> c.useRslora = bool(ptr, false);
            case "init_lora_weights" -> c.initLoraWeights = text(root, ptr, "true");
            case "save_dtype" -> {
                String v = text(root, ptr, "f32");
                if (!v.equals("f32") && !v.equals("bf16")) throw err(ptr, "expected f32 or bf16, got '" + v + "'");
                c.saveBf16 = v.equals("bf16");
            }
            case "teacher" -> c.teacher = Path.of(text(root, ptr, null));
            case "student" -> c.student = text(root, ptr, "full");
            case "kd_alpha" -> c.kdAlpha = number(ptr, 0.5);
            case "kd_beta" -> c.kdBeta = number(ptr, 0.5);
            case "kd_temperature" -> c.kdTemperature = number(ptr, 1);
            case "kd_scale_t2" -> c.kdScaleT2 = bool(ptr, false);
            case "teacher_cache" -> c.teacherCache = Path.of(text(root, ptr, null));
            case "teacher_top_k" -> c.teacherTopK = integer(root, ptr, 64, 1);
            default -> throw err(ptr, "unknown option '" + k + "'");
        }
    }

    /** A run's entry as canonical JSON (sorted keys): a finished run whose entry changed is refused without --rerun. */
    public static String canonical(JsonNode n) {
        if (n.isObject()) {
            Map<String, JsonNode> m = new java.util.TreeMap<>();
            n.fields().forEachRemaining(e -> m.put(e.getKey(), e.getValue()));
            StringBuilder sb = new StringBuilder("{");
            for (var e : m.entrySet()) {
                if (sb.length() > 1) sb.append(',');
                sb.append('"').append(e.getKey()).append("\":").append(canonical(e.getValue()));
            }
            return sb.append('}').toString();
        }
        if (n.isArray()) {
            StringBuilder sb = new StringBuilder("[");
            for (JsonNode x : n) {
                if (sb.length() > 1) sb.append(',');
                sb.append(canonical(x));
            }
            return sb.append(']').toString();
        }
        return n.isNumber() ? String.format(Locale.ROOT, "%s", n.numberValue().doubleValue()) : n.toString();
    }

    /** Settings that are shared by every run and change its result: base model, data, tokenizer. */
    public ObjectNode sharedSettings() {
        ObjectNode o = new YAMLMapper().createObjectNode();
        o.put("base_model", baseModel);
        o.set("data", root.get("data"));
        if (tokenizer != null) o.put("tokenizer", tokenizer.toString());
        if (baseModel.equals("quickstart")) o.put("quickstart_pretrain_steps", quickstartPretrainSteps);
        return o;
    }

    /** Runs by name, in recipe order. */
    public Map<String, Run> byName() {
        Map<String, Run> m = new LinkedHashMap<>();
        for (Run r : runs) m.put(r.name, r);
        return m;
    }
}
