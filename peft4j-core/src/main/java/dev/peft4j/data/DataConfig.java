package dev.peft4j.data;

import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.UserException;

import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * The data settings of a training run (what {@code peft4j train}'s data options set), with the defaults of the CLI:
 * the file, its format and field mapping, categories, template, length limit, validation split, seed, batch size, bucketing.
 */
public final class DataConfig {
    /** Training data: JSON Lines or a JSON array (Dolly, Alpaca, or other fields with {@link #fields}). */
    public Path data;
    /** Field names of the data file: auto (detected from the first record), dolly or alpaca. */
    public String format = "auto";
    /** Other field names, e.g. {@code instruction=prompt,response=answer}; null for none. */
    public String fields;
    /** Keep only these categories; null or empty for all. */
    public List<String> categories;
    /** Prompt template: dolly, alpaca, gemma-chat or a template file. */
    public String template = "dolly";
    /** Longest example in tokens; longer ones are skipped (or cut with {@link #truncate}). */
    public int maxSeqLen = 512;
    /** Cut examples longer than {@link #maxSeqLen} instead of skipping them. */
    public boolean truncate;
    /** Fail on the first bad row instead of skipping it with a warning. */
    public boolean strict;
    /** Validation set: a count ("1000") or a fraction ("0.05") of the records; "0" for none. */
    public String valSize = "0.05";
    /** Seed of the split and the shuffling. */
    public long seed = 42;
    /** Examples per batch. */
    public int batchSize = 8;
    /** Length bucketing: sort windows of N batches by length to cut padding; 0 = off. */
    public int bucket;

    public DataOptions options() {
        Set<String> cats = categories == null ? Set.of() : new LinkedHashSet<>(categories.stream().map(String::strip).toList());
        return DataOptions.defaults().withFormat(format).withFields(fields).withCategories(cats).withStrict(strict);
    }

    public Template resolveTemplate() { return Templates.resolve(template); }

    public TrainingData prepare(Tokenizer tok) {
        if (maxSeqLen < 2) throw new UserException("--max-seq-len must be at least 2, got " + maxSeqLen);
        if (bucket < 0) throw new UserException("--bucket must not be negative, got " + bucket);
        return TrainingData.prepare(data, options(), resolveTemplate(), tok, maxSeqLen, truncate, valSize, seed);
    }

    /** Shuffling, resumable batches over the training set. */
    public Batcher batcher(List<Tokenized> train, Tokenizer tok) {
        return new Batcher(train, batchSize, tok.padId(), seed, true, bucket);
    }
}
