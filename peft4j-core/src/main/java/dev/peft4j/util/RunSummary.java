package dev.peft4j.util;

import java.util.ArrayList;
import java.util.List;

/**
 * End-of-run summary: a title and aligned "key  value" lines, e.g.
 * <pre>
 * Training finished
 *   steps             3,000 (3 epochs)
 *   train loss        2.1034 -> 1.2345
 *   best val loss     1.3012 (step 2500)
 *   adapter           runs/dolly/adapter
 * </pre>
 */
public final class RunSummary {
    private final String title;
    private final List<String[]> rows = new ArrayList<>();

    public RunSummary(String title) { this.title = title; }

    public RunSummary add(String key, Object value) {
        rows.add(new String[]{key, String.valueOf(value)});
        return this;
    }

    public String render() {
        int w = 0;
        for (String[] r : rows) w = Math.max(w, r[0].length());
        StringBuilder sb = new StringBuilder(title).append('\n');
        for (String[] r : rows) {
            sb.append("  ").append(r[0]).append(" ".repeat(w - r[0].length() + 2));
            String[] lines = r[1].split("\n", -1);
            sb.append(lines[0]).append('\n');
            for (int i = 1; i < lines.length; i++) sb.append(" ".repeat(w + 4)).append(lines[i]).append('\n');
        }
        return sb.toString();
    }

    @Override
    public String toString() { return render(); }
}
