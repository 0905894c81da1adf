package dev.peft4j.cli;

import dev.peft4j.data.DataConfig;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;

/**
 * The data options of a training command, as a picocli mixin: {@code @CommandLine.Mixin DataArgs data;} then
 * {@code data.toConfig()} for the trainer.
 */
public final class DataArgs {
    @Option(names = "--data", required = true, paramLabel = "FILE",
            description = "Training data: JSON Lines or a JSON array (Dolly, Alpaca, or other fields with --fields).")
    public Path data;

    @Option(names = "--format", defaultValue = "auto", paramLabel = "auto|dolly|alpaca",
            description = "Field names of the data file (default: ${DEFAULT-VALUE}, detected from the first record).")
    public String format;

    @Option(names = "--fields", paramLabel = "OURS=THEIRS,...",
            description = "Map other field names, e.g. instruction=prompt,response=answer (fields: instruction, context, response, category).")
    public String fields;

    @Option(names = "--categories", split = ",", paramLabel = "CAT",
            description = "Keep only these categories (e.g. closed_qa,summarization).")
    public List<String> categories;

    @Option(names = "--template", defaultValue = "dolly", paramLabel = "NAME|FILE",
            description = "Prompt template: dolly, alpaca, gemma-chat or a template file (default: ${DEFAULT-VALUE}).")
    public String template;

    @Option(names = "--max-seq-len", defaultValue = "512", paramLabel = "N",
            description = "Longest example in tokens; longer ones are skipped (or cut with --truncate). Default: ${DEFAULT-VALUE}.")
    public int maxSeqLen;

    @Option(names = "--truncate", description = "Cut examples longer than --max-seq-len instead of skipping them.")
    public boolean truncate;

    @Option(names = "--strict", description = "Fail on the first bad row instead of skipping it with a warning.")
    public boolean strict;

    @Option(names = "--val-size", defaultValue = "0.05", paramLabel = "N|FRACTION",
            description = "Validation set: a count (1000) or a fraction (0.05) of the records; 0 for none. Default: ${DEFAULT-VALUE}.")
    public String valSize;

    @Option(names = "--seed", defaultValue = "42", description = "Seed of the split and the shuffling (default: ${DEFAULT-VALUE}).")
    public long seed;

    @Option(names = "--batch-size", defaultValue = "8", paramLabel = "N", description = "Examples per batch (default: ${DEFAULT-VALUE}).")
    public int batchSize;

    @Option(names = "--bucket", defaultValue = "0", paramLabel = "N",
            description = "Length bucketing: sort windows of N batches by length to cut padding; 0 = off (default).")
    public int bucket;

    /** The settings these options hold, for the trainer. */
    public DataConfig toConfig() {
        DataConfig c = new DataConfig();
        c.data = data;
        c.format = format;
        c.fields = fields;
        c.categories = categories;
        c.template = template;
        c.maxSeqLen = maxSeqLen;
        c.truncate = truncate;
        c.strict = strict;
        c.valSize = valSize;
        c.seed = seed;
        c.batchSize = batchSize;
        c.bucket = bucket;
        return c;
    }
}
