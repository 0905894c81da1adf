package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.cli.EvalCommandTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class ReportsTest {
    /** Table text without cell padding. */
    static String squash(String s) { return s.replaceAll(" *\\| *", "|"); }

    @TempDir Path tmp;

    static JsonNode results(double fl, double pl, double cs, double aa, double hm, double hsNorm) throws Exception {
        String s = """
            {"results": {
              "hellaswag": {"alias": "hellaswag", "acc,none": 0.3, "acc_stderr,none": 0.01, "acc_norm,none": %s, "acc_norm_stderr,none": 0.01},
              "mmlu_formal_logic": {"alias": "formal_logic", "acc,none": %s, "acc_stderr,none": 0.04},
              "mmlu_professional_law": {"alias": "professional_law", "acc,none": %s, "acc_stderr,none": 0.01},
              "mmlu_high_school_computer_science": {"alias": "high_school_computer_science", "acc,none": %s, "acc_stderr,none": 0.04},
              "mmlu_abstract_algebra": {"alias": "abstract_algebra", "acc,none": %s, "acc_stderr,none": 0.04},
              "mmlu_high_school_mathematics": {"alias": "high_school_mathematics", "acc,none": %s, "acc_stderr,none": "N/A"}},
             "versions": {"hellaswag": 1.0, "mmlu_formal_logic": 1.0},
             "n-shot": {"hellaswag": 0, "mmlu_formal_logic": 0, "mmlu_professional_law": 0,
                        "mmlu_high_school_computer_science": 0, "mmlu_abstract_algebra": 0, "mmlu_high_school_mathematics": 0},
             "higher_is_better": {"hellaswag": {"acc": true, "acc_norm": true}}}
            """.formatted(hsNorm, fl, pl, cs, aa, hm);
        return new ObjectMapper().readTree(s);
    }

    @Test
    void compareTable() throws Exception {
        JsonNode base = results(0.20, 0.25, 0.30, 0.22, 0.24, 0.40);
        JsonNode tuned = results(0.30, 0.25, 0.28, 0.22, 0.26, 0.38);
        String t = Reports.compare(base, tuned);
        // five-subject average by hand: base (20+25+30+22+24)/5 = 24.20, tuned (30+25+28+22+26)/5 = 26.20
        assertTrue(squash(t).contains("|MMLU (5-subject average)|acc|26.20|24.20|**+2.00**|"), t);
        assertTrue(squash(t).contains("|hellaswag|acc_norm|38.00|40.00|-2.00|"), t);
        assertTrue(t.contains("MMLU sub-tasks:"), t);
        assertTrue(squash(t).contains("|formal_logic|acc|30.00|20.00|**+10.00**|"), t);
        assertTrue(squash(t).contains("|professional_law|acc|25.00|25.00|+0.00|"), t);
        assertTrue(squash(t).contains("|high_school_computer_science|acc|28.00|30.00|-2.00|"), t);
        // averages that differ only by rounding noise are no change, never "-0.00" or a bold "+0.00"
        assertEquals("+0.00", Reports.change(0.6, 0.6000000000000001));
        assertEquals("+0.00", Reports.change(0.6000000000000001, 0.6));
        assertEquals("-3.33", Reports.change(0.5666666666666667, 0.6));
    }

    @Test
    void resultsTableLikeLmEval() throws Exception {
        String t = Reports.resultsTable(results(0.25, 0.25, 0.25, 0.25, 0.25, 0.4));
        assertTrue(t.startsWith("|Tasks"), t);
        assertTrue(squash(t).contains("|hellaswag|1|none|0|acc|↑|0.3000|±|0.0100|"), t);
        assertTrue(squash(t).contains("|||none|0|acc_norm|↑|0.4000|±|0.0100|"), t);
        assertTrue(squash(t).contains("|high_school_mathematics|N/A|none|0|acc|↑|0.2500|±|N/A|"), t);
    }

    @Test
    void cardAndCompareCommands() throws Exception {
        Path adapter = tmp.resolve("gemma-dolly-pt");
        Files.createDirectories(adapter);
        Files.writeString(adapter.resolve("adapter_config.json"), """
            {"peft_type": "PROMPT_TUNING", "base_model_name_or_path": "google/gemma-3-270m", "num_virtual_tokens": 20,
             "task_type": "CAUSAL_LM", "prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "Answer the question."}""");
        Files.writeString(adapter.resolve("training_args.json"), """
            {"dataset": "databricks/databricks-dolly-15k", "epochs": 1, "learning_rate": 0.003, "batch_size": 8}""");
        ObjectMapper m = new ObjectMapper();
        Path base = tmp.resolve("base.json"), tuned = tmp.resolve("tuned.json");
        m.writeValue(base.toFile(), results(0.20, 0.25, 0.30, 0.22, 0.24, 0.40));
        m.writeValue(tuned.toFile(), results(0.30, 0.25, 0.28, 0.22, 0.26, 0.38));

        var r = EvalCommandTest.cli("card", "--adapter", adapter.toString(), "--base-results", base.toString(), "--results", tuned.toString());
        assertEquals(0, r.code(), r.err());
        String card = Files.readString(adapter.resolve("README.md"));
        assertTrue(card.startsWith("---\nbase_model: google/gemma-3-270m\ndatasets:\n- databricks/databricks-dolly-15k\n"
                + "library_name: peft\npipeline_tag: text-generation\ntags:\n- base_model:adapter:google/gemma-3-270m\n"
                + "- prompt-tuning\n- peft\n- peft4j\n---\n"), card);
        assertTrue(card.contains("PeftModel.from_pretrained(base, \"gemma-dolly-pt\")"), card);
        assertTrue(card.contains("adapter for [google/gemma-3-270m](https://huggingface.co/google/gemma-3-270m)"), card);
        assertTrue(card.contains("./peft4j eval --model <base-model-dir> --adapter gemma-dolly-pt"), card);
        assertTrue(squash(card).contains("|learning_rate|0.003"), card);
        assertTrue(squash(card).contains("|num_virtual_tokens|20"), card);
        assertTrue(card.contains("**+2.00**"), card);

        var c = EvalCommandTest.cli("compare", "--base", base.toString(), "--tuned", tuned.toString());
        assertEquals(0, c.code(), c.err());
        assertTrue(squash(c.out()).contains("|MMLU (5-subject average)|acc|26.20|24.20|**+2.00**|"), c.out());

        var missing = EvalCommandTest.cli("compare", "--base", tmp.resolve("nope.json").toString(), "--tuned", tuned.toString());
        assertEquals(2, missing.code());
        assertTrue(missing.err().contains("--base: " + tmp.resolve("nope.json") + " not found"), missing.err());
        Files.writeString(tmp.resolve("bad.json"), "{\"x\": 1}");
        var bad = EvalCommandTest.cli("compare", "--base", tmp.resolve("bad.json").toString(), "--tuned", tuned.toString());
        assertEquals(2, bad.code());
        assertTrue(bad.err().contains("not an lm-eval results file"), bad.err());
        var noCfg = EvalCommandTest.cli("card", "--adapter", tmp.toString(), "--base-results", base.toString(), "--results", tuned.toString());
        assertEquals(2, noCfg.code());
        assertTrue(noCfg.err().contains("adapter_config.json: not found"), noCfg.err());
    }
}
