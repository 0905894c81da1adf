package dev.peft4j.cli;

import dev.peft4j.data.DataOptions;
import dev.peft4j.data.FieldMapping;
import dev.peft4j.data.InstructionDataset;
import dev.peft4j.data.Templates;

import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.nio.file.Path;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

class DataArgsTest {
    @CommandLine.Command(name = "t")
    static class Cmd {
        @CommandLine.Mixin DataArgs data;
    }

    @Test
    void parsesIntoOptions() {
        Cmd c = new Cmd();
        new CommandLine(c).parseArgs("--data", "d.jsonl", "--fields", "instruction=prompt,response=answer",
                "--categories", "closed_qa,open_qa", "--template", "gemma-chat", "--strict", "--val-size", "100", "--bucket", "4");
        DataOptions o = c.data.toConfig().options();
        assertEquals(Path.of("d.jsonl"), c.data.data);
        assertEquals("prompt", FieldMapping.DOLLY.with(o.fields()).instruction());
        assertEquals("answer", FieldMapping.DOLLY.with(o.fields()).response());
        assertEquals(Set.of("closed_qa", "open_qa"), o.categories());
        assertTrue(o.strict());
        assertSame(Templates.GEMMA_CHAT, c.data.toConfig().resolveTemplate());
        assertEquals(512, c.data.maxSeqLen);
        assertEquals(42, c.data.seed);
    }

    @Test
    void badValuesAreUserErrors() {
        Cmd c = new Cmd();
        new CommandLine(c).parseArgs("--data", "d.jsonl", "--fields", "question=q");
        assertTrue(assertThrows(UserException.class, () -> c.data.toConfig().options()).getMessage().startsWith("--fields: unknown field 'question'"));
        Cmd d = new Cmd();
        new CommandLine(d).parseArgs("--data", "d.jsonl", "--format", "csv");
        assertTrue(assertThrows(UserException.class, () -> InstructionDataset.load(Path.of("pom.xml"), d.data.toConfig().options()))
                .getMessage().contains("--format: unknown format 'csv'"));
    }
}
