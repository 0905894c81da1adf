package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.Shared;
import dev.peft4j.eval.HarnessLM.LLRequest;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.*;

/** Prompt strings checked verbatim against REFERENCE.md 3.2 / 3.7 (expected strings written by hand). */
class TasksTest {
    static final ObjectMapper M = new ObjectMapper();

    static JsonNode json(String s) {
        try { return M.readTree(s.replace('\'', '"')); } catch (Exception e) { throw new RuntimeException(e); }
    }

    private static List<String> conts(List<LLRequest> r) { return r.stream().map(LLRequest::continuation).toList(); }

    @Test
    void mmluOneShotContext() {
        Task t = Tasks.task("mmlu_abstract_algebra");
        JsonNode dev = json("{'question':'Find all c in Z_3.','subject':'abstract_algebra','choices':['0','1','2','3'],'answer':1}");
        JsonNode doc = json("{'question':'  Find the degree.\\n ','subject':'abstract_algebra','choices':['0','4','2','6'],'answer':1}");
        String prefix = Evaluator.fewshotPrefix(t, List.of(dev));
        List<LLRequest> r = Evaluator.requests(t, prefix, doc);
        assertEquals("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
                + "Find all c in Z_3.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
                + "Find the degree.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:", r.get(0).context());
        assertEquals(List.of(" A", " B", " C", " D"), conts(r));
        assertEquals(1, Evaluator.gold(t, doc));
        assertEquals("The following are multiple choice questions (with answers) about high school computer science.\n\n",
                Tasks.task("mmlu_high_school_computer_science").description());
    }

    @Test
    void mmluFromTheSharedCsvsUsesTheFirstDevExamples() {
        Path data = Shared.require("data");
        Task t = Tasks.task("mmlu_abstract_algebra");
        var test = Datasets.load(data, t, "test");
        var dev = Datasets.load(data, t, "dev").stream().map(Datasets.Doc::json).toList();
        assertEquals(100, test.size());
        List<JsonNode> shots = Evaluator.fewshotExamples(t, dev, test.get(0).json(), 1, new PyRandom(1234));
        String ctx = Evaluator.requests(t, Evaluator.fewshotPrefix(t, shots), test.get(0).json()).get(0).context();
        assertEquals("The following are multiple choice questions (with answers) about abstract algebra.\n\n"
                + "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
                + "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:", ctx);
        assertEquals(1, Evaluator.gold(t, test.get(0).json()));
    }

    @Test
    void hellaswagPreprocessing() {
        // by hand: strip; " [title]" -> ". "; drop [..]; one pass of "  " -> " "
        assertEquals("How to clean. Use soap. Rinse well.", Tasks.hellaswagPreprocess("  How to clean [title] Use soap. [step] Rinse  well.  "));
        assertEquals("a  b", Tasks.hellaswagPreprocess("a   b"));
        Task t = Tasks.task("hellaswag");
        JsonNode doc = t.processDoc().apply(json("{'activity_label':'Roof shingle removal','ctx_a':'A man is sitting on a roof.',"
                + "'ctx_b':'HE IS','endings':['is using wrap.','rips [step] tiles.','x','y'],'label':'3'}"));
        List<LLRequest> r = Evaluator.requests(t, "", doc);
        assertEquals("Roof shingle removal: A man is sitting on a roof. He is", r.get(0).context());
        assertEquals(List.of(" is using wrap.", " rips tiles.", " x", " y"), conts(r));
        assertEquals(3, Evaluator.gold(t, doc));
        // the shared dump has ctx_b empty: the trailing space is stripped
        JsonNode shared = t.processDoc().apply(json("{'activity_label':'Roof shingle removal','ctx_a':'A man is sitting on a roof. he',"
                + "'ctx_b':'','endings':['a','b','c','d'],'label':3}"));
        assertEquals("Roof shingle removal: A man is sitting on a roof. he", Evaluator.requests(t, "", shared).get(0).context());
    }

    @Test
    void arcPiqaBoolq() {
        JsonNode arc = json("{'question':'Which is a gas?','choices':{'text':['ice','steam','rock'],'label':['1','2','3']},'answerKey':'2'}");
        Task a = Tasks.task("arc_challenge");
        List<LLRequest> r = Evaluator.requests(a, "", arc);
        assertEquals("Question: Which is a gas?\nAnswer:", r.get(0).context());
        assertEquals(List.of(" ice", " steam", " rock"), conts(r));
        assertEquals(1, Evaluator.gold(a, arc));
        assertEquals("Question: Which is a gas?\nAnswer: steam\n\n", Evaluator.fewshotPrefix(a, List.of(arc)));

        Task p = Tasks.task("piqa");
        JsonNode piqa = json("{'goal':'Open a jar','sol1':'twist the lid','sol2':'hit it','label':0}");
        assertEquals("Question: Open a jar\nAnswer:", Evaluator.requests(p, "", piqa).get(0).context());
        assertEquals(List.of(" twist the lid", " hit it"), conts(Evaluator.requests(p, "", piqa)));

        Task b = Tasks.task("boolq");
        JsonNode boolq = json("{'passage':'Water is wet.','question':'is water wet','label':1}");
        assertEquals("Water is wet.\nQuestion: is water wet?\nAnswer:", Evaluator.requests(b, "", boolq).get(0).context());
        assertEquals(List.of(" no", " yes"), conts(Evaluator.requests(b, "", boolq)));
        assertEquals("Water is wet.\nQuestion: is water wet?\nAnswer: yes\n\n", Evaluator.fewshotPrefix(b, List.of(boolq)));
    }

    @Test
    void winograndePartialScoring() {
        Task t = Tasks.task("winogrande");
        JsonNode doc = json("{'sentence':'The trophy did not fit in the case because the _ was too big.','option1':'trophy','option2':'case','answer':'1'}");
        List<LLRequest> r = Evaluator.requests(t, "PRE\n\n", doc);
        assertEquals("PRE\n\nThe trophy did not fit in the case because the trophy", r.get(0).context());
        assertEquals("PRE\n\nThe trophy did not fit in the case because the case", r.get(1).context());
        assertEquals(List.of(" was too big.", " was too big."), conts(r));
        assertEquals(0, Evaluator.gold(t, doc));
        JsonNode ex = json("{'sentence':'Ann gave Bo a gift because _ was kind.','option1':'Ann','option2':'Bo','answer':'2'}");
        assertEquals("Ann gave Bo a gift because Bo was kind.\n\n", Evaluator.fewshotPrefix(t, List.of(ex)));
    }

    @Test
    void triviaqaPromptAndFewshotAnswer() {
        Task t = Tasks.task("triviaqa");
        JsonNode doc = json("{'question':'Who wrote Hamlet','answer':{'aliases':['William Shakespeare','Shakespeare'],'value':'x'}}");
        assertEquals("Question: Who wrote Hamlet?\nAnswer:", t.docToText().apply(doc));
        assertEquals("Question: Who wrote Hamlet?\nAnswer: William Shakespeare\n\n", Evaluator.fewshotPrefix(t, List.of(doc)));
        assertEquals(List.of("\n", ".", ","), t.until());
    }

    @Test
    void seededSamplerDrawsNPlusOneAndDropsTheEvalDoc() {
        // Python: r = random.Random(1234); r.sample(range(10), 3) -> [7, 1, 0]; r.sample(range(10), 3) -> [1, 0, 9]
        Task t = Tasks.task("hellaswag");
        List<JsonNode> pool = IntStream.range(0, 10).mapToObj(i -> (JsonNode) json("{'i':" + i + "}")).toList();
        PyRandom rnd = new PyRandom(1234);
        assertEquals(List.of(pool.get(7), pool.get(1)), Evaluator.fewshotExamples(t, pool, pool.get(0), 2, rnd));
        assertEquals(List.of(pool.get(0), pool.get(9)), Evaluator.fewshotExamples(t, pool, pool.get(1), 2, rnd));
        // ARC (test_split set, no fewshot_split) draws exactly n: Python [7, 1] then [0, 1]
        Task arc = Tasks.task("arc_easy");
        PyRandom r2 = new PyRandom(1234);
        assertEquals(List.of(pool.get(7), pool.get(1)), Evaluator.fewshotExamples(arc, pool, pool.get(5), 2, r2));
        assertEquals(List.of(pool.get(0), pool.get(1)), Evaluator.fewshotExamples(arc, pool, pool.get(5), 2, r2));
        // MMLU: first n of dev
        Task mmlu = Tasks.task("mmlu_anatomy");
        assertEquals(pool.subList(0, 3), Evaluator.fewshotExamples(mmlu, pool, json("{'i':99}"), 3, new PyRandom(1234)));
        UserException e = assertThrows(UserException.class,
                () -> Evaluator.fewshotExamples(mmlu, pool.subList(0, 5), json("{'i':99}"), 6, new PyRandom(1234)));
        assertTrue(e.getMessage().contains("only 5"), e.getMessage());
    }

    @Test
    void unknownTaskListsKnownOnes() {
        UserException e = assertThrows(UserException.class, () -> Tasks.resolve(List.of("hellaswag", "mmlu_astrology")));
        assertTrue(e.getMessage().contains("unknown task 'mmlu_astrology'"), e.getMessage());
        assertTrue(e.getMessage().contains("arc_easy") && e.getMessage().contains("winogrande"), e.getMessage());
        assertEquals(57, Tasks.resolve(List.of("mmlu")).tasks().size());
        assertEquals(13, Tasks.resolve(List.of("mmlu_humanities")).tasks().size());
    }
}
