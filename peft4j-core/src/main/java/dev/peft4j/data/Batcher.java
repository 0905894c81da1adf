package dev.peft4j.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.util.UserException;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;

/**
 * Endless stream of padded batches over a list of examples, epoch after epoch, in a seeded order that can be resumed.
 *
 * <p>Order of epoch {@code e}: with {@code shuffle}, the permutation {@link Shuffle#permutation}({@code n, seed, e});
 * otherwise the given order. Batches are consecutive runs of {@code batchSize} examples of that order (the last one may
 * be smaller). With length bucketing ({@code bucketWindow > 0}), each window of {@code bucketWindow × batchSize}
 * consecutive examples is sorted by length (stable) before being cut into batches, and the batches of the epoch are then
 * shuffled with the same epoch's random stream, so batches hold similar lengths (less padding) while their order stays random.
 *
 * <p>{@link #state()} is the position of the next batch (epoch, batch index within the epoch) plus everything the order
 * depends on; {@link #restore} continues exactly there. Since the order is a pure function of (seed, epoch), no random
 * generator state needs saving.
 */
public final class Batcher {
    private final List<Tokenized> examples;
    private final int batchSize, padId, bucketWindow;
    private final long seed;
    private final boolean shuffle;
    private int epoch, index;
    private int plannedEpoch = -1;
    private List<int[]> plan;

    public Batcher(List<Tokenized> examples, int batchSize, int padId, long seed, boolean shuffle, int bucketWindow) {
        if (examples.isEmpty()) throw new UserException("no training examples");
        if (batchSize < 1) throw new UserException("--batch-size must be at least 1, got " + batchSize);
        if (bucketWindow < 0) throw new IllegalArgumentException("bucketWindow < 0");
        this.examples = List.copyOf(examples);
        this.batchSize = batchSize;
        this.padId = padId;
        this.seed = seed;
        this.shuffle = shuffle;
        this.bucketWindow = bucketWindow;
    }

    /** Fixed order, no shuffling: for validation. */
    public static Batcher inOrder(List<Tokenized> examples, int batchSize, int padId) {
        return new Batcher(examples, batchSize, padId, 0, false, 0);
    }

    public int batchesPerEpoch() { return (examples.size() + batchSize - 1) / batchSize; }

    public int examples() { return examples.size(); }

    /** The epoch of the next batch (0-based). */
    public int epoch() { return epoch; }

    /** The next batch; after the last batch of an epoch comes the first of the next one. */
    public Batch next() {
        List<int[]> p = plan(epoch);
        Batch b = build(p.get(index), epoch, index);
        if (++index == p.size()) { index = 0; epoch++; }
        return b;
    }

    /** All batches of one epoch, in order (does not move the position). */
    public List<Batch> epochBatches(int e) {
        List<int[]> p = plan(e);
        List<Batch> out = new ArrayList<>(p.size());
        for (int i = 0; i < p.size(); i++) out.add(build(p.get(i), e, i));
        return out;
    }

    /** Example indices of each batch of epoch {@code e}. */
    List<int[]> plan(int e) {
        if (e == plannedEpoch) return plan;
        int n = examples.size();
        SplittableRandom rng = Shuffle.rng(seed, e);
        int[] order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        if (shuffle) Shuffle.shuffle(order, rng);
        if (bucketWindow > 0) {
            int w = bucketWindow * batchSize;
            Integer[] boxed = Arrays.stream(order).boxed().toArray(Integer[]::new);
            for (int s = 0; s < n; s += w) {
                Arrays.sort(boxed, s, Math.min(n, s + w), Comparator.comparingInt(i -> examples.get(i).length()));
            }
            for (int i = 0; i < n; i++) order[i] = boxed[i];
        }
        List<int[]> batches = new ArrayList<>();
        for (int s = 0; s < n; s += batchSize) batches.add(Arrays.copyOfRange(order, s, Math.min(n, s + batchSize)));
        if (bucketWindow > 0 && shuffle) {
            int[] bo = new int[batches.size()];
            for (int i = 0; i < bo.length; i++) bo[i] = i;
            Shuffle.shuffle(bo, rng);
            List<int[]> shuffled = new ArrayList<>(bo.length);
            for (int i : bo) shuffled.add(batches.get(i));
            batches = shuffled;
        }
        plannedEpoch = e;
        plan = batches;
        return plan;
    }

    private Batch build(int[] idx, int e, int i) {
        int len = 0;
        for (int k : idx) len = Math.max(len, examples.get(k).length());
        int[][] ids = new int[idx.length][len], labels = new int[idx.length][len], mask = new int[idx.length][len];
        for (int r = 0; r < idx.length; r++) {
            Tokenized t = examples.get(idx[r]);
            Arrays.fill(ids[r], padId);
            Arrays.fill(labels[r], Tokenized.IGNORE);
            System.arraycopy(t.inputIds(), 0, ids[r], 0, t.length());
            System.arraycopy(t.labels(), 0, labels[r], 0, t.length());
            Arrays.fill(mask[r], 0, t.length(), 1);
        }
        return new Batch(ids, labels, mask, e, i);
    }

    /** Position of the next batch plus what the order depends on; serializable as one JSON object. */
    public record State(int epoch, int batch, long seed, int batchSize, int examples, int bucketWindow, boolean shuffle) {
        private static final ObjectMapper JSON = new ObjectMapper();

        public String toJson() {
            try {
                return JSON.writeValueAsString(this);
            } catch (JsonProcessingException e) {
                throw new IllegalStateException(e);
            }
        }

        public static State fromJson(String json) {
            try {
                return JSON.readValue(json, State.class);
            } catch (JsonProcessingException e) {
                throw new UserException("data position is not valid JSON (" + e.getOriginalMessage() + "): " + json);
            }
        }
    }

    public State state() {
        return new State(epoch, index, seed, batchSize, examples.size(), bucketWindow, shuffle);
    }

    /** Continues at {@code s}; fails when {@code s} was saved with a different data set size, batch size, seed or bucketing. */
    public void restore(State s) {
        State now = state();
        check("seed", s.seed(), now.seed());
        check("batch size", s.batchSize(), now.batchSize());
        check("number of training examples", s.examples(), now.examples());
        check("length bucketing window", s.bucketWindow(), now.bucketWindow());
        check("shuffling", s.shuffle() ? 1 : 0, now.shuffle() ? 1 : 0);
        if (s.epoch() < 0 || s.batch() < 0 || s.batch() >= batchesPerEpoch()) {
            throw new UserException("cannot resume: data position epoch " + s.epoch() + " batch " + s.batch()
                    + " is outside the " + batchesPerEpoch() + " batches per epoch");
        }
        epoch = s.epoch();
        index = s.batch();
    }

    private static void check(String what, long saved, long now) {
        if (saved != now) {
            throw new UserException("cannot resume: the data position was saved with " + what + " " + saved + ", this run has " + now);
        }
    }
}
