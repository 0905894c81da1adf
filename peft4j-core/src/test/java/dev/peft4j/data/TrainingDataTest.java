package dev.peft4j.data;

import dev.peft4j.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class TrainingDataTest {
    @TempDir Path dir;

    @Test
    void quickstartPipelineEndToEnd() {
        Path qs = QuickstartAssets.copyTo(dir);
        List<String> warnings = new ArrayList<>();
        try (Tokenizer tok = Tokenizer.load(qs.resolve("tokenizer"))) {
            TrainingData d = TrainingData.prepare(qs.resolve(QuickstartAssets.DATA), DataOptions.defaults().withWarnings(warnings::add),
                    Templates.DOLLY, tok, 128, false, "0.1", 42);
            // 76 records, 8 (= round(7.6)) for validation; examples above 128 tokens are dropped and counted
            assertEquals(8 + 68, d.train().size() + d.validation().size() + d.summary().skipped(SkipReason.TOO_LONG));
            assertEquals(d.train().size() + d.validation().size(), d.summary().used());
            for (Tokenized t : d.train()) {
                assertTrue(t.length() <= 128);
                assertEquals(tok.bosId(), t.inputIds()[0]);
                assertEquals(tok.eosId(), t.inputIds()[t.length() - 1]);
                assertEquals(Tokenized.IGNORE, t.labels()[t.promptLength() - 1]);
                assertEquals(t.inputIds()[t.promptLength()], t.labels()[t.promptLength()]);
            }
            Batcher b = new Batcher(d.train(), 4, tok.padId(), 42, true, 0);
            Batch first = b.next();
            assertEquals(4, first.size());
            assertTrue(d.trainTokens() > 0);
        }
    }
}
