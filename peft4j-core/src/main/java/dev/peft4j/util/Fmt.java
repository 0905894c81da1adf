package dev.peft4j.util;

import java.util.Locale;

/** Small number/time formatting helpers for console output (locale-independent). */
public final class Fmt {
    private Fmt() {}

    /** {@code 75} -> {@code 01:15}, {@code 3725} -> {@code 1:02:05}; negative or non-finite -> {@code --:--}. */
    public static String duration(double seconds) {
        if (!Double.isFinite(seconds) || seconds < 0) return "--:--";
        long s = Math.round(seconds);
        long h = s / 3600, m = (s % 3600) / 60, sec = s % 60;
        return h > 0 ? String.format(Locale.ROOT, "%d:%02d:%02d", h, m, sec) : String.format(Locale.ROOT, "%02d:%02d", m, sec);
    }

    /** {@code 1234567} -> {@code 1,234,567}. */
    public static String count(long n) { return String.format(Locale.ROOT, "%,d", n); }

    /** Rates: {@code 950} -> {@code 950}, {@code 12345} -> {@code 12.3k}, {@code 2.5e6} -> {@code 2.50M}. */
    public static String rate(double v) {
        if (!Double.isFinite(v)) return "-";
        if (v < 1_000) return String.format(Locale.ROOT, v < 10 ? "%.1f" : "%.0f", v);
        if (v < 1_000_000) return String.format(Locale.ROOT, v < 10_000 ? "%.2fk" : "%.1fk", v / 1e3);
        return String.format(Locale.ROOT, "%.2fM", v / 1e6);
    }

    /** A loss: 4 decimals, {@code nan} for non-finite. */
    public static String loss(double v) { return Double.isFinite(v) ? String.format(Locale.ROOT, "%.4f", v) : "nan"; }

    /** A learning rate: {@code 2.00e-04}. */
    public static String lr(double v) { return String.format(Locale.ROOT, "%.2e", v); }
}
