package dev.peft4j.api;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.CausalLM;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Generator;
import dev.peft4j.model.Models;
import dev.peft4j.model.Sampler;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.MetricsWriter;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Every entry point of the public API on the quickstart's small random model (no ../shared needed). */
class ApiTest {
    @TempDir
    static Path tmp;
    static Path model, data;
    static final GenerationOptions GREEDY_16 = GenerationOptions.builder().maxNewTokens(16).build();

    @BeforeAll
    static void setUp() {
        model = Peft4j.createQuickstartModel(tmp.resolve("model"), 7);
        data = Peft4j.writeQuickstartData(tmp.resolve("dolly-mini.jsonl"));
    }

    static StringBuilder collect(List<Integer> ids, StringBuilder sb, int id, String text) {
        if (id >= 0) ids.add(id);
        return sb.append(text);
    }

    @Test
    void generateMatchesTheEngineAndStreamsTheSameText() {
        Generator.Result ref;
        String refText;
        Gemma3LM lm = Models.load(model, null);
        try (Tokenizer tok = Tokenizer.load(model)) {
            int[] ids = tok.encode("Why is the sky blue?", true);
            ref = new Generator(lm).generate(ids, 16, new Sampler(Sampler.Options.greedy()), new int[]{1}, null, null, null);
            refText = tok.decode(ref.tokens(), true);
        } finally {
            lm.model.weights.close();
        }
        try (Model m = Peft4j.load(model.toString())) {
            Generation g = m.generate("Why is the sky blue?", GREEDY_16);
            assertArrayEquals(ref.tokens(), g.tokenIds());
            assertEquals(refText, g.text());
            assertEquals(FinishReason.LENGTH, g.finishReason());
            assertEquals(16, g.generatedTokens());
            assertEquals(m.encode("Why is the sky blue?", true).length, g.promptTokens());

            List<Integer> ids = new ArrayList<>();
            StringBuilder sb = new StringBuilder();
            Generation s = m.generate("Why is the sky blue?", GREEDY_16, (id, text) -> collect(ids, sb, id, text));
            assertEquals(g.text(), sb.toString(), "streamed text equals the blocking text");
            assertArrayEquals(g.tokenIds(), ids.stream().mapToInt(Integer::intValue).toArray());
            assertEquals(g.text(), s.text());

            // prompt as ids
            assertArrayEquals(g.tokenIds(), m.generate(m.encode("Why is the sky blue?", true), GREEDY_16, null).tokenIds());
            // prompt lookup: the same tokens and text
            Generation pl = m.generate("Why is the sky blue?", GREEDY_16.toBuilder().promptLookup(7).build());
            assertArrayEquals(g.tokenIds(), pl.tokenIds());
            assertEquals(g.text(), pl.text());
            Peft4jException hot = assertThrows(Peft4jException.class, () -> GenerationOptions.builder().temperature(0.7f).promptLookup(4).build());
            assertTrue(hot.getMessage().startsWith("promptLookup:"), hot.getMessage());
            assertEquals(0, m.generate("x", GenerationOptions.builder().maxNewTokens(0).build()).generatedTokens());
        }
    }

    @Test
    void stopStringsEndTheTextBeforeThemAlsoWhenStreaming() {
        try (Model m = Peft4j.load(model.toString())) {
            Generation full = m.generate("How many legs does a spider have?", GenerationOptions.builder().maxNewTokens(24).build());
            String t = full.text();
            assertTrue(t.length() >= 6, "long enough output: " + t);
            String stop = t.substring(t.length() / 2, t.length() / 2 + 2);
            String expected = t.substring(0, t.indexOf(stop));
            GenerationOptions o = GenerationOptions.builder().maxNewTokens(24).stop(stop).build();
            Generation g = m.generate("How many legs does a spider have?", o);
            assertEquals(FinishReason.STOP, g.finishReason());
            assertEquals(expected, g.text());
            StringBuilder sb = new StringBuilder();
            m.generate("How many legs does a spider have?", o, (id, text) -> sb.append(text));
            assertEquals(expected, sb.toString(), "streaming never shows the stop string");
        }
    }

    @Test
    void eosEndsGenerationUnlessDisabled() throws Exception {
        Path copy = tmp.resolve("eos-model");
        Files.createDirectories(copy);
        for (String f : new String[]{"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}) Files.copy(model.resolve(f), copy.resolve(f));
        int first;
        try (Model m = Peft4j.load(copy.toString())) {
            first = m.generate("Hello", GREEDY_16).tokenIds()[0];
        }
        // make the first greedy token an EOS id of generation_config.json
        Files.writeString(copy.resolve("generation_config.json"), "{\"eos_token_id\": [1, " + first + "]}");
        try (Model m = Peft4j.load(copy.toString())) {
            Generation g = m.generate("Hello", GREEDY_16);
            assertEquals(FinishReason.EOS, g.finishReason());
            assertArrayEquals(new int[]{first}, g.tokenIds());
            Generation on = m.generate("Hello", GREEDY_16.toBuilder().stopAtEos(false).build());
            assertEquals(16, on.generatedTokens());
            assertEquals(FinishReason.LENGTH, on.finishReason());
        }
    }

    @Test
    void samplingIsSeededAndHonoursItsOptions() {
        try (Model m = Peft4j.load(model.toString())) {
            GenerationOptions hot = GenerationOptions.builder().maxNewTokens(20).temperature(1.5f).seed(3).build();
            Generation a = m.generate("Tell me", hot), b = m.generate("Tell me", hot);
            assertArrayEquals(a.tokenIds(), b.tokenIds(), "same seed, same tokens");
            boolean differs = false;
            for (long seed = 4; seed < 8 && !differs; seed++) {
                differs = !java.util.Arrays.equals(a.tokenIds(), m.generate("Tell me", hot.toBuilder().seed(seed).build()).tokenIds());
            }
            assertTrue(differs, "other seeds sample other tokens");
            // top-k 1 is greedy whatever the temperature
            GenerationOptions k1 = hot.toBuilder().topK(1).build();
            assertArrayEquals(m.generate("Tell me", GenerationOptions.builder().maxNewTokens(20).build()).tokenIds(), m.generate("Tell me", k1).tokenIds());
            assertThrows(Peft4jException.class, () -> GenerationOptions.builder().topP(0).build());
            assertThrows(Peft4jException.class, () -> GenerationOptions.builder().temperature(-1).build());
            assertThrows(Peft4jException.class, () -> GenerationOptions.builder().repetitionPenalty(0).build());
        }
    }

    @Test
    void chatGoesThroughTheGemmaTemplate() {
        try (Model m = Peft4j.load(model.toString())) {
            List<ChatMessage> conv = List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi"), ChatMessage.assistant("Hello!"),
                    ChatMessage.user("What do bees make?"));
            String prompt = m.chatPrompt(conv);
            assertEquals("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                    + "<start_of_turn>user\nWhat do bees make?<end_of_turn>\n<start_of_turn>model\n", prompt);
            Generation c = m.chat(conv, GREEDY_16);
            Generation g = m.generate(prompt, GREEDY_16);
            int eot = m.encode("<end_of_turn>", false)[0];
            // the same tokens as the rendered prompt, up to an <end_of_turn> that chat stops at
            int n = c.generatedTokens();
            assertArrayEquals(java.util.Arrays.copyOf(g.tokenIds(), n), c.tokenIds());
            assertTrue(c.finishReason() == FinishReason.LENGTH || c.tokenIds()[n - 1] == eot);
            assertThrows(Peft4jException.class, () -> m.chat(List.of(ChatMessage.user("a"), ChatMessage.user("b")), GREEDY_16));
            assertThrows(Peft4jException.class, () -> m.chat(List.of(ChatMessage.user("a"), ChatMessage.assistant("b")), GREEDY_16));
        }
    }

    /** log p(continuation | context) from the engine's logits, by hand: trailing context space moves to the continuation. */
    @Test
    void logLikelihoodSumsTheContinuationsLogProbabilities() {
        try (Model m = Peft4j.load(model.toString())) {
            String ctx = "The capital of France is ", cont = "Paris";
            int[] c = m.encode("The capital of France is", true);
            int[] whole = m.encode("The capital of France is Paris", true);
            int[] contIds = java.util.Arrays.copyOfRange(whole, c.length, whole.length);
            Gemma3LM lm = Models.load(model, null);
            double expected = 0;
            boolean greedy = true;
            try {
                float[] rows = lm.logits(List.of(whole), new int[]{c.length - 1}).get(0);
                int V = lm.vocabSize();
                for (int i = 0; i < contIds.length; i++) {
                    double max = Double.NEGATIVE_INFINITY, sum = 0;
                    for (int v = 0; v < V; v++) max = Math.max(max, rows[i * V + v]);
                    for (int v = 0; v < V; v++) sum += Math.exp(rows[i * V + v] - max);
                    expected += rows[i * V + contIds[i]] - max - Math.log(sum);
                    greedy &= Sampler.argmax(rows, i * V, V) == contIds[i];
                }
            } finally {
                lm.model.weights.close();
            }
            LogLikelihood ll = m.logLikelihood(ctx, cont);
            assertEquals(expected, ll.logprob(), 1e-4);
            assertEquals(greedy, ll.greedy());
            assertEquals(contIds.length, ll.tokens());
            assertTrue(ll.logprob() < 0);
            List<LogLikelihood> two = m.logLikelihoods(List.of(new LogLikelihood.Request(ctx, cont), new LogLikelihood.Request(ctx, "Rome")));
            assertEquals(ll.logprob(), two.get(0).logprob(), 1e-5);
        }
    }

    @Test
    void evaluateScoresTasksAsObjectsAndLmEvalJson() throws Exception {
        Path dir = tmp.resolve("eval-data/arc_easy");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("test.jsonl"), String.join("\n",
                "{\"id\":\"1\",\"question\":\"What do bees make?\",\"choices\":{\"text\":[\"honey\",\"milk\",\"stone\"],\"label\":[\"A\",\"B\",\"C\"]},\"answerKey\":\"A\"}",
                "{\"id\":\"2\",\"question\":\"What is the sky?\",\"choices\":{\"text\":[\"green\",\"blue\"],\"label\":[\"A\",\"B\"]},\"answerKey\":\"B\"}",
                "{\"id\":\"3\",\"question\":\"How many legs does a spider have?\",\"choices\":{\"text\":[\"eight\",\"six\",\"two\"],\"label\":[\"A\",\"B\",\"C\"]},\"answerKey\":\"A\"}")
                + "\n");
        try (Model m = Peft4j.load(model.toString())) {
            List<long[]> progress = new ArrayList<>();
            EvalResults r = m.evaluate(EvalOptions.builder().tasks("arc_easy").dataDir(tmp.resolve("eval-data")).limit(3)
                    .progress((phase, done, total) -> progress.add(new long[]{done, total})).build());
            // acc by hand: argmax over choices of log p(" " + choice | "Question: q\nAnswer:")
            String[][] docs = {{"What do bees make?", "honey", "milk", "stone"}, {"What is the sky?", "green", "blue"},
                    {"How many legs does a spider have?", "eight", "six", "two"}};
            int[] gold = {0, 1, 0};
            double correct = 0;
            for (int d = 0; d < 3; d++) {
                int best = -1;
                double bv = Double.NEGATIVE_INFINITY;
                for (int k = 1; k < docs[d].length; k++) {
                    double lp = m.logLikelihood("Question: " + docs[d][0] + "\nAnswer:", " " + docs[d][k]).logprob();
                    if (lp > bv) { bv = lp; best = k - 1; }
                }
                if (best == gold[d]) correct++;
            }
            EvalResults.TaskResult t = r.task("arc_easy");
            assertEquals(correct / 3, t.metric("acc"), 1e-12);
            assertTrue(t.metrics().containsKey("acc_norm"));
            assertTrue(t.stderr().containsKey("acc"));
            assertEquals(3, t.samples());
            assertFalse(progress.isEmpty());
            assertEquals(progress.getLast()[1], progress.getLast()[0], "progress reaches the total");
            JsonNode json = new ObjectMapper().readTree(r.toJson());
            assertEquals(correct / 3, json.at("/results/arc_easy/acc,none").asDouble(), 1e-12);
            assertEquals(3, json.at("/n-samples/arc_easy/effective").asInt());
            Path out = tmp.resolve("results.json");
            r.write(out);
            assertEquals(r.toJson(), Files.readString(out));
            assertTrue(r.table().contains("arc_easy"));
            assertThrows(Peft4jException.class, () -> m.evaluate(EvalOptions.builder().tasks("no_such_task").dataDir(tmp).build()));
            Peft4jException e = assertThrows(Peft4jException.class, () -> m.evaluate(EvalOptions.builder().tasks("hellaswag").dataDir(tmp.resolve("eval-data")).build()));
            assertTrue(e.getMessage().contains("hellaswag"), e.getMessage());
        }
    }

    static Training.Builder training(Path out, int steps) {
        return Training.builder().model(model).data(data).output(out).method(Training.Method.PROMPT_TUNING)
                .numVirtualTokens(4).promptInit("text:Answer the question").maxSteps(steps).batchSize(4).learningRate(0.05)
                .schedule("cosine").warmupSteps(1).maxSeqLen(160).valSize("4").evalEvery(3).saveEvery(4).keepCheckpoints(1).seed(5);
    }

    @Test
    void trainingReportsProgressAndACancelledRunResumesToTheUninterruptedResult() throws Exception {
        Path a = tmp.resolve("train-full"), b = tmp.resolve("train-cancelled");
        List<TrainingProgress> seen = new ArrayList<>();
        TrainingResult ra = training(a, 6).listener(seen::add).build().run();
        assertFalse(ra.cancelled());
        assertEquals(6, ra.steps());
        assertEquals(6, seen.size());
        for (int i = 0; i < 6; i++) {
            TrainingProgress p = seen.get(i);
            assertEquals(i + 1, p.step());
            assertEquals(6, p.totalSteps());
            assertTrue(p.loss() > 0 && Double.isFinite(p.loss()));
            assertTrue(p.learningRate() >= 0 && p.learningRate() <= 0.05);
            assertTrue(p.tokensPerSecond() > 0);
            assertTrue(p.etaSeconds() >= 0);
            assertEquals(i == 2 || i == 5, p.validationLoss() != null, "validation at steps 3 and 6");
        }
        assertEquals(0.0, seen.get(5).etaSeconds());
        assertEquals(0.05, seen.get(1).learningRate(), 1e-12, "peak after one warmup step");
        assertEquals(seen.get(5).loss(), ra.finalLoss());
        assertTrue(Files.isRegularFile(a.resolve("adapter_model.safetensors")));

        // cancelled after step 3 (no checkpoint is due there: the cancellation writes one)
        Training[] t = new Training[1];
        t[0] = training(b, 6).listener(p -> { if (p.step() == 3) t[0].cancel(); }).build();
        TrainingResult rb = t[0].run();
        assertTrue(rb.cancelled());
        assertEquals(3, rb.steps());
        assertTrue(Files.isDirectory(b.resolve("checkpoints/step-000003")));
        assertFalse(Files.exists(b.resolve("adapter_model.safetensors")), "only a finished run writes the final adapter");
        List<TrainingProgress> rest = new ArrayList<>();
        TrainingResult rc = training(b, 6).resume(true).listener(rest::add).build().run();
        assertFalse(rc.cancelled());
        assertEquals(6, rc.steps());
        assertEquals(List.of(4L, 5L, 6L), rest.stream().map(TrainingProgress::step).toList());
        try (SafeTensors sa = SafeTensors.open(a.resolve("adapter_model.safetensors"));
             SafeTensors sb = SafeTensors.open(b.resolve("adapter_model.safetensors"))) {
            for (String k : sa.tensors().keySet()) assertArrayEquals(sa.get(k).toFloats(), sb.get(k).toFloats(), 0f, k);
        }
        var ma = MetricsWriter.read(a.resolve("metrics.jsonl"));
        var mb = MetricsWriter.read(b.resolve("metrics.jsonl"));
        assertEquals(ma.size(), mb.size());
        for (int i = 0; i < ma.size(); i++) assertEquals(ma.get(i).get("loss").asDouble(), mb.get(i).get("loss").asDouble(), 0.0);
        assertEquals(ra.finalLoss(), rc.finalLoss(), 0.0);

        // the trained adapter loads through the API and changes the output
        try (Model base = Peft4j.load(model.toString());
             Model tuned = Peft4j.load(model, LoadOptions.builder().adapter(a).build())) {
            assertEquals(a.toString(), tuned.adapter());
            assertNotEquals(base.logLikelihood("Why is the sky blue?", " Because").logprob(),
                    tuned.logLikelihood("Why is the sky blue?", " Because").logprob());
            assertEquals(base.contextLength() - 4, tuned.contextLength(), "4 virtual tokens");
        }
        // a wrong setting is one clear error
        Peft4jException e = assertThrows(Peft4jException.class, () -> training(tmp.resolve("bad"), 2).gradAccum(0).build().run());
        assertTrue(e.getMessage().contains("grad-accum"), e.getMessage());
    }

    @Test
    void loraAdapterMergedOrNotAndF32WeightsGiveTheSameResults() {
        Path lora = tmp.resolve("lora");
        training(lora, 2).method(Training.Method.LORA).targetModules("q_proj", "v_proj").loraR(4).loraAlpha(8).learningRate(0.05).build().run();
        GenerationOptions o = GenerationOptions.builder().maxNewTokens(8).build();
        try (Model unmerged = Peft4j.load(model, LoadOptions.builder().adapter(lora).build());
             Model merged = Peft4j.load(model, LoadOptions.builder().adapter(lora).merge(true).build());
             Model f32 = Peft4j.load(model, LoadOptions.builder().dtype(WeightDtype.F32).build());
             Model base = Peft4j.load(model.toString())) {
            double u = unmerged.logLikelihood("What do bees make?", " Honey").logprob();
            assertEquals(u, merged.logLikelihood("What do bees make?", " Honey").logprob(), 1e-3);
            assertNotEquals(base.logLikelihood("What do bees make?", " Honey").logprob(), u);
            // the quickstart model is stored in F32: the heap copy gives bit-identical results
            assertEquals(base.logLikelihood("What do bees make?", " Honey").logprob(), f32.logLikelihood("What do bees make?", " Honey").logprob(), 0.0);
            assertArrayEquals(base.generate("Hi", o).tokenIds(), f32.generate("Hi", o).tokenIds());
        }
    }

    @Test
    void optionsAndMistakesGiveClearErrors() {
        Peft4jException q = assertThrows(Peft4jException.class,
                () -> Peft4j.load(model, LoadOptions.builder().quantization(Quantization.Q8).dtype(WeightDtype.F32).build()));
        assertTrue(q.getMessage().contains("Q8"), q.getMessage());
        try (Model q8 = Peft4j.load(model, LoadOptions.builder().quantization(Quantization.Q8).build())) {
            assertEquals(1024, q8.vocabSize());
        }
        int n = Parallel.threads();
        try (Model m = Peft4j.load(model, LoadOptions.builder().threads(n).build())) {
            assertEquals(1024, m.vocabSize());
            assertEquals(model, m.directory());
        }
        Peft4jException th = assertThrows(Peft4jException.class, () -> Peft4j.load(model, LoadOptions.builder().threads(n + 1).build()));
        assertTrue(th.getMessage().startsWith("threads:"), th.getMessage());
        Peft4jException missing = assertThrows(Peft4jException.class, () -> Peft4j.load(tmp.resolve("nope").toString()));
        assertTrue(missing.getMessage().contains("nope"), missing.getMessage());
        Peft4jException noAdapter = assertThrows(Peft4jException.class, () -> Peft4j.load(model, LoadOptions.builder().adapter(tmp.resolve("no-adapter")).build()));
        assertTrue(noAdapter.getMessage().contains("no-adapter"), noAdapter.getMessage());
    }

    @Test
    void closeReleasesTheModel() throws Exception {
        Path own = Peft4j.createQuickstartModel(tmp.resolve("close-model"), 3);
        String weights = own.resolve("model.safetensors").toRealPath().toString();
        Path maps = Path.of("/proc/self/maps");
        Model m = Peft4j.load(own.toString());
        if (Files.isReadable(maps)) assertTrue(Files.readString(maps).contains(weights), "the weights are mapped while open");
        m.close();
        if (Files.isReadable(maps)) assertFalse(Files.readString(maps).contains(weights), "close() unmaps the weight file");
        m.close();   // idempotent
        assertThrows(IllegalStateException.class, () -> m.generate("x", GREEDY_16));
        assertThrows(IllegalStateException.class, () -> m.logLikelihood("a", " b"));
    }
}
