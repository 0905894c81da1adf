package dev.peft4j.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static dev.peft4j.cli.BadInputTest.assertCleanError;
import static dev.peft4j.cli.BadInputTest.run;

/** The distillation options of {@code train}, and {@code experiment}'s refusal of a bad recipe, give one clear line. */
class DistillOptionsTest {
    @TempDir
    Path tmp;

    @Test
    void optionsOfAnotherMethodOrStudentAreRefused() throws Exception {
        Path data = tmp.resolve("d.jsonl");
        Files.writeString(data, "{\"instruction\": \"a\", \"response\": \"b\"}\n");
        assertCleanError(run("train", "--model", "m", "--data", data.toString(), "--method", "lora", "--teacher", "t", "--output", tmp.resolve("o").toString()),
                "--teacher", "only used with --method distill");
        assertCleanError(run("train", "--model", "m", "--data", data.toString(), "--method", "distill", "--teacher", "t", "--student", "full",
                "--lora-r", "4", "--output", tmp.resolve("o").toString()), "--lora-r", "--student lora");
        assertCleanError(run("train", "--model", "m", "--data", data.toString(), "--method", "distill", "--student", "lora",
                "--output", tmp.resolve("o").toString()), "--teacher");
    }

    @Test
    void badRecipeIsOneLine() throws Exception {
        Path r = tmp.resolve("r.yaml");
        Files.writeString(r, "base_model: m\ndata:\n  file: d.jsonl\neval:\n  tasks: [hellaswag]\nruns:\n  - name: a\n    method: qlora\n");
        assertCleanError(run("experiment", r.toString()), "r.yaml:8", "unknown method 'qlora'");
    }
}
