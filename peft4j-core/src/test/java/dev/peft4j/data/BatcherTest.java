package dev.peft4j.data;

import dev.peft4j.util.UserException;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class BatcherTest {
    static final int PAD = 0, I = Tokenized.IGNORE;

    /** Example k: length 2 + (k % 7); ids are 100*k + position; the first token has no label. */
    static List<Tokenized> examples(int n) {
        List<Tokenized> out = new ArrayList<>();
        for (int k = 0; k < n; k++) {
            int len = 2 + k % 7;
            int[] ids = new int[len], labels = new int[len];
            for (int i = 0; i < len; i++) { ids[i] = 100 * k + i + 1; labels[i] = i == 0 ? I : ids[i]; }
            out.add(new Tokenized(ids, labels, 1, false));
        }
        return out;
    }

    @Test
    void padsRightWithMaskAndIgnoredLabels() {
        List<Tokenized> ex = List.of(new Tokenized(new int[]{5, 6, 7}, new int[]{I, 6, 7}, 1, false),
                new Tokenized(new int[]{8}, new int[]{I}, 1, false));
        Batch b = Batcher.inOrder(ex, 2, 9).next();
        assertArrayEquals(new int[][]{{5, 6, 7}, {8, 9, 9}}, b.inputIds());
        assertArrayEquals(new int[][]{{I, 6, 7}, {I, I, I}}, b.labels());
        assertArrayEquals(new int[][]{{1, 1, 1}, {1, 0, 0}}, b.attentionMask());
        assertEquals(4, b.tokens());
        assertEquals(2, b.targetTokens());
        assertEquals(3, b.seqLen());
    }

    @Test
    void everyEpochVisitsEveryExampleOnceInANewOrder() {
        List<Tokenized> ex = examples(23);
        Batcher b = new Batcher(ex, 4, PAD, 42, true, 0);
        assertEquals(6, b.batchesPerEpoch());
        List<Integer> e0 = new ArrayList<>(), e1 = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            Batch batch = b.next();
            assertEquals(i / 6, batch.epoch());
            assertEquals(i % 6, batch.index());
            assertEquals(i % 6 == 5 ? 3 : 4, batch.size());
            for (int[] row : batch.inputIds()) (i < 6 ? e0 : e1).add(row[0] / 100);
        }
        assertEquals(23, e0.stream().distinct().count());
        assertEquals(23, e1.stream().distinct().count());
        assertNotEquals(e0, e1);
        int[] expected0 = Shuffle.permutation(23, 42, 0);
        assertEquals(Arrays.stream(expected0).boxed().toList(), e0);
    }

    @Test
    void resumesExactlyFromASavedPosition() {
        List<Tokenized> ex = examples(30);
        Batcher a = new Batcher(ex, 4, PAD, 7, true, 2);
        for (int i = 0; i < 11; i++) a.next();            // into epoch 1 (8 batches per epoch)
        String saved = a.state().toJson();
        List<Batch> rest = new ArrayList<>();
        for (int i = 0; i < 10; i++) rest.add(a.next());

        Batcher b = new Batcher(ex, 4, PAD, 7, true, 2);    // a new process
        b.restore(Batcher.State.fromJson(saved));
        assertEquals(1, b.epoch());
        for (Batch want : rest) {
            Batch got = b.next();
            assertEquals(want.epoch(), got.epoch());
            assertEquals(want.index(), got.index());
            assertArrayEquals(want.inputIds(), got.inputIds());
            assertArrayEquals(want.labels(), got.labels());
        }
        assertTrue(saved.contains("\"epoch\":1") && saved.contains("\"batch\":3"), saved);

        Batcher other = new Batcher(ex, 5, PAD, 7, true, 2);
        UserException e = assertThrows(UserException.class, () -> other.restore(Batcher.State.fromJson(saved)));
        assertTrue(e.getMessage().contains("batch size 4, this run has 5"), e.getMessage());
        assertThrows(UserException.class, () -> Batcher.State.fromJson("{not json"));
    }

    @Test
    void lengthBucketingCutsPaddingButKeepsEveryExample() {
        List<Tokenized> ex = examples(64);
        Batcher plain = new Batcher(ex, 8, PAD, 3, true, 0), bucketed = new Batcher(ex, 8, PAD, 3, true, 4);
        int padPlain = 0, padBucketed = 0;
        List<Integer> seen = new ArrayList<>();
        for (Batch b : plain.epochBatches(0)) padPlain += b.size() * b.seqLen() - b.tokens();
        for (Batch b : bucketed.epochBatches(0)) {
            padBucketed += b.size() * b.seqLen() - b.tokens();
            for (int[] row : b.inputIds()) seen.add(row[0] / 100);
        }
        assertEquals(64, seen.stream().distinct().count());
        assertTrue(padBucketed < padPlain / 2, "padding " + padBucketed + " vs " + padPlain);
    }

    @Test
    void inOrderKeepsTheGivenOrder() {
        List<Batch> bs = Batcher.inOrder(examples(5), 2, PAD).epochBatches(0);
        assertEquals(3, bs.size());
        assertEquals(400, bs.get(2).inputIds()[0][0] - 1);
    }
}
