package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.eval.Datasets.Doc;
import dev.peft4j.eval.HarnessLM.GenRequest;
import dev.peft4j.eval.HarnessLM.LL;
import dev.peft4j.eval.HarnessLM.LLRequest;
import dev.peft4j.eval.Task.OutputType;
import dev.peft4j.util.UserException;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.IntConsumer;

/**
 * Runs tasks the way lm-evaluation-harness does: few-shot contexts (REFERENCE 3.2, 3.3), one request per choice, per-document
 * metrics (3.5), mean aggregation with {@code mean_stderr}, size-weighted groups with pooled stderr, and the results JSON
 * layout (3.10).
 */
public final class Evaluator {
    private Evaluator() {}

    public static final int FEWSHOT_SEED = 1234;
    public static final int MAX_GEN_TOKS = 256;
    static final String TARGET_DELIMITER = " ", FEWSHOT_DELIMITER = "\n\n";
    private static final ObjectMapper JSON = new ObjectMapper();

    /** lm-eval's {@code model_args} for results: "pretrained=MODEL[,peft=ADAPTER][,quantize=q8]". */
    public static String modelArgs(Object model, Object adapter, dev.peft4j.model.Quantization quant) {
        return "pretrained=" + model + (adapter != null ? ",peft=" + adapter : "")
                + (quant != dev.peft4j.model.Quantization.NONE ? ",quantize=" + quant.id() : "");
    }

    /**
     * @param limit        first N documents of each task, or a fraction of them when below 1 (null = all), as lm-eval
     * @param modelArgs    shown in {@code config.model_args}
     * @param progress     makes a progress reporter for a phase name and total; receives steps
     */
    public record Options(int numFewshot, Double limit, int batchSize, String modelArgs,
                          ProgressFactory progress) {}

    public interface ProgressFactory {
        /** Starts a phase of {@code total} steps; the returned consumer takes steps done, close with {@code accept(-1)}. */
        IntConsumer start(String name, long total);

        ProgressFactory NONE = (name, total) -> n -> {};
    }

    /** The results JSON and, per task, the per-document sample records ({@code --log-samples}). */
    public record Output(ObjectNode results, Map<String, List<ObjectNode>> samples) {}

    /** One evaluated document: its requests (indices into the global request lists). */
    private record DocRun(Doc doc, List<LLRequest> ll, GenRequest gen, int firstReq) {}

    private record TaskRun(Task task, int original, List<DocRun> docs) {}

    // ------------------------------------------------------------------ prompts

    /** lm-eval's default / first_n sampler for one evaluated doc (the random stream is shared by all docs of a task). */
    public static List<JsonNode> fewshotExamples(Task t, List<JsonNode> pool, JsonNode doc, int n, PyRandom rnd) {
        if (n == 0) return List.of();
        if (t.firstN()) {
            if (n > pool.size()) {
                throw new UserException("--num-fewshot " + n + ": task " + t.name() + " has only " + pool.size()
                        + " examples in its " + t.fewshotSplit() + " split");
            }
            return pool.subList(0, n).stream().filter(x -> !x.equals(doc)).toList();
        }
        int draw = t.drawExtra() ? n + 1 : n;
        if (draw > pool.size()) {
            throw new UserException("--num-fewshot " + n + ": task " + t.name() + " has only " + pool.size()
                    + " examples in its " + t.fewshotSplit() + " split (needs " + draw + ")");
        }
        List<JsonNode> drawn = rnd.sample(pool, draw);
        if (!t.drawExtra()) return drawn;
        List<JsonNode> kept = new ArrayList<>();
        for (JsonNode x : drawn) if (!x.equals(doc) && kept.size() < n) kept.add(x);
        return kept;
    }

    /** Description plus each example as {@code text + " " + answer + "\n\n"}. */
    public static String fewshotPrefix(Task t, List<JsonNode> examples) {
        StringBuilder sb = new StringBuilder(t.description());
        for (JsonNode ex : examples) {
            Object text = t.docToText().apply(ex);
            List<String> choices = t.docToChoice() == null ? null : t.docToChoice().apply(ex);
            sb.append(text instanceof Integer i && choices != null ? choices.get(i) : (String) text);
            sb.append(TARGET_DELIMITER);
            Object target = t.docToTarget().apply(ex);
            if (target instanceof List<?> l) sb.append(l.get(0));
            else if (target instanceof Integer i && choices != null) sb.append(choices.get(i));
            else sb.append(target);
            sb.append(FEWSHOT_DELIMITER);
        }
        return sb.toString();
    }

    /** Loglikelihood requests of a multiple-choice doc: (context, " " + choice), or for partial tasks (prefix + choice, " " + target). */
    public static List<LLRequest> requests(Task t, String prefix, JsonNode doc) {
        List<String> choices = t.docToChoice().apply(doc);
        List<LLRequest> out = new ArrayList<>();
        if (t.multipleInput()) {
            String cont = TARGET_DELIMITER + t.docToTarget().apply(doc);
            for (String c : choices) out.add(new LLRequest(prefix + c, cont));
        } else {
            String ctx = prefix + t.docToText().apply(doc);
            for (String c : choices) out.add(new LLRequest(ctx, TARGET_DELIMITER + c));
        }
        return out;
    }

    // ------------------------------------------------------------------ metrics

    static int gold(Task t, JsonNode doc) {
        Object g = t.multipleInput() ? t.docToText().apply(doc) : t.docToTarget().apply(doc);
        if (g instanceof Integer i) return i;
        return t.docToChoice().apply(doc).indexOf((String) g);
    }

    /** acc (argmax of summed log-likelihoods) and acc_norm (divided by the choice's character length); first index wins ties. */
    static Map<String, Double> multipleChoiceMetrics(Task t, JsonNode doc, List<LL> lls) {
        List<String> choices = t.docToChoice().apply(doc);
        int gold = gold(t, doc);
        int pred = 0, predNorm = 0;
        for (int i = 1; i < lls.size(); i++) {
            if (lls.get(i).logprob() > lls.get(pred).logprob()) pred = i;
            if (lls.get(i).logprob() / Py.len(choices.get(i)) > lls.get(predNorm).logprob() / Py.len(choices.get(predNorm))) predNorm = i;
        }
        Map<String, Double> m = new LinkedHashMap<>();
        for (String metric : t.metrics()) {
            switch (metric) {
                case "acc" -> m.put("acc", pred == gold ? 1.0 : 0.0);
                case "acc_norm" -> m.put("acc_norm", predNorm == gold ? 1.0 : 0.0);
                default -> throw new IllegalStateException("metric " + metric);
            }
        }
        return m;
    }

    /** exact_match with ignore_case and ignore_punctuation; 1 if the prediction equals any reference. */
    static double exactMatch(String prediction, List<String> references) {
        String p = normalize(prediction);
        for (String r : references) if (normalize(r).equals(p)) return 1.0;
        return 0.0;
    }

    private static String normalize(String s) {
        String lower = s.toLowerCase(Locale.ROOT);
        StringBuilder sb = new StringBuilder(lower.length());
        for (int i = 0; i < lower.length(); i++) {
            char c = lower.charAt(i);
            if (Py.PUNCTUATION.indexOf(c) < 0) sb.append(c);
        }
        return sb.toString();
    }

    /** Mean and {@code mean_stderr} (sample std with n-1, over sqrt(n)); stderr NaN ("N/A") for one item. */
    static double[] meanStderr(List<Double> xs) {
        double mean = 0;
        for (double x : xs) mean += x;
        mean /= xs.size();
        if (xs.size() <= 1) return new double[]{mean, Double.NaN};
        double ss = 0;
        for (double x : xs) ss += (x - mean) * (x - mean);
        return new double[]{mean, Math.sqrt(ss / (xs.size() - 1)) / Math.sqrt(xs.size())};
    }

    /** {@code pooled_sample_stderr}. */
    static double pooledStderr(List<Double> stderrs, List<Integer> sizes) {
        double num = 0;
        long total = 0;
        for (int i = 0; i < sizes.size(); i++) {
            num += (sizes.get(i) - 1) * stderrs.get(i) * stderrs.get(i) * sizes.get(i);
            total += sizes.get(i);
        }
        return Math.sqrt(num / (total - sizes.size()) / total);
    }

    // ------------------------------------------------------------------ the run

    /** Documents and requests of every task, built before any model time is spent (data errors show first). */
    public static final class Prepared {
        private final Tasks.Selection sel;
        private final Options opt;
        private final List<TaskRun> runs;
        private final List<LLRequest> llReqs;
        private final List<GenRequest> genReqs;

        private Prepared(Tasks.Selection sel, Options opt, List<TaskRun> runs, List<LLRequest> ll, List<GenRequest> gen) {
            this.sel = sel; this.opt = opt; this.runs = runs; this.llReqs = ll; this.genReqs = gen;
        }

        public int loglikelihoodRequests() { return llReqs.size(); }
        public int generationRequests() { return genReqs.size(); }
        /** The log-likelihood requests (context, continuation), in evaluation order. */
        public List<LLRequest> loglikelihoodRequestList() { return java.util.Collections.unmodifiableList(llReqs); }
    }

    public static Output evaluate(EvalLM lm, Tasks.Selection sel, Path dataDir, Options opt) {
        return run(lm, prepare(sel, dataDir, opt));
    }

    public static Prepared prepare(Tasks.Selection sel, Path dataDir, Options opt) {
        if (opt.limit() != null && !(opt.limit() > 0)) {
            throw new UserException("--limit must be a number of documents (1 or more) or a fraction between 0 and 1, got " + fmtLimit(opt.limit()));
        }
        if (opt.numFewshot() < 0) throw new UserException("--num-fewshot must be 0 or more, got " + opt.numFewshot());

        // Load everything first so that data errors show before any model time is spent.
        List<TaskRun> runs = new ArrayList<>();
        List<LLRequest> llReqs = new ArrayList<>();
        List<GenRequest> genReqs = new ArrayList<>();
        for (Task t : sel.tasks()) {
            List<Doc> all = Datasets.load(dataDir, t, t.evalSplit());
            List<Doc> docs = all.subList(0, limitDocs(opt.limit(), all.size()));
            List<JsonNode> pool = opt.numFewshot() > 0
                    ? Datasets.load(dataDir, t, t.fewshotSplit()).stream().map(Doc::json).toList() : List.of();
            PyRandom rnd = new PyRandom(FEWSHOT_SEED);
            List<DocRun> docRuns = new ArrayList<>();
            for (Doc d : docs) {
                String prefix = fewshotPrefix(t, fewshotExamples(t, pool, d.json(), opt.numFewshot(), rnd));
                if (t.outputType() == OutputType.GENERATE_UNTIL) {
                    GenRequest g = new GenRequest(prefix + t.docToText().apply(d.json()), t.until(), MAX_GEN_TOKS);
                    docRuns.add(new DocRun(d, List.of(), g, genReqs.size()));
                    genReqs.add(g);
                } else {
                    List<LLRequest> rs = requests(t, prefix, d.json());
                    docRuns.add(new DocRun(d, rs, null, llReqs.size()));
                    llReqs.addAll(rs);
                }
            }
            runs.add(new TaskRun(t, all.size(), docRuns));
        }
        return new Prepared(sel, opt, runs, llReqs, genReqs);
    }

    /** lm-eval: {@code int(math.ceil(len(docs) * limit)) if limit < 1.0 else int(limit)}. */
    static int limitDocs(Double limit, int n) {
        if (limit == null) return n;
        return (int) Math.min(n, limit < 1 ? Math.ceil(n * limit) : Math.floor(limit));
    }

    static String fmtLimit(double l) { return l == Math.rint(l) ? String.valueOf((long) l) : String.valueOf(l); }

    public static Output run(EvalLM lm, Prepared prep) {
        long t0 = System.nanoTime();
        Options opt = prep.opt;
        List<TaskRun> runs = prep.runs;
        List<LLRequest> llReqs = prep.llReqs;
        List<GenRequest> genReqs = prep.genReqs;
        Tasks.Selection sel = prep.sel;
        List<LL> lls = List.of();
        if (!llReqs.isEmpty()) {
            IntConsumer p = opt.progress().start("loglikelihood", llReqs.size());
            lls = lm.loglikelihood(llReqs, p);
            p.accept(-1);
        }
        List<String> gens = List.of();
        if (!genReqs.isEmpty()) {
            IntConsumer p = opt.progress().start("generate_until", genReqs.size());
            gens = lm.generateUntil(genReqs, p);
            p.accept(-1);
        }

        // Per-document metrics and samples.
        Map<String, Map<String, List<Double>>> perTask = new LinkedHashMap<>();
        Map<String, List<ObjectNode>> samples = new LinkedHashMap<>();
        for (TaskRun r : runs) {
            Task t = r.task();
            Map<String, List<Double>> values = new LinkedHashMap<>();
            for (String m : t.metrics()) values.put(m, new ArrayList<>());
            List<ObjectNode> taskSamples = new ArrayList<>();
            for (int di = 0; di < r.docs().size(); di++) {
                DocRun d = r.docs().get(di);
                JsonNode doc = d.doc().json();
                ObjectNode s = JSON.createObjectNode();
                s.put("doc_id", di);
                s.set("doc", doc);
                ObjectNode args = JSON.createObjectNode();
                ArrayNode resps = JSON.createArrayNode(), filtered = JSON.createArrayNode();
                Map<String, Double> m;
                String prompt;
                if (t.outputType() == OutputType.GENERATE_UNTIL) {
                    @SuppressWarnings("unchecked") List<String> refs = (List<String>) t.docToTarget().apply(doc);
                    String raw = gens.get(d.firstReq());
                    String pred = Py.lstrip(raw); // remove_whitespace, then take_first
                    m = Map.of("exact_match", exactMatch(pred, refs));
                    prompt = d.gen().context();
                    ObjectNode a = args.putObject("gen_args_0");
                    a.put("arg_0", prompt);
                    ObjectNode kw = a.putObject("arg_1");
                    kw.set("until", JSON.valueToTree(t.until()));
                    kw.put("do_sample", false);
                    kw.put("temperature", 0.0);
                    resps.addArray().add(raw);
                    filtered.add(pred);
                    s.set("target", JSON.valueToTree(refs));
                } else {
                    List<LL> docLls = lls.subList(d.firstReq(), d.firstReq() + d.ll().size());
                    m = multipleChoiceMetrics(t, doc, docLls);
                    prompt = d.ll().get(0).context();
                    for (int k = 0; k < d.ll().size(); k++) {
                        ObjectNode a = args.putObject("gen_args_" + k);
                        a.put("arg_0", d.ll().get(k).context());
                        a.put("arg_1", d.ll().get(k).continuation());
                        ArrayNode pair = JSON.createArrayNode().add(docLls.get(k).logprob()).add(docLls.get(k).greedy());
                        resps.addArray().add(pair);
                        filtered.add(pair.deepCopy());
                    }
                    s.put("target", gold(t, doc));
                }
                for (var e : m.entrySet()) values.get(e.getKey()).add(e.getValue());
                s.set("arguments", args);
                s.set("resps", resps);
                s.set("filtered_resps", filtered);
                s.put("filter", t.filter());
                s.set("metrics", JSON.valueToTree(t.metrics()));
                s.put("doc_hash", sha256(doc.toString()));
                s.put("prompt_hash", sha256(prompt));
                s.put("target_hash", sha256(s.get("target").isArray() ? s.get("target").toString() : s.get("target").asText()));
                for (var e : m.entrySet()) s.put(e.getKey(), e.getValue());
                s.put("source", d.doc().source());
                taskSamples.add(s);
            }
            perTask.put(t.name(), values);
            samples.put(t.name(), taskSamples);
        }

        ObjectNode results = buildResults(sel, runs, perTask, opt);
        results.put("total_evaluation_time_seconds", String.valueOf((System.nanoTime() - t0) / 1e9));
        return new Output(results, samples);
    }

    private static String sha256(String s) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    // ------------------------------------------------------------------ results JSON

    /** A metric's aggregate for a task or group: value, stderr (NaN = "N/A"), and the number of documents. */
    private record Agg(double value, double stderr, int size) {}

    private static ObjectNode buildResults(Tasks.Selection sel, List<TaskRun> runs, Map<String, Map<String, List<Double>>> perTask,
                                           Options opt) {
        Map<String, TaskRun> runOf = new LinkedHashMap<>();
        for (TaskRun r : runs) runOf.put(r.task().name(), r);
        Map<String, Map<String, Agg>> aggs = new LinkedHashMap<>();
        for (var e : perTask.entrySet()) {
            Map<String, Agg> a = new LinkedHashMap<>();
            for (var m : e.getValue().entrySet()) {
                double[] ms = meanStderr(m.getValue());
                a.put(m.getKey(), new Agg(ms[0], ms[1], m.getValue().size()));
            }
            aggs.put(e.getKey(), a);
        }

        ObjectNode root = JSON.createObjectNode();
        ObjectNode results = root.putObject("results");
        ObjectNode groups = JSON.createObjectNode();
        ObjectNode groupSubtasks = JSON.createObjectNode();
        ObjectNode versions = JSON.createObjectNode();
        ObjectNode higher = JSON.createObjectNode();
        LinkedHashSet<String> seen = new LinkedHashSet<>();
        for (String name : sel.requested()) emit(name, 0, aggs, results, groups, groupSubtasks, versions, higher, seen);

        if (!groups.isEmpty()) root.set("groups", groups);
        root.set("group_subtasks", groupSubtasks);
        ObjectNode configs = root.putObject("configs");
        ObjectNode nshot = JSON.createObjectNode();
        ObjectNode nsamples = JSON.createObjectNode();
        for (TaskRun r : runs) {
            ObjectNode c = JSON.valueToTree(r.task().config());
            c.put("num_fewshot", opt.numFewshot());
            configs.set(r.task().name(), c);
            nshot.put(r.task().name(), opt.numFewshot());
            ObjectNode ns = nsamples.putObject(r.task().name());
            ns.put("original", r.original());
            ns.put("effective", r.docs().size());
        }
        root.set("versions", versions);
        root.set("n-shot", nshot);
        root.set("higher_is_better", higher);
        root.set("n-samples", nsamples);
        ObjectNode config = root.putObject("config");
        config.put("model", "peft4j");
        config.put("model_args", opt.modelArgs());
        config.put("batch_size", String.valueOf(opt.batchSize()));
        if (opt.limit() == null) config.putNull("limit");
        else if (opt.limit() >= 1) config.put("limit", (long) Math.floor(opt.limit()));
        else config.put("limit", opt.limit());
        config.put("bootstrap_iters", 100000);
        config.putNull("gen_kwargs");
        config.put("random_seed", 0);
        config.put("numpy_seed", 1234);
        config.put("torch_seed", 1234);
        config.put("fewshot_seed", FEWSHOT_SEED);
        root.put("date", System.currentTimeMillis() / 1000.0);
        root.put("peft4j_version", "0.1.0");
        return root;
    }

    /** Writes a task's or group's entry (groups first, then their children, depth-indented aliases as lm-eval prints them). */
    private static Map<String, Agg> emit(String name, int depth, Map<String, Map<String, Agg>> aggs, ObjectNode results,
                                         ObjectNode groups, ObjectNode groupSubtasks, ObjectNode versions, ObjectNode higher,
                                         LinkedHashSet<String> seen) {
        Tasks.Group g = Tasks.group(name);
        if (g == null) {
            Task t = Tasks.task(name);
            Map<String, Agg> a = aggs.get(name);
            if (seen.add(name)) {
                String alias = depth == 0 ? t.alias() : " ".repeat(depth) + "- " + t.alias();
                results.set(name, entry(alias, a, t.filter()));
                versions.put(name, t.version());
                ObjectNode h = higher.putObject(name);
                for (String m : t.metrics()) h.put(m, true);
                if (depth == 0) groupSubtasks.putArray(name);
            }
            return a;
        }
        ObjectNode placeholder = results.putObject(name); // keeps the group before its children
        List<Map<String, Agg>> children = new ArrayList<>();
        for (String c : g.children()) children.add(emit(c, depth + 1, aggs, results, groups, groupSubtasks, versions, higher, seen));
        Map<String, Agg> mine = new LinkedHashMap<>();
        LinkedHashSet<String> metrics = new LinkedHashSet<>();
        for (Map<String, Agg> c : children) metrics.addAll(c.keySet());
        for (String m : metrics) {
            List<Double> values = new ArrayList<>(), stderrs = new ArrayList<>();
            List<Integer> sizes = new ArrayList<>();
            boolean na = false;
            for (Map<String, Agg> c : children) {
                Agg a = c.get(m);
                if (a == null) continue;
                values.add(a.value());
                stderrs.add(a.stderr());
                sizes.add(a.size());
                if (Double.isNaN(a.stderr())) na = true;
            }
            double num = 0;
            int total = 0;
            for (int i = 0; i < values.size(); i++) { num += values.get(i) * sizes.get(i); total += sizes.get(i); }
            double stderr = na || total <= sizes.size() ? Double.NaN : pooledStderr(stderrs, sizes);
            mine.put(m, new Agg(num / total, stderr, total));
        }
        String alias = depth == 0 ? g.alias() : " ".repeat(depth) + "- " + g.alias();
        ObjectNode e = entry(alias, mine, "none");
        placeholder.setAll(e);
        groups.set(name, e.deepCopy());
        groupSubtasks.set(name, JSON.valueToTree(g.children()));
        versions.put(name, g.version());
        ObjectNode h = higher.putObject(name);
        for (String m : mine.keySet()) h.put(m, true);
        return mine;
    }

    private static ObjectNode entry(String alias, Map<String, Agg> a, String filter) {
        ObjectNode o = JSON.createObjectNode();
        o.put("alias", alias);
        for (var m : a.entrySet()) {
            o.put(m.getKey() + "," + filter, m.getValue().value());
            if (Double.isNaN(m.getValue().stderr())) o.put(m.getKey() + "_stderr," + filter, "N/A");
            else o.put(m.getKey() + "_stderr," + filter, m.getValue().stderr());
        }
        return o;
    }
}
