package dev.peft4j.data;

import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class TemplatesTest {
    @TempDir Path dir;

    // REFERENCE.md 4.3, rendered strings as Python literals
    static final String WITH_INPUT = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
            + "\n\n### Instruction:\n{instruction}\n\nInput:\n{input}\n\n### Response:\n{response}\n\n### End";
    static final String NO_INPUT = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
            + "\n\n### Instruction:\n{instruction}\n\n### Response:\n{response}\n\n### End";
    static final String FOR_GENERATION = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
            + "\n\n### Instruction:\n{instruction}\n\n### Response:\n";

    static String full(Template t, InstructionRecord r) { return t.renderPrompt(r) + t.renderResponse(r); }

    @Test
    void dollyMatchesDollysTrainingFormatExactly() {
        InstructionRecord withCtx = new InstructionRecord("Who?", "Some {context} text", "Ada.", "closed_qa");
        assertEquals(WITH_INPUT.replace("{instruction}", "Who?").replace("{input}", "Some {context} text").replace("{response}", "Ada."),
                full(Templates.DOLLY, withCtx));
        InstructionRecord noCtx = new InstructionRecord("Name a color.", "", "Red", "open_qa");
        assertEquals(NO_INPUT.replace("{instruction}", "Name a color.").replace("{response}", "Red"), full(Templates.DOLLY, noCtx));
        assertEquals(FOR_GENERATION.replace("{instruction}", "Name a color."), Templates.DOLLY.renderPrompt(noCtx));
    }

    @Test
    void alpacaIsVerbatim() {
        // REFERENCE.md 4.4 PROMPT_DICT; target = output (+ EOS, added by the encoder)
        InstructionRecord r = new InstructionRecord("Add.", "1 and 2", "3", "");
        assertEquals("Below is an instruction that describes a task, paired with an input that provides further context. "
                + "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n1 and 2\n\n### Response:3",
                full(Templates.ALPACA, r));
        assertEquals("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
                + "### Instruction:\nAdd.\n\n### Response:", Templates.ALPACA.renderPrompt("Add.", ""));
    }

    @Test
    void gemmaChat() {
        InstructionRecord r = new InstructionRecord("Hi there", "", "Hello!", "");
        assertEquals("<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>", full(Templates.GEMMA_CHAT, r));
        assertEquals("<start_of_turn>user\nSummarize.\n\nText.<end_of_turn>\n<start_of_turn>model\n",
                Templates.GEMMA_CHAT.renderPrompt("Summarize.", "Text."));
    }

    @Test
    void whitespaceOnlyContextCountsAsNoContext() {
        assertEquals(FOR_GENERATION.replace("{instruction}", "Q"), Templates.DOLLY.renderPrompt("Q", "  \n"));
    }

    @Test
    void unknownNameIsAUserError() {
        UserException e = assertThrows(UserException.class, () -> Templates.byName("vicuna"));
        assertTrue(e.getMessage().contains("dolly, alpaca, gemma-chat"));
    }

    @Test
    void sectionedTemplateFile() throws IOException {
        Path f = dir.resolve("t.txt");
        Files.writeString(f, "[prompt]\nInstruction: {instruction}\nContext: {context}\nAnswer:\n\n"
                + "[prompt_no_context]\nInstruction: {instruction}\nAnswer:\n\n[response_suffix]\n\n### End\n");
        Template t = Templates.fromFile(f);
        assertEquals("Instruction: {instruction}\nContext: {context}\nAnswer:\n", t.prompt());
        assertEquals("Instruction: {instruction}\nAnswer:\n", t.promptNoContext());
        assertEquals("\n### End", t.responseSuffix());
        assertEquals("Instruction: Q\nAnswer:\nR\n### End", full(t, new InstructionRecord("Q", "", "R", "")));
        assertSame(Templates.DOLLY, Templates.resolve("dolly"));
        assertEquals(t, Templates.resolve(f.toString()));
    }

    @Test
    void jsonTemplateFile() throws IOException {
        Path f = dir.resolve("t.json");
        Files.writeString(f, "{\"prompt\": \"Q: {instruction}\\nC: {context}\\nA: \", \"prompt_no_context\": \"Q: {instruction}\\nA: \"}");
        Template t = Templates.fromFile(f);
        assertEquals("Q: x\nC: y\nA: z", full(t, new InstructionRecord("x", "y", "z", "")));
        assertEquals("", t.responseSuffix());
    }

    @Test
    void badTemplateFiles() throws IOException {
        assertMessage("t1", "[prompt]\nNo placeholder\n[prompt_no_context]\n{instruction}\n", "'prompt' must contain {instruction}");
        assertMessage("t2", "[prompt]\n{instruction}\n[prompt_no_context]\n{instruction}\n", "'prompt' must contain {context}");
        assertMessage("t3", "[prompt]\n{instruction} {input}\n{context}\n[prompt_no_context]\n{instruction}\n", "unknown placeholder {input}");
        assertMessage("t4", "[prompt]\n{instruction}{context}\n", "'prompt_no_context' is missing");
        assertMessage("t5", "hello\n[prompt]\n", "t5:1: expected a section header");
        assertMessage("t6", "{\"prompt\": \"{instruction}{context}\", \"prompt_no_context\": \"{instruction}\", \"suffix\": \"x\"}", "unknown key 'suffix'");
        assertMessage("t7", "{\"prompt\": ", "not valid JSON");
        assertMessage("t8", "[prompt]\n{instruction}{context}\n[prompt_no_context]\n{instruction}{context}\n", "must not contain {context}");
        assertTrue(assertThrows(UserException.class, () -> Templates.fromFile(dir.resolve("none"))).getMessage().contains("template file not found"));
    }

    private void assertMessage(String name, String content, String expected) throws IOException {
        Path f = dir.resolve(name);
        Files.writeString(f, content);
        UserException e = assertThrows(UserException.class, () -> Templates.fromFile(f));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertTrue(e.getMessage().contains(name), e.getMessage());
    }
}
