package dev.peft4j.eval;

import dev.peft4j.util.UserException;

import java.util.ArrayList;
import java.util.List;

/** Minimal RFC 4180 CSV reader (quoted fields, doubled quotes, newlines inside quotes), as Python's csv / pandas read MMLU. */
final class Csv {
    private Csv() {}

    /** One record and the line it starts on (1-based). */
    record Row(int line, List<String> fields) {}

    static List<Row> parse(String text, String name) {
        List<Row> rows = new ArrayList<>();
        List<String> fields = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        int line = 1, start = 1, i = 0, n = text.length();
        boolean quoted = false, any = false;
        if (n > 0 && text.charAt(0) == '\uFEFF') i = 1;
        while (i < n) {
            char c = text.charAt(i);
            if (quoted) {
                if (c == '"') {
                    if (i + 1 < n && text.charAt(i + 1) == '"') { cur.append('"'); i += 2; continue; }
                    quoted = false; i++; continue;
                }
                if (c == '\n') line++;
                cur.append(c); i++;
                continue;
            }
            if (c == '"' && cur.isEmpty()) { quoted = true; any = true; i++; continue; }
            if (c == ',') { fields.add(cur.toString()); cur.setLength(0); any = true; i++; continue; }
            if (c == '\r' || c == '\n') {
                if (any || !cur.isEmpty()) { fields.add(cur.toString()); rows.add(new Row(start, fields)); }
                fields = new ArrayList<>(); cur.setLength(0); any = false;
                if (c == '\r' && i + 1 < n && text.charAt(i + 1) == '\n') i++;
                i++; line++; start = line;
                continue;
            }
            cur.append(c); any = true; i++;
        }
        if (quoted) throw new UserException(name + ":" + start + ": malformed CSV: unterminated quoted field");
        if (any || !cur.isEmpty()) { fields.add(cur.toString()); rows.add(new Row(start, fields)); }
        return rows;
    }
}
