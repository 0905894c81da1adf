package dev.peft4j.data;

import dev.peft4j.Shared;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.*;

class EncoderTest {
    /** One token per character, id = code point; BOS = 1000, EOS = 1001. */
    static final Function<String, int[]> CHARS = s -> s.codePoints().toArray();
    static final int BOS = 1000, EOS = 1001, I = Tokenized.IGNORE;
    static final Template T = new Template("t", "Q:{instruction}|{context}>", "Q:{instruction}>", "!");

    @Test
    void labelsCoverOnlyResponseSuffixAndEos() {
        Tokenized t = Encoder.encode(new InstructionRecord("Hi", "", "Yo", ""), T, CHARS, BOS, EOS, 100, false);
        // "Q:Hi>" then "Yo!" then EOS
        assertArrayEquals(new int[]{BOS, 'Q', ':', 'H', 'i', '>', 'Y', 'o', '!', EOS}, t.inputIds());
        assertArrayEquals(new int[]{I, I, I, I, I, I, 'Y', 'o', '!', EOS}, t.labels());
        assertEquals(6, t.promptLength());
        assertEquals(4, t.targetTokens());
        assertFalse(t.truncated());
    }

    @Test
    void tooLongIsDroppedOrTruncated() {
        InstructionRecord r = new InstructionRecord("Hi", "c", "Yo", "");  // "Q:Hi|c>" (7) + "Yo!" + EOS: 1 + 7 + 3 + 1 = 12
        assertEquals(12, Encoder.encode(r, T, CHARS, BOS, EOS, 12, false).length());
        assertNull(Encoder.encode(r, T, CHARS, BOS, EOS, 11, false));
        Tokenized cut = Encoder.encode(r, T, CHARS, BOS, EOS, 10, true);
        assertArrayEquals(new int[]{BOS, 'Q', ':', 'H', 'i', '|', 'c', '>', 'Y', 'o'}, cut.inputIds());
        assertArrayEquals(new int[]{I, I, I, I, I, I, I, I, 'Y', 'o'}, cut.labels());
        assertTrue(cut.truncated());
        // the prompt alone (1 + 7 = 8) fills max-seq-len 8: no response token is left, dropped even with truncation
        assertNull(Encoder.encode(r, T, CHARS, BOS, EOS, 8, true));
        assertEquals(9, Encoder.encode(r, T, CHARS, BOS, EOS, 9, true).length());
    }

    @Test
    void encodeAllCountsDropsAndTruncations() {
        DataSummary s = new DataSummary("x.jsonl");
        List<InstructionRecord> recs = List.of(
                new InstructionRecord("a", "", "b", "", "x.jsonl:1"),                      // 1+4+2+1 = 8
                new InstructionRecord("a", "", "long response", "", "x.jsonl:2"),          // 1+4+14+1 = 20
                new InstructionRecord("a very long instruction", "", "b", "", "x.jsonl:3")); // prompt 1+26 = 27
        s.addUsed(3);
        List<String> warnings = new ArrayList<>();
        List<Tokenized> out = Encoder.encodeAll(recs, T, CHARS, BOS, EOS, 10, true, false, s, warnings::add);
        assertEquals(2, out.size());
        assertEquals(2, s.used());
        assertEquals(1, s.skipped(SkipReason.TOO_LONG));
        assertEquals(1, s.truncated());
        assertTrue(warnings.get(0).startsWith("x.jsonl:3: example is longer than --max-seq-len 10"), warnings.get(0));
        assertEquals("x.jsonl: 2 used, 1 skipped (1 too long), 1 truncated", s.toString());

        DataSummary s2 = new DataSummary("x.jsonl");
        s2.addUsed(3);
        assertEquals(1, Encoder.encodeAll(recs, T, CHARS, BOS, EOS, 10, false, false, s2, null).size());
        assertEquals(2, s2.skipped(SkipReason.TOO_LONG));
        UserException strict = assertThrows(UserException.class, () -> Encoder.encodeAll(recs, T, CHARS, BOS, EOS, 10, false, true, null, null));
        assertTrue(strict.getMessage().startsWith("x.jsonl:2: example is longer than --max-seq-len 10"), strict.getMessage());
        UserException none = assertThrows(UserException.class, () -> Encoder.encodeAll(recs, T, CHARS, BOS, EOS, 5, false, false, new DataSummary("x.jsonl"), null));
        assertTrue(none.getMessage().contains("all 3 examples are longer than --max-seq-len 5"), none.getMessage());
    }

    @Test
    void withGemmaTokenizerAndDollyTemplate() {
        Tokenizer tok = Tokenizer.load(Shared.require("tokenizers/gemma3"));
        InstructionRecord r = new InstructionRecord("When did Virgin Australia start operating?", "Virgin Australia ... on 31 August 2000.",
                "Virgin Australia commenced services on 31 August 2000.", "closed_qa");
        Tokenized t = Encoder.encode(r, Templates.DOLLY, tok, 512, false);
        assertEquals(2, t.inputIds()[0]);                              // <bos>
        // EOS from tokenizer_config.json: <eos> (1) in the PT config, <end_of_turn> (106) in the -it config
        assertTrue(tok.eosId() == 1 || tok.eosId() == 106, "eos " + tok.eosId());
        assertEquals(tok.eosId(), t.inputIds()[t.length() - 1]);
        String text = TemplatesTest.WITH_INPUT.replace("{instruction}", r.instruction()).replace("{input}", r.context())
                .replace("{response}", r.response());
        assertEquals("<bos>" + text + tok.eosToken(), tok.decode(t.inputIds()));
        int[] prompt = tok.encode(Templates.DOLLY.renderPrompt(r), true);
        assertArrayEquals(prompt, Arrays.copyOf(t.inputIds(), t.promptLength()));
        for (int i = 0; i < t.length(); i++) assertEquals(i < prompt.length ? I : t.inputIds()[i], t.labels()[i]);
        // the response part decodes to the response, Dolly's end key and EOS
        int[] resp = Arrays.copyOfRange(t.inputIds(), t.promptLength(), t.length());
        assertEquals(r.response() + "\n\n### End" + tok.eosToken(), tok.decode(resp));

        // gemma-chat: the response ends with <end_of_turn> (106), followed by EOS unless EOS is <end_of_turn> itself
        Tokenized c = Encoder.encode(r, Templates.GEMMA_CHAT, tok, 512, false);
        String end = tok.eosId() == 106 ? "<end_of_turn>" : "<end_of_turn>" + tok.eosToken();
        assertEquals(r.response() + end, tok.decode(Arrays.copyOfRange(c.inputIds(), c.promptLength(), c.length())));
        assertEquals(106, tok.idOf("<end_of_turn>"));
    }
}
