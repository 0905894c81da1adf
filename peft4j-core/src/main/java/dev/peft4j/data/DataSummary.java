package dev.peft4j.data;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * Counts for one data file: rows used, rows skipped (per reason), rows filtered out by category, examples truncated.
 * Loading fills the row counts; {@link Encoder#encodeAll} adds {@code TOO_LONG} skips and truncations.
 */
public final class DataSummary {
    private final String name;
    private final Map<SkipReason, Integer> skipped = new EnumMap<>(SkipReason.class);
    private int used, filtered, truncated;

    public DataSummary(String name) { this.name = name; }

    public String name() { return name; }
    public int used() { return used; }
    public int filtered() { return filtered; }
    public int truncated() { return truncated; }
    public int skipped(SkipReason r) { return skipped.getOrDefault(r, 0); }
    public int skippedTotal() { return skipped.values().stream().mapToInt(Integer::intValue).sum(); }
    public Map<SkipReason, Integer> skippedByReason() { return Map.copyOf(skipped); }

    void addUsed(int n) { used += n; }
    void addFiltered() { filtered++; }
    void addTruncated() { truncated++; }
    /** A row counted as used so far is now skipped (an example dropped at encoding time). */
    void moveToSkipped(SkipReason r) { used--; skip(r); }
    void skip(SkipReason r) { skipped.merge(r, 1, Integer::sum); }

    /** One line, e.g. {@code train.jsonl: 560 used, 3 skipped (2 malformed JSON, 1 too long), 4 truncated, 10 filtered out by category}. */
    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder(name).append(": ").append(used).append(" used");
        int sk = skippedTotal();
        sb.append(", ").append(sk).append(" skipped");
        if (sk > 0) {
            List<String> parts = new ArrayList<>();
            for (SkipReason r : SkipReason.values()) if (skipped(r) > 0) parts.add(skipped(r) + " " + r.label);
            sb.append(" (").append(String.join(", ", parts)).append(')');
        }
        if (truncated > 0) sb.append(", ").append(truncated).append(" truncated");
        if (filtered > 0) sb.append(", ").append(filtered).append(" filtered out by category");
        return sb.toString();
    }
}
