package dev.peft4j.cli;

import dev.peft4j.model.RandomInit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static dev.peft4j.cli.BadInputTest.assertCleanError;
import static dev.peft4j.cli.BadInputTest.run;

/** {@code peft4j serve} and {@code bench-serve}: user mistakes give one clear error line (the server itself is tested in peft4j-server). */
class ServeCommandTest {
    @TempDir
    static Path tmp;
    static Path model;

    @BeforeAll
    static void makeModel() throws Exception {
        model = tmp.resolve("model");
        RandomInit.write(Path.of(ServeCommandTest.class.getResource("/tiny-gemma3-config.json").toURI()), model, 7, false, 0.1);
    }

    @Test
    void badArguments() {
        assertCleanError(run("serve", "--model", tmp.resolve("nope").toString()), "nope", "not found");
        assertCleanError(run("serve", "--model", model.toString(), "--adapter", "noequals"), "--adapter", "NAME=DIR");
        assertCleanError(run("serve", "--model", model.toString(), "--adapter", "a=x", "--adapter", "a=y"), "--adapter", "twice");
        assertCleanError(run("serve", "--model", model.toString(), "--port", "70000"), "--port");
        assertCleanError(run("serve", "--model", model.toString(), "--max-running", "0"), "--max-running");
        assertCleanError(run("serve", "--model", model.toString(), "--allow-runtime-adapters", tmp.resolve("none").toString()), "--allow-runtime-adapters");
        assertCleanError(run("serve", "--model", model.toString()), "tokenizer.json");
        assertCleanError(run("bench-serve"), "--model", "--url");
        assertCleanError(run("bench-serve", "--model", model.toString(), "--streams", "0"), "--streams");
    }
}
