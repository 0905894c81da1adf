package dev.peft4j.tokenizer;

import dev.peft4j.data.InstructionDataset;
import dev.peft4j.data.InstructionRecord;
import dev.peft4j.data.QuickstartAssets;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class TinyTokenizerBuilderTest {
    @TempDir static Path tmp;
    static Path dir;
    static Tokenizer tok;
    static List<InstructionRecord> records;

    @BeforeAll
    static void setUp() {
        dir = QuickstartAssets.copyTo(tmp.resolve("qs"));
        tok = Tokenizer.load(dir.resolve("tokenizer"));
        records = InstructionDataset.load(dir.resolve(QuickstartAssets.DATA)).records();
    }

    @Test
    void specialTokensHaveTheAgreedIds() {
        assertEquals(0, tok.padId());
        assertEquals(1, tok.eosId());
        assertEquals(2, tok.bosId());
        assertEquals(3, tok.idOf("<unk>"));
        assertEquals(4, tok.idOf("<start_of_turn>"));
        assertEquals(5, tok.idOf("<end_of_turn>"));
        assertTrue(tok.addsBos());
        assertArrayEquals(new int[]{2}, tok.encode("", true));
    }

    @Test
    void shippedDataRoundTrips() {
        assertEquals(76, records.size());
        for (String text : QuickstartAssets.corpus(records)) {
            int[] ids = tok.encode(text, false);
            assertEquals(text, tok.decode(ids), "round trip");
            for (int id : ids) assertTrue(id >= 0 && id < QuickstartAssets.VOCAB_SIZE);
        }
    }

    @Test
    void textOutsideTheCorpusRoundTripsThroughByteFallback() {
        String s = "Zürich — 東京 🙂  two  spaces,\ttab\n\n\nend ";
        int[] ids = tok.encode(s, false);
        assertEquals(s, tok.decode(ids));
        // the emoji is not in the vocabulary: its 4 UTF-8 bytes F0 9F 99 82 become byte tokens <0xF0>.. (id 6 + byte)
        int[] emoji = tok.encode("🙂", false);
        assertArrayEquals(new int[]{6 + 0xF0, 6 + 0x9F, 6 + 0x99, 6 + 0x82}, emoji);
    }

    @Test
    void specialTokensInTextAreSingleTokens() {
        int[] ids = tok.encode("<start_of_turn>user\nHi<end_of_turn>", false);
        assertEquals(4, ids[0]);
        assertEquals(5, ids[ids.length - 1]);
    }

    @Test
    void compressesTheTemplateText() {
        // frequent template words were merged into single tokens
        assertEquals(1, tok.encode("Below", false).length);
        assertEquals(2, tok.encode("### Response:", false).length); // "###" and "▁Response:"
        String intro = "Below is an instruction that describes a task.";
        assertTrue(tok.encode(intro, false).length <= 10, "intro should take few tokens");
    }

    @Test
    void shippedTokenizerIsUpToDate(@TempDir Path t) throws Exception {
        TinyTokenizerBuilder.build(QuickstartAssets.corpus(records), QuickstartAssets.VOCAB_SIZE, t);
        assertEquals(new String(QuickstartAssets.resource("tokenizer/tokenizer.json"), StandardCharsets.UTF_8),
                Files.readString(t.resolve("tokenizer.json")),
                "rebuild with: java -cp ... dev.peft4j.data.QuickstartAssets src/main/resources/quickstart/dolly-mini.jsonl src/main/resources/quickstart/tokenizer");
    }

    @Test
    void trainingMergesTheMostFrequentPairFirst() {
        // words: "ab" x3, "▁ab" ... all texts "ab ab ab": pieces "ab", "▁ab", "▁ab"; pair counts: (a,b)=3, (▁,a)=2
        TinyTokenizerBuilder.Trained t = TinyTokenizerBuilder.train(List.of("ab ab ab"), 6 + 256 + 3 + 2);
        assertArrayEquals(new String[]{"a", "b"}, t.merges().get(0));
        assertArrayEquals(new String[]{"\u2581", "ab"}, t.merges().get(1));
        assertEquals(267, t.vocab().size());
    }
}
