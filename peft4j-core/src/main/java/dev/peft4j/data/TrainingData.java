package dev.peft4j.data;

import dev.peft4j.tokenizer.Tokenizer;

import java.nio.file.Path;
import java.util.List;

/**
 * The whole data pipeline of a fine-tuning run in one call: load (skipping and counting bad rows), seeded
 * train/validation split, encode with a template (dropping or truncating long examples). Then iterate with
 * {@code new Batcher(train, batchSize, tok.padId(), seed, true, bucketWindow)} and {@code Batcher.inOrder(validation, ...)}.
 */
public record TrainingData(List<Tokenized> train, List<Tokenized> validation, DataSummary summary) {

    /**
     * @param valSize   validation size, a count ("1000") or a fraction ("0.05"); "0" for none
     * @param truncate  cut long examples at {@code maxSeqLen} instead of dropping them
     */
    public static TrainingData prepare(Path file, DataOptions opts, Template template, Tokenizer tok, int maxSeqLen,
                                       boolean truncate, String valSize, long seed) {
        InstructionDataset d = InstructionDataset.load(file, opts);
        int nVal = InstructionDataset.validationCount(valSize, d.records().size());
        InstructionDataset.Split split = InstructionDataset.split(d.records(), nVal, seed);
        List<Tokenized> train = Encoder.encodeAll(split.train(), template, tok, maxSeqLen, truncate, opts.strict(), d.summary(), opts.warnings());
        List<Tokenized> val = split.validation().isEmpty() ? List.of()
                : Encoder.encodeAll(split.validation(), template, tok, maxSeqLen, truncate, opts.strict(), d.summary(), opts.warnings());
        return new TrainingData(train, val, d.summary());
    }

    /** Tokens in the training set (for tokens/s and ETA estimates). */
    public long trainTokens() {
        long n = 0;
        for (Tokenized t : train) n += t.length();
        return n;
    }
}
