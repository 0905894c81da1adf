package dev.peft4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.Shared;
import dev.peft4j.eval.TextCodec;
import dev.peft4j.model.CausalLM;
import dev.peft4j.model.Models;
import dev.peft4j.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

public class EvalCommandTest {
    @TempDir Path tmp;
    private final EvalCommand.Loader original = EvalCommand.loader;

    @AfterEach
    void restore() { EvalCommand.loader = original; }

    /** Runs the CLI in-process: exit code, stdout, stderr. */
    public record Run(int code, String out, String err) {}

    public static Run cli(String... args) {
        CommandLine cl = Main.commandLine();
        StringWriter err = new StringWriter();
        cl.setErr(new PrintWriter(err));
        PrintStream oldOut = System.out;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
        try {
            int code = cl.execute(args);
            return new Run(code, out.toString(StandardCharsets.UTF_8), err.toString());
        } finally {
            System.setOut(oldOut);
        }
    }

    /** The real Gemma 3 tokenizer with ids folded into the tiny model's 1024-token vocabulary (BOS stays 2). */
    static TextCodec folded(Tokenizer t) {
        TextCodec c = TextCodec.of(t);
        return new TextCodec() {
            public int[] encode(String text, boolean withBos) { return Arrays.stream(c.encode(text, withBos)).map(i -> i % 1024).toArray(); }
            public String decode(int[] ids) { return c.decode(ids); }
            public int bosId() { return c.bosId(); }
            public int eosId() { return c.eosId(); }
            public String bosToken() { return c.bosToken(); }
            public String eosToken() { return c.eosToken(); }
        };
    }

    @Test
    void endToEndOnTheTinyModelMatchesAFullForward() throws Exception {
        Path model = Shared.require("fixtures/tiny-gemma3");
        Path shared = Shared.require("data");
        // the shared HellaSwag has no train split: a small stand-in pool (rows 100..139 of validation) for the few-shot draw
        Path data = tmp.resolve("data");
        Files.createDirectories(data.resolve("hellaswag"));
        Files.createSymbolicLink(data.resolve("mmlu"), shared.resolve("mmlu"));
        Files.createSymbolicLink(data.resolve("hellaswag/hellaswag-val.jsonl"), shared.resolve("hellaswag/hellaswag-val.jsonl"));
        Files.write(data.resolve("hellaswag/train.jsonl"), Files.readAllLines(shared.resolve("hellaswag/hellaswag-val.jsonl")).subList(100, 140));
        Tokenizer tok = Tokenizer.load(Shared.require("tokenizers/gemma3"));
        CausalLM[] lm = new CausalLM[1];
        EvalCommand.loader = (m, a, t) -> {
            lm[0] = Models.load(m, a);
            return new EvalCommand.Loaded(lm[0], folded(tok));
        };
        Path out = tmp.resolve("res/results.json");
        Run r = cli("eval", "--model", model.toString(), "--tasks", "mmlu_abstract_algebra,hellaswag", "--data-dir", data.toString(),
                "--limit", "2", "--num-fewshot", "1", "--batch-size", "2", "--output", out.toString(), "--log-samples", "--no-progress");
        assertEquals(0, r.code(), r.err());
        JsonNode res = new ObjectMapper().readTree(out.toFile());
        assertEquals(2, res.at("/n-samples/hellaswag/effective").asInt());
        assertEquals(10042, res.at("/n-samples/hellaswag/original").asInt());
        assertTrue(res.at("/results/hellaswag/acc_norm,none").isNumber());
        assertTrue(r.out().contains("|abstract_algebra|") || r.out().contains("|abstract_algebra "), r.out());
        assertTrue(r.out().contains("acc_norm"), r.out());

        // Logged log-likelihoods equal a from-scratch forward of context + continuation (no KV cache, no batching):
        // hellaswag exercises the forked-session path, MMLU (one-token " A".." D") the batched path.
        TextCodec codec = folded(tok);
        for (String task : List.of("hellaswag", "mmlu_abstract_algebra")) {
            Path samples;
            try (Stream<Path> s = Files.list(out.getParent())) {
                samples = s.filter(p -> p.getFileName().toString().startsWith("samples_" + task + "_")).findFirst().orElseThrow();
            }
            List<String> lines = Files.readAllLines(samples);
            assertEquals(2, lines.size());
            for (String line : lines) {
                JsonNode sample = new ObjectMapper().readTree(line);
                String ctx = sample.at("/arguments/gen_args_0/arg_0").asText();
                for (int k = 0; k < 4; k++) {
                    String cont = sample.at("/arguments/gen_args_" + k + "/arg_1").asText();
                    int[] c = codec.encode(ctx, true), whole = codec.encode(ctx + cont, true);
                    float[] rows = lm[0].logits(List.of(Arrays.copyOf(whole, whole.length - 1)), new int[]{c.length - 1}).get(0);
                    double sum = 0;
                    for (int t = c.length; t < whole.length; t++) {
                        int base = (t - c.length) * 1024;
                        double max = Double.NEGATIVE_INFINITY, z = 0;
                        for (int v = 0; v < 1024; v++) max = Math.max(max, rows[base + v]);
                        for (int v = 0; v < 1024; v++) z += Math.exp(rows[base + v] - max);
                        sum += rows[base + whole[t]] - max - Math.log(z);
                    }
                    assertEquals(sum, sample.at("/filtered_resps/" + k + "/0").asDouble(), 1e-3, task + " choice " + k);
                }
            }
        }
        JsonNode hs = new ObjectMapper().readTree(Files.readAllLines(Files.list(out.getParent())
                .filter(p -> p.getFileName().toString().startsWith("samples_hellaswag_")).findFirst().orElseThrow()).get(0));
        String ctx0 = hs.at("/arguments/gen_args_0/arg_0").asText();
        assertTrue(ctx0.endsWith("\n\nRoof shingle removal: A man is sitting on a roof. he"), "1-shot: one example, then the doc: " + ctx0);
    }

    @Test
    void triviaqaGeneratesGreedilyAndCutsAtStopStrings() throws Exception {
        Path model = Shared.require("fixtures/tiny-gemma3");
        Tokenizer tok = Tokenizer.load(Shared.require("tokenizers/gemma3"));
        EvalCommand.loader = (m, a, t) -> new EvalCommand.Loaded(Models.load(m, a), folded(tok));
        Path data = tmp.resolve("data/triviaqa");
        Files.createDirectories(data);
        Files.writeString(data.resolve("validation.jsonl"),
                "{\"question\": \"Which planet is known as the Red Planet\", \"answer\": {\"aliases\": [\"Mars\"]}}\n"
                + "{\"question\": \"Capital of France\", \"answer\": {\"aliases\": [\"Paris\"]}}\n");
        Path out = tmp.resolve("tqa.json");
        Run r = cli("eval", "--model", model.toString(), "--tasks", "triviaqa", "--data-dir", tmp.resolve("data").toString(),
                "--output", out.toString(), "--log-samples", "--no-progress");
        assertEquals(0, r.code(), r.err());
        JsonNode res = new ObjectMapper().readTree(out.toFile());
        assertTrue(res.at("/results/triviaqa/exact_match,remove_whitespace").isNumber(), res.toString());
        Path samples;
        try (Stream<Path> s = Files.list(tmp)) {
            samples = s.filter(p -> p.getFileName().toString().startsWith("samples_triviaqa_")).findFirst().orElseThrow();
        }
        for (String line : Files.readAllLines(samples)) {
            JsonNode sample = new ObjectMapper().readTree(line);
            String raw = sample.at("/resps/0/0").asText();
            for (String stop : List.of("\n", ".", ",")) assertFalse(raw.contains(stop), "cut at " + stop + ": " + raw);
            assertEquals(raw.stripLeading(), sample.at("/filtered_resps/0").asText());
        }
    }

    @Test
    void adapterForAnotherBaseModelIsAClearError() throws Exception {
        Path model = Shared.require("fixtures/tiny-gemma3");
        Path data = Shared.require("data");
        Path src = Shared.require("fixtures/tiny-prompt-tuning");
        Path bad = tmp.resolve("adapter");
        Files.createDirectories(bad);
        Files.copy(src.resolve("adapter_model.safetensors"), bad.resolve("adapter_model.safetensors"));
        Files.writeString(bad.resolve("adapter_config.json"),
                Files.readString(src.resolve("adapter_config.json")).replace("\"token_dim\": 64", "\"token_dim\": 640"));
        Run r = cli("eval", "--model", model.toString(), "--adapter", bad.toString(), "--tasks", "mmlu_anatomy",
                "--data-dir", data.toString(), "--limit", "1", "--no-progress");
        assertEquals(2, r.code());
        assertTrue(r.err().startsWith("error: ") && r.err().contains("another base model"), r.err());
        assertFalse(r.err().contains("\tat "), "no stack trace");
    }

    @Test
    void badArgumentsAreOneLineErrors() throws Exception {
        Files.createDirectories(tmp.resolve("data"));
        Run unknown = cli("eval", "--model", "m", "--tasks", "helaswag", "--data-dir", tmp.resolve("data").toString());
        assertEquals(2, unknown.code());
        assertTrue(unknown.err().contains("unknown task 'helaswag'") && unknown.err().contains("hellaswag"), unknown.err());

        Run zero = cli("eval", "--model", "m", "--tasks", "hellaswag", "--limit", "0", "--data-dir", tmp.resolve("data").toString());
        assertEquals(2, zero.code());
        assertEquals("error: --limit must be a number of documents (1 or more) or a fraction between 0 and 1, got 0", zero.err().strip());

        Run missing = cli("eval", "--model", "m", "--tasks", "boolq", "--data-dir", tmp.resolve("data").toString());
        assertEquals(2, missing.code());
        assertTrue(missing.err().contains("missing data for task boolq (validation split): looked for "
                + tmp.resolve("data/boolq/validation.jsonl")), missing.err());

        Run noDir = cli("eval", "--model", "m", "--tasks", "boolq", "--data-dir", tmp.resolve("nope").toString());
        assertEquals(2, noDir.code());
        assertTrue(noDir.err().contains("--data-dir"), noDir.err());
    }
}
