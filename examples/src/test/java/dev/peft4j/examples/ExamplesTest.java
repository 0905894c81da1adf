package dev.peft4j.examples;

import dev.peft4j.api.Peft4j;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** Runs every example's main on the quickstart's small random model, so the examples cannot rot. */
class ExamplesTest {
    @TempDir
    static Path tmp;
    static Path model;

    interface Main { void run() throws Exception; }

    @BeforeAll
    static void setUp() {
        model = Peft4j.createQuickstartModel(tmp.resolve("model"), 42);
    }

    /** Runs {@code main} and returns what it printed. */
    static synchronized String stdout(Main main) throws Exception {
        PrintStream old = System.out;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        System.setOut(new PrintStream(buf, true, java.nio.charset.StandardCharsets.UTF_8));
        try {
            main.run();
        } finally {
            System.setOut(old);
        }
        String out = buf.toString(java.nio.charset.StandardCharsets.UTF_8);
        old.print(out);
        return out;
    }

    @Test
    void generate() throws Exception {
        String out = stdout(() -> GenerateExample.main(new String[]{model.toString()}));
        assertTrue(out.contains("greedy: ") && out.contains("streamed: ") && out.contains("chat: "), out);
    }

    @Test
    void fineTuneThenEvaluateBaseVsTuned() throws Exception {
        Path data = Peft4j.writeQuickstartData(tmp.resolve("dolly.jsonl"));
        Path adapter = tmp.resolve("adapter");
        String out = stdout(() -> FineTuneExample.main(new String[]{model.toString(), data.toString(), adapter.toString(), "3"}));
        assertTrue(out.contains("step 3/3"), out);
        assertTrue(Files.readString(adapter.resolve("adapter_config.json")).contains("PROMPT_TUNING"));

        Path dir = tmp.resolve("data/arc_easy");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("test.jsonl"), String.join("\n",
                "{\"id\":\"1\",\"question\":\"What do bees make?\",\"choices\":{\"text\":[\"honey\",\"milk\"],\"label\":[\"A\",\"B\"]},\"answerKey\":\"A\"}",
                "{\"id\":\"2\",\"question\":\"What color is the sky?\",\"choices\":{\"text\":[\"green\",\"blue\"],\"label\":[\"A\",\"B\"]},\"answerKey\":\"B\"}") + "\n");
        String eval = stdout(() -> EvaluateExample.main(new String[]{model.toString(), adapter.toString(), tmp.resolve("data").toString(), "arc_easy", "2", tmp.toString()}));
        assertTrue(eval.contains("arc_easy") && eval.contains("acc_norm"), eval);
        assertTrue(Files.readString(tmp.resolve("tuned.json")).contains("\"arc_easy\""));
        assertTrue(Files.readString(tmp.resolve("base.json")).contains("\"acc,none\""));
    }

    @Test
    void langChain4jAiService() throws Exception {
        String out = stdout(() -> LangChain4jExample.main(new String[]{model.toString()}));
        assertTrue(out.contains("> What do bees make?") && out.contains("> And how do they make it?"), out);
    }
}
