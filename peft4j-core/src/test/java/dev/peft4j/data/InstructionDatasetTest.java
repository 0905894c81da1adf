package dev.peft4j.data;

import dev.peft4j.Shared;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

class InstructionDatasetTest {
    @TempDir Path dir;
    final List<String> warnings = new ArrayList<>();

    DataOptions opts() { return DataOptions.defaults().withWarnings(warnings::add); }

    Path file(String name, String content) throws IOException {
        Path p = dir.resolve(name);
        Files.writeString(p, content);
        return p;
    }

    static String row(String instruction, String context, String response, String category) {
        return "{\"instruction\": \"" + instruction + "\", \"context\": \"" + context + "\", \"response\": \"" + response
                + "\", \"category\": \"" + category + "\"}\n";
    }

    @Test
    void readsTheRealDollySample() {
        Path p = Shared.require("data/dolly/dolly-sample.jsonl");
        InstructionDataset d = InstructionDataset.load(p, opts());
        // SOURCE.md: 570 records; none is bad
        assertEquals(570, d.records().size());
        assertEquals(570, d.summary().used());
        assertEquals(0, d.summary().skippedTotal());
        InstructionRecord first = d.records().get(0);
        // REFERENCE 4.1: the first record
        assertEquals("When did Virgin Australia start operating?", first.instruction());
        assertTrue(first.context().startsWith("Virgin Australia, the trading name of Virgin Australia Airlines Pty Ltd"));
        assertTrue(first.response().startsWith("Virgin Australia commenced services on 31 August 2000"));
        assertEquals("closed_qa", first.category());
        assertEquals("dolly-sample.jsonl:1", first.source());
        assertTrue(warnings.isEmpty());
        // the "\u2019" escape of record 4 is decoded
        assertTrue(d.records().get(3).instruction().contains("what\u2019s"));
    }

    @Test
    void filtersByCategory() {
        Path p = Shared.require("data/dolly/dolly-sample.jsonl");
        InstructionDataset d = InstructionDataset.load(p, opts().withCategories(Set.of("closed_qa", "summarization")));
        for (InstructionRecord r : d.records()) assertTrue(Set.of("closed_qa", "summarization").contains(r.category()));
        assertEquals(570, d.summary().used() + d.summary().filtered());
        assertTrue(d.summary().toString().contains("filtered out by category"));
    }

    @Test
    void unknownCategoryFailsWithTheCategoriesPresent() throws IOException {
        Path p = file("a.jsonl", row("q", "", "a", "open_qa"));
        UserException e = assertThrows(UserException.class, () -> InstructionDataset.load(p, opts().withCategories(Set.of("poetry"))));
        assertTrue(e.getMessage().contains("poetry") && e.getMessage().contains("open_qa"), e.getMessage());
    }

    @Test
    void badRowsAreSkippedCountedAndWarnedWithFileAndLine() throws IOException {
        String content = row("good one", "", "fine", "open_qa")                       // 1
                + "{\"instruction\": \"broken\", \"response\": \n"                        // 2 malformed
                + "{\"instruction\": \"no response\", \"context\": \"\"}\n"               // 3 missing field
                + row("empty response", "", "  ", "open_qa")                             // 4 empty response
                + "\n"                                                                  // 5 blank: ignored
                + row("", "", "x", "open_qa")                                            // 6 empty instruction
                + "[1, 2]\n"                                                            // 7 not an object
                + "{\"instruction\": 5, \"response\": \"r\"}\n"                          // 8 wrong type
                + row("good two", "ctx", "ok", "closed_qa")                              // 9
                + "{\"instruction\": \"x\", \"response\": \"y\"} trailing\n";           // 10 malformed
        Path p = file("mixed.jsonl", content);
        InstructionDataset d = InstructionDataset.load(p, opts());
        assertEquals(2, d.records().size());
        assertEquals("mixed.jsonl:9", d.records().get(1).source());
        DataSummary s = d.summary();
        assertEquals(3, s.skipped(SkipReason.MALFORMED_JSON));
        assertEquals(2, s.skipped(SkipReason.MISSING_FIELD));
        assertEquals(1, s.skipped(SkipReason.EMPTY_RESPONSE));
        assertEquals(1, s.skipped(SkipReason.EMPTY_INSTRUCTION));
        assertEquals(7, warnings.size());
        assertTrue(warnings.get(0).startsWith(p + ":2: malformed JSON"), warnings.get(0));
        assertTrue(warnings.get(1).contains(":3: missing field 'response'"), warnings.get(1));
        assertEquals("mixed.jsonl: 2 used, 7 skipped (3 malformed JSON, 2 missing field, 1 empty instruction, 1 empty response)", s.toString());
    }

    @Test
    void strictFailsOnTheFirstBadRow() throws IOException {
        Path p = file("s.jsonl", row("ok", "", "fine", "x") + row("bad", "", "", "x"));
        UserException e = assertThrows(UserException.class, () -> InstructionDataset.load(p, opts().withStrict(true)));
        assertTrue(e.getMessage().startsWith(p + ":2: empty response"), e.getMessage());
    }

    @Test
    void nonUtf8BytesAreDetectedPerLine() throws IOException {
        byte[] good = row("good", "", "fine", "x").getBytes(StandardCharsets.UTF_8);
        byte[] bad = "{\"instruction\": \"caf\u00e9\", \"response\": \"r\"}\n".getBytes(StandardCharsets.ISO_8859_1); // é as 0xE9
        Path p = dir.resolve("latin1.jsonl");
        Files.write(p, concat(good, bad, good));
        InstructionDataset d = InstructionDataset.load(p, opts());
        assertEquals(2, d.records().size());
        assertEquals(1, d.summary().skipped(SkipReason.NON_UTF8));
        assertTrue(warnings.get(0).startsWith(p + ":2: bytes that are not valid UTF-8 (at byte 21 of the line)"), warnings.get(0)); // {"instruction": "caf = 20 bytes
        UserException e = assertThrows(UserException.class, () -> InstructionDataset.load(p, opts().withStrict(true)));
        assertTrue(e.getMessage().startsWith(p + ":2: bytes that are not valid UTF-8"), e.getMessage());
    }

    @Test
    void unusableFilesAreUserErrors() throws IOException {
        UserException missing = assertThrows(UserException.class, () -> InstructionDataset.load(dir.resolve("nope.jsonl"), opts()));
        assertTrue(missing.getMessage().contains("nope.jsonl: data file not found"));
        Path empty = file("empty.jsonl", "\n  \n");
        assertTrue(assertThrows(UserException.class, () -> InstructionDataset.load(empty, opts())).getMessage().contains("file is empty"));
        Path allBad = file("bad.jsonl", "not json\n{\"a\": 1}\n");
        UserException e = assertThrows(UserException.class, () -> InstructionDataset.load(allBad, opts()));
        assertTrue(e.getMessage().contains("no usable rows") && e.getMessage().contains("1 malformed JSON, 1 missing field"), e.getMessage());
    }

    @Test
    void fieldMappingForOtherJsonl() throws IOException {
        Path p = file("qa.jsonl", "{\"prompt\": \"2+2?\", \"answer\": \"4\", \"topic\": \"math\"}\n");
        InstructionDataset d = InstructionDataset.load(p, opts().withFields("instruction=prompt, response=answer,category=topic"));
        InstructionRecord r = d.records().get(0);
        assertEquals(new InstructionRecord("2+2?", "", "4", "math", "qa.jsonl:1"), r);
        // without the mapping the field is missing, and the message lists the fields that are there
        UserException e = assertThrows(UserException.class, () -> InstructionDataset.load(p, opts().withStrict(true)));
        assertTrue(e.getMessage().contains("missing field 'instruction'; fields present: prompt, answer, topic"), e.getMessage());
    }

    @Test
    void fieldsSpecErrors() {
        assertTrue(assertThrows(UserException.class, () -> FieldMapping.parseOverrides("question=q")).getMessage().contains("unknown field 'question'"));
        assertTrue(assertThrows(UserException.class, () -> FieldMapping.parseOverrides("instruction")).getMessage().contains("ours=theirs"));
        assertTrue(assertThrows(UserException.class, () -> FieldMapping.parseOverrides("response=a,response=b")).getMessage().contains("twice"));
    }

    @Test
    void alpacaJsonArrayAndJsonl() throws IOException {
        String arr = "[\n  {\"instruction\": \"Add.\", \"input\": \"1 and 2\", \"output\": \"3\"},\n"
                + "  {\"instruction\": \"Greet.\", \"input\": \"\", \"output\": \"Hello!\"}\n]\n";
        InstructionDataset a = InstructionDataset.load(file("alpaca_data.json", arr), opts());
        assertEquals(List.of(new InstructionRecord("Add.", "1 and 2", "3", "", "alpaca_data.json:2"),
                new InstructionRecord("Greet.", "", "Hello!", "", "alpaca_data.json:3")), a.records());
        InstructionDataset l = InstructionDataset.load(file("alpaca.jsonl",
                "{\"instruction\": \"Add.\", \"input\": \"1 and 2\", \"output\": \"3\"}\n"), opts());
        assertEquals("1 and 2", l.records().get(0).context());
    }

    @Test
    void jsonArrayWithBadElementsAndBadBytes() throws IOException {
        byte[] head = "[{\"instruction\": \"a\", \"output\": \"b\"},\n {\"instruction\": \"x\", \"output\": \"".getBytes(StandardCharsets.UTF_8);
        byte[] tail = "\"},\n {\"instruction\": \"c\"},\n 7,\n {\"instruction\": \"d\", \"output\": \"e\"}]".getBytes(StandardCharsets.UTF_8);
        Path p = dir.resolve("arr.json");
        Files.write(p, concat(head, new byte[]{(byte) 0xFF}, tail));
        InstructionDataset d = InstructionDataset.load(p, opts());
        assertEquals(List.of("a", "d"), d.records().stream().map(InstructionRecord::instruction).toList());
        assertEquals(1, d.summary().skipped(SkipReason.NON_UTF8));
        assertEquals(1, d.summary().skipped(SkipReason.MISSING_FIELD));
        assertEquals(1, d.summary().skipped(SkipReason.MALFORMED_JSON));
        assertTrue(warnings.get(0).startsWith(p + ":2: bytes that are not valid UTF-8"), warnings.get(0));
        Path broken = file("broken.json", "[{\"instruction\": \"a\", \"output\": \"b\"},\n {\"instruction\": }]");
        UserException e = assertThrows(UserException.class, () -> InstructionDataset.load(broken, opts()));
        assertTrue(e.getMessage().startsWith(broken + ":2: malformed JSON"), e.getMessage());
    }

    @Test
    void bomAndCrlfAreAccepted() throws IOException {
        Path p = dir.resolve("win.jsonl");
        Files.write(p, concat(new byte[]{(byte) 0xEF, (byte) 0xBB, (byte) 0xBF},
                row("a", "", "b", "x").replace("\n", "\r\n").getBytes(StandardCharsets.UTF_8)));
        assertEquals("b", InstructionDataset.load(p, opts()).records().get(0).response());
    }

    @Test
    void warningsAreCappedWithACount() throws IOException {
        StringBuilder sb = new StringBuilder(row("ok", "", "fine", "x"));
        for (int i = 0; i < 25; i++) sb.append("garbage\n");
        InstructionDataset d = InstructionDataset.load(file("many.jsonl", sb.toString()), opts());
        assertEquals(25, d.summary().skipped(SkipReason.MALFORMED_JSON));
        assertEquals(DataOptions.MAX_WARNINGS + 1, warnings.size());
        assertTrue(warnings.getLast().contains("15 more bad rows skipped"), warnings.getLast());
    }

    @Test
    void seededSplitIsDisjointCompleteAndReproducible() {
        List<InstructionRecord> recs = new ArrayList<>();
        for (int i = 0; i < 100; i++) recs.add(new InstructionRecord("q" + i, "", "a" + i, ""));
        InstructionDataset.Split s1 = InstructionDataset.split(recs, 10, 42), s2 = InstructionDataset.split(recs, 10, 42);
        assertEquals(s1, s2);
        assertEquals(10, s1.validation().size());
        assertEquals(90, s1.train().size());
        Set<InstructionRecord> all = new HashSet<>(s1.train());
        all.addAll(s1.validation());
        assertEquals(100, all.size());
        assertNotEquals(s1.validation(), InstructionDataset.split(recs, 10, 43).validation());
        assertNotEquals(recs.subList(0, 10), s1.validation());
        assertThrows(UserException.class, () -> InstructionDataset.split(recs, 100, 1));
        assertEquals(5, InstructionDataset.validationCount("0.05", 100));
        assertEquals(1000, InstructionDataset.validationCount("1000", 15011));
        assertEquals(1, InstructionDataset.validationCount("0.001", 100));
        assertThrows(UserException.class, () -> InstructionDataset.validationCount("1.5", 100));
        assertThrows(UserException.class, () -> InstructionDataset.validationCount("ten", 100));
    }

    @Test
    void shuffleIsAFisherYatesPermutationThatDependsOnSeedAndEpoch() {
        int[] p = Shuffle.permutation(50, 7, 0);
        boolean[] seen = new boolean[50];
        for (int i : p) seen[i] = true;
        for (boolean b : seen) assertTrue(b);
        assertArrayEquals(p, Shuffle.permutation(50, 7, 0));
        assertFalse(java.util.Arrays.equals(p, Shuffle.permutation(50, 7, 1)));
        assertFalse(java.util.Arrays.equals(p, Shuffle.permutation(50, 8, 0)));
    }

    @Test
    void shippedQuickstartDataIsCleanAndCoversAllCategories() {
        Path p = QuickstartAssets.copyTo(dir).resolve(QuickstartAssets.DATA);
        InstructionDataset d = InstructionDataset.load(p, opts().withStrict(true));
        assertTrue(d.records().size() >= 60 && d.records().size() <= 100);
        Set<String> cats = new HashSet<>();
        for (InstructionRecord r : d.records()) cats.add(r.category());
        assertEquals(Set.of("open_qa", "general_qa", "classification", "closed_qa", "brainstorming", "information_extraction",
                "summarization", "creative_writing"), cats);
        for (InstructionRecord r : d.records()) {
            if (r.category().equals("closed_qa") || r.category().equals("summarization") || r.category().equals("information_extraction")) {
                assertTrue(r.hasContext(), r.source());
            }
        }
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) n += p.length;
        byte[] out = new byte[n];
        int o = 0;
        for (byte[] p : parts) { System.arraycopy(p, 0, out, o, p.length); o += p.length; }
        return out;
    }
}
