package dev.peft4j.tokenizer;

import dev.peft4j.Shared;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The real Gemma 3 tokenizer (../shared/tokenizers/gemma3); ids of special tokens are the published ones. */
class GemmaTokenizerTest {
    private static Tokenizer shared;

    private static synchronized Tokenizer tok() {
        if (shared == null) shared = Tokenizer.load(Shared.require("tokenizers/gemma3"));
        return shared;
    }

    @Test
    void specialTokensFromConfig() {
        {
            Tokenizer t = tok();
            assertEquals(2, t.bosId());
            assertEquals(0, t.padId());
            assertEquals(106, t.eosId(), "tokenizer_config eos_token is <end_of_turn>");
            assertEquals(1, t.idOf("<eos>"));
            assertEquals(105, t.idOf("<start_of_turn>"));
            assertTrue(t.addsBos());
        }
    }

    @Test
    void chatFormatTokenizesToTurnMarkers() {
        {
            Tokenizer t = tok();
            String s = Tokenizer.chatPrompt("  Hi there \n");
            assertEquals("<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n", s);
            int[] ids = t.encode(s, true);
            assertEquals(2, ids[0]);
            assertEquals(105, ids[1]);
            assertEquals(107, ids[ids.length - 1], "newline token");
            assertEquals(105, ids[ids.length - 3]);
            assertTrue(java.util.Arrays.stream(ids).anyMatch(i -> i == 106));
            assertEquals("<bos>" + s, t.decode(ids));
        }
    }

    @Test
    void roundTripsTextWithByteFallback() {
        {
            Tokenizer t = tok();
            String text = "Grüße, 東京! ∑ 🙂  tabs\tand\nnewlines";
            int[] ids = t.encode(text, false);
            assertNotEquals(2, ids[0]);
            assertEquals(text, t.decode(ids, true));
        }
    }

    @Test
    void systemPromptFoldsIntoFirstUserTurn() {
        String s = ChatTemplate.render(List.of(new ChatTemplate.Message("system", "Be brief."),
                new ChatTemplate.Message("user", "Q?"), new ChatTemplate.Message("assistant", "A."),
                new ChatTemplate.Message("user", "Q2?")), true);
        assertEquals("<start_of_turn>user\nBe brief.\n\nQ?<end_of_turn>\n<start_of_turn>model\nA.<end_of_turn>\n"
                + "<start_of_turn>user\nQ2?<end_of_turn>\n<start_of_turn>model\n", s);
        assertThrows(dev.peft4j.util.UserException.class, () -> ChatTemplate.render(List.of(new ChatTemplate.Message("assistant", "x")), false));
    }
}
