package dev.peft4j.data;

import java.util.Map;
import java.util.Set;
import java.util.function.Consumer;

/**
 * How to read an instruction data file.
 *
 * @param format      {@code auto} (JSON array or JSON Lines; Alpaca field names if the first record has {@code output}
 *                    and no {@code response}, otherwise Dolly's), {@code dolly} or {@code alpaca}
 * @param fields      overrides of the field mapping (ours -> theirs), see {@link FieldMapping#parseOverrides}
 * @param categories  keep only these categories (empty: keep all)
 * @param strict      fail on the first bad row instead of skipping it with a warning
 * @param warnings    where warnings about skipped rows go (at most {@link #MAX_WARNINGS} per file, then a count)
 */
public record DataOptions(String format, Map<String, String> fields, Set<String> categories, boolean strict,
                          Consumer<String> warnings) {
    public static final int MAX_WARNINGS = 10;

    public DataOptions {
        format = format == null ? "auto" : format;
        fields = fields == null ? Map.of() : Map.copyOf(fields);
        categories = categories == null ? Set.of() : Set.copyOf(categories);
        warnings = warnings == null ? s -> System.err.println("warning: " + s) : warnings;
    }

    public static DataOptions defaults() { return new DataOptions("auto", Map.of(), Set.of(), false, null); }

    public DataOptions withFormat(String f) { return new DataOptions(f, fields, categories, strict, warnings); }
    public DataOptions withFields(String spec) { return new DataOptions(format, FieldMapping.parseOverrides(spec), categories, strict, warnings); }
    public DataOptions withCategories(Set<String> c) { return new DataOptions(format, fields, c, strict, warnings); }
    public DataOptions withStrict(boolean s) { return new DataOptions(format, fields, categories, s, warnings); }
    public DataOptions withWarnings(Consumer<String> w) { return new DataOptions(format, fields, categories, strict, w); }
}
