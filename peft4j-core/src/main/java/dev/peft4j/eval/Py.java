package dev.peft4j.eval;

import java.util.Locale;

/** Python string semantics the harness relies on ({@code str.strip}, {@code str.capitalize}, {@code string.punctuation}). */
final class Py {
    private Py() {}

    static final String PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

    /** Python's {@code str.isspace} for one char (Unicode White_Space incl. no-break spaces and 0x1c..0x1f). */
    static boolean isSpace(char c) {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == '\u0085';
    }

    static String strip(String s) { return rstrip(lstrip(s)); }

    static String lstrip(String s) {
        int i = 0;
        while (i < s.length() && isSpace(s.charAt(i))) i++;
        return s.substring(i);
    }

    static String rstrip(String s) {
        int e = s.length();
        while (e > 0 && isSpace(s.charAt(e - 1))) e--;
        return s.substring(0, e);
    }

    /** {@code str.capitalize()}: first character title-cased, the rest lower-cased. */
    static String capitalize(String s) {
        if (s.isEmpty()) return s;
        int first = s.codePointAt(0);
        int n = Character.charCount(first);
        return new String(Character.toChars(Character.toTitleCase(first))) + s.substring(n).toLowerCase(Locale.ROOT);
    }

    /** Length in code points, as Python's {@code len(str)}. */
    static int len(String s) { return s.codePointCount(0, s.length()); }
}
