package dev.peft4j.cli;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/** Streaming output: every character is printed once, also when its UTF-8 bytes arrive as several tokens. */
class GenerateCommandTest {
    @Test
    void partialCharactersAreHeldBackAndNothingIsPrintedTwice() {
        StringBuilder shown = new StringBuilder();
        String printed = "";
        // decodings after each token: "Hi", then the first bytes of an emoji (U+FFFD), then the whole emoji, then " ok"
        for (String text : new String[]{"Hi", "Hi \uFFFD", "Hi \uFFFD\uFFFD", "Hi \uD83D\uDE00", "Hi \uD83D\uDE00 ok"}) {
            String more = GenerateCommand.unprinted(printed, text, false);
            if (more != null) {
                shown.append(more);
                printed = text;
            }
        }
        assertEquals("Hi \uD83D\uDE00 ok", shown.toString());
        assertNull(GenerateCommand.unprinted("Hi", "Hi \uFFFD", false));
        assertEquals(" \uFFFD", GenerateCommand.unprinted("Hi", "Hi \uFFFD", true), "at the end the tail is printed as it is");
    }
}
