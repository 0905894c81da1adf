package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.eval.HarnessLM.GenRequest;
import dev.peft4j.eval.HarnessLM.LL;
import dev.peft4j.eval.HarnessLM.LLRequest;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntConsumer;

import static org.junit.jupiter.api.Assertions.*;

class EvaluatorTest {
    @TempDir Path dir;

    /** Prefers " B" among letters, any continuation containing "good" otherwise; generates " Paris". */
    static final class FakeEvalLM implements EvalLM {
        final List<LLRequest> seen = new ArrayList<>();
        final List<GenRequest> gens = new ArrayList<>();

        public List<LL> loglikelihood(List<LLRequest> requests, IntConsumer progress) {
            seen.addAll(requests);
            List<LL> out = new ArrayList<>();
            for (LLRequest r : requests) {
                boolean good = r.continuation().equals(" B") || r.continuation().contains("good");
                out.add(new LL(good ? -1.0 : -3.0, good));
            }
            progress.accept(requests.size());
            return out;
        }

        public List<String> generateUntil(List<GenRequest> requests, IntConsumer progress) {
            gens.addAll(requests);
            return requests.stream().map(r -> " Paris").toList();
        }
    }

    private void write(String rel, String... lines) throws IOException {
        Path p = dir.resolve(rel);
        Files.createDirectories(p.getParent());
        Files.writeString(p, String.join("\n", lines) + "\n");
    }

    private static Evaluator.Options opts(int shots, Double limit) {
        return new Evaluator.Options(shots, limit, 1, "pretrained=x", Evaluator.ProgressFactory.NONE);
    }

    @Test
    void metricsByHand() {
        Task hs = Tasks.task("hellaswag");
        JsonNode doc = TasksTest.json("{'query':'q','choices':['a','bbbb'],'label':1}");
        // acc: argmax(-2, -4) = 0; acc_norm: argmax(-2/1, -4/4) = 1
        var m = Evaluator.multipleChoiceMetrics(hs, doc, List.of(new LL(-2, false), new LL(-4, false)));
        assertEquals(0.0, m.get("acc"));
        assertEquals(1.0, m.get("acc_norm"));
        // ties: first index wins
        var tie = Evaluator.multipleChoiceMetrics(hs, doc, List.of(new LL(-4, false), new LL(-4, false)));
        assertEquals(0.0, tie.get("acc"));
        assertEquals(1.0, Evaluator.exactMatch("paris.", List.of("Paris", "Paris, France")));
        assertEquals(1.0, Evaluator.exactMatch("U.S.A", List.of("usa")));
        assertEquals(0.0, Evaluator.exactMatch("Lyon", List.of("Paris")));
        // numpy: np.std([1,0,1,1,0], ddof=1)/sqrt(5) = 0.24494897427831783
        assertEquals(0.24494897427831783, Evaluator.meanStderr(List.of(1.0, 0.0, 1.0, 1.0, 0.0))[1], 1e-12);
        assertTrue(Double.isNaN(Evaluator.meanStderr(List.of(1.0))[1]));
        // lm-eval pooled_sample_stderr([se([1,0,1]), se([0,0,1,1,1])], [3, 5]) = 0.19720265943665388 (numpy)
        assertEquals(0.19720265943665388, Evaluator.pooledStderr(List.of(0.33333333333333337, 0.24494897427831783), List.of(3, 5)), 1e-12);
    }

    @Test
    void arcAndTriviaqaEndToEnd() throws IOException {
        write("arc_easy/test.jsonl",
                "{\"question\":\"Q1\",\"choices\":{\"text\":[\"good\",\"bad\"],\"label\":[\"A\",\"B\"]},\"answerKey\":\"A\"}",
                "{\"question\":\"Q2\",\"choices\":{\"text\":[\"bad\",\"good\",\"worse\"],\"label\":[\"A\",\"B\",\"C\"]},\"answerKey\":\"C\"}",
                "{\"question\":\"Q3\",\"choices\":{\"text\":[\"bad\",\"good\"],\"label\":[\"1\",\"2\"]},\"answerKey\":\"2\"}");
        write("arc_easy/train.jsonl",
                "{\"question\":\"T0\",\"choices\":{\"text\":[\"x\",\"y\"],\"label\":[\"A\",\"B\"]},\"answerKey\":\"A\"}",
                "{\"question\":\"T1\",\"choices\":{\"text\":[\"x\",\"y\"],\"label\":[\"A\",\"B\"]},\"answerKey\":\"B\"}",
                "{\"question\":\"T2\",\"choices\":{\"text\":[\"x\",\"y\"],\"label\":[\"A\",\"B\"]},\"answerKey\":\"A\"}");
        write("triviaqa/validation.jsonl",
                "{\"question\":\"Capital of France\",\"answer\":{\"aliases\":[\"Paris\"]}}",
                "{\"question\":\"Capital of Italy\",\"answer\":{\"aliases\":[\"Rome\",\"Roma\"]}}");
        write("triviaqa/train.jsonl",
                "{\"question\":\"A\",\"answer\":{\"aliases\":[\"a1\",\"a2\"]}}",
                "{\"question\":\"B\",\"answer\":{\"aliases\":[\"b1\"]}}",
                "{\"question\":\"C\",\"answer\":{\"aliases\":[\"c1\"]}}");
        FakeEvalLM lm = new FakeEvalLM();
        var out = Evaluator.evaluate(lm, Tasks.resolve(List.of("arc_easy", "triviaqa")), dir, opts(1, null));
        ObjectNode r = out.results();
        // arc: doc1 right, doc2 wrong, doc3 right -> acc 2/3; stderr = std([1,0,1], ddof=1)/sqrt(3) = 1/3
        assertEquals(2.0 / 3, r.at("/results/arc_easy/acc,none").asDouble(), 1e-12);
        assertEquals(1.0 / 3, r.at("/results/arc_easy/acc_stderr,none").asDouble(), 1e-12);
        assertTrue(r.at("/results/arc_easy").has("acc_norm,none"));
        assertEquals(0.5, r.at("/results/triviaqa/exact_match,remove_whitespace").asDouble(), 1e-12);
        assertEquals(1, r.at("/n-shot/arc_easy").asInt());
        assertEquals(3, r.at("/n-samples/arc_easy/original").asInt());
        assertEquals(1234, r.at("/config/fewshot_seed").asInt());
        assertEquals("Question: {{question}}\nAnswer:", r.at("/configs/arc_easy/doc_to_text").asText());
        assertEquals(1.0, r.at("/versions/arc_easy").asDouble());
        assertEquals(3.0, r.at("/versions/triviaqa").asDouble());
        // 1-shot ARC (no drawExtra): Python random.Random(1234).sample(range(3), 1) per doc -> [1], [0], [0]
        List<String> firstContexts = List.of(lm.seen.get(0).context(), lm.seen.get(2).context(), lm.seen.get(5).context());
        assertEquals("Question: T1\nAnswer: y\n\nQuestion: Q1\nAnswer:", firstContexts.get(0));
        assertEquals("Question: T0\nAnswer: x\n\nQuestion: Q2\nAnswer:", firstContexts.get(1));
        assertEquals("Question: T0\nAnswer: x\n\nQuestion: Q3\nAnswer:", firstContexts.get(2));
        assertEquals(List.of("\n", ".", ","), lm.gens.get(0).until());
        assertEquals(256, lm.gens.get(0).maxGenToks());
        // samples
        JsonNode s = out.samples().get("arc_easy").get(1);
        assertEquals(2, s.get("target").asInt());
        assertEquals(" good", s.at("/arguments/gen_args_1/arg_1").asText());
        assertEquals(-1.0, s.at("/filtered_resps/1/0").asDouble());
        assertEquals(0.0, s.get("acc").asDouble());
        assertEquals("Paris", out.samples().get("triviaqa").get(0).at("/filtered_resps/0").asText());
    }

    @Test
    void mmluGroupIsSizeWeightedWithPooledStderr() throws IOException {
        for (String subject : Tasks.MMLU_HUMANITIES) {
            write("mmlu/test/" + subject + "_test.csv", "\"Q, one\",a,b,c,d,B", "Q two,a,b,c,d,C");
            write("mmlu/dev/" + subject + "_dev.csv", "D1,a,b,c,d,A");
        }
        var out = Evaluator.evaluate(new FakeEvalLM(), Tasks.resolve(List.of("mmlu_humanities")), dir, opts(0, null));
        ObjectNode r = out.results();
        assertEquals(0.5, r.at("/results/mmlu_formal_logic/acc,none").asDouble(), 1e-12);
        assertEquals(0.5, r.at("/results/mmlu_formal_logic/acc_stderr,none").asDouble(), 1e-12);
        assertEquals(0.5, r.at("/groups/mmlu_humanities/acc,none").asDouble(), 1e-12);
        // pooled: sqrt(sum((2-1) * 0.5^2 * 2) / (26 - 13) / 26) = sqrt(1/52)
        assertEquals(Math.sqrt(1.0 / 52), r.at("/groups/mmlu_humanities/acc_stderr,none").asDouble(), 1e-12);
        assertEquals(" - formal_logic", r.at("/results/mmlu_formal_logic/alias").asText());
        assertEquals("mmlu_humanities", r.get("results").fieldNames().next());
        assertEquals(13, r.at("/group_subtasks/mmlu_humanities").size());
        assertEquals(2.0, r.at("/versions/mmlu_humanities").asDouble());
        // --limit 1: one doc per subject, stderr N/A
        var lim = Evaluator.evaluate(new FakeEvalLM(), Tasks.resolve(List.of("mmlu_formal_logic")), dir, opts(0, 1.0));
        assertEquals("N/A", lim.results().at("/results/mmlu_formal_logic/acc_stderr,none").asText());
        assertEquals(1, lim.results().at("/n-samples/mmlu_formal_logic/effective").asInt());
        assertEquals("formal_logic", lim.results().at("/results/mmlu_formal_logic/alias").asText());
    }

    @Test
    void badInputs() throws IOException {
        FakeEvalLM lm = new FakeEvalLM();
        UserException missing = assertThrows(UserException.class,
                () -> Evaluator.evaluate(lm, Tasks.resolve(List.of("piqa")), dir, opts(0, null)));
        assertTrue(missing.getMessage().contains("missing data for task piqa"), missing.getMessage());
        assertTrue(missing.getMessage().contains(dir.resolve("piqa/validation.jsonl").toString()), missing.getMessage());

        write("piqa/validation.jsonl", "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":0}", "{\"goal\": oops}");
        UserException bad = assertThrows(UserException.class,
                () -> Evaluator.evaluate(lm, Tasks.resolve(List.of("piqa")), dir, opts(0, null)));
        assertTrue(bad.getMessage().startsWith(dir.resolve("piqa/validation.jsonl") + ":2: not valid JSON"), bad.getMessage());

        write("piqa/validation.jsonl", "{\"goal\":\"g\",\"sol1\":\"a\",\"label\":0}");
        UserException field = assertThrows(UserException.class,
                () -> Evaluator.evaluate(lm, Tasks.resolve(List.of("piqa")), dir, opts(0, null)));
        assertTrue(field.getMessage().contains("validation.jsonl:1: malformed piqa row: missing field 'sol2'"), field.getMessage());

        write("mmlu/test/anatomy_test.csv", "Q,a,b,c,d,A", "Q2,a,b,c,B");
        UserException csv = assertThrows(UserException.class,
                () -> Evaluator.evaluate(lm, Tasks.resolve(List.of("mmlu_anatomy")), dir, opts(0, null)));
        assertTrue(csv.getMessage().contains("anatomy_test.csv:2: malformed MMLU row: expected 6 fields"), csv.getMessage());

        write("mmlu/test/anatomy_test.csv", "Q,a,b,c,d,E");
        UserException ans = assertThrows(UserException.class,
                () -> Evaluator.evaluate(lm, Tasks.resolve(List.of("mmlu_anatomy")), dir, opts(0, null)));
        assertTrue(ans.getMessage().contains("anatomy_test.csv:1: malformed MMLU row: answer must be A, B, C or D"), ans.getMessage());

        write("winogrande/validation.jsonl", "{\"sentence\":\"no blank\",\"option1\":\"a\",\"option2\":\"b\",\"answer\":\"1\"}");
        UserException wino = assertThrows(UserException.class,
                () -> Evaluator.evaluate(lm, Tasks.resolve(List.of("winogrande")), dir, opts(0, null)));
        assertTrue(wino.getMessage().contains("validation.jsonl:1: malformed winogrande row: field 'sentence' has no '_'"), wino.getMessage());

        write("piqa/validation.jsonl", "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":0}");
        UserException zero = assertThrows(UserException.class,
                () -> Evaluator.evaluate(lm, Tasks.resolve(List.of("piqa")), dir, opts(0, 0.0)));
        assertEquals("--limit must be a number of documents (1 or more) or a fraction between 0 and 1, got 0", zero.getMessage());
        assertEquals(3, Evaluator.limitDocs(0.25, 10)); // ceil(2.5)
        assertEquals(10, Evaluator.limitDocs(50.0, 10));
        assertEquals(2, Evaluator.limitDocs(2.0, 10));

        UserException pool = assertThrows(UserException.class,
                () -> Evaluator.evaluate(lm, Tasks.resolve(List.of("piqa")), dir, opts(2, null)));
        assertTrue(pool.getMessage().contains("missing data for task piqa (train split)"), pool.getMessage());
    }

    @Test
    void csvQuotingAndLines() {
        var rows = Csv.parse("\"a, \"\"b\"\"\",c\n\"multi\nline\",d\r\ne,f", "x.csv");
        assertEquals(List.of("a, \"b\"", "c"), rows.get(0).fields());
        assertEquals(List.of("multi\nline", "d"), rows.get(1).fields());
        assertEquals(2, rows.get(1).line());
        assertEquals(4, rows.get(2).line());
    }
}
