package dev.peft4j.util;

import com.fasterxml.jackson.databind.JsonNode;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A loss-curve picture as a self-contained SVG: training loss (thin raw line plus a smoothed line when there are many
 * points) and validation loss (line with dots) against the step, with axes, "nice" ticks, grid, legend and title.
 */
public final class LossCurveSvg {
    private LossCurveSvg() {}

    /** One line of the plot. */
    public record Series(String name, double[] x, double[] y, String color, boolean dots) {}

    private static final int W = 820, H = 500, L = 78, R = 24, T = 56, B = 62;

    /** Reads {@code metrics.jsonl} records: {@code loss} (training) and {@code val_loss} (validation) against {@code step}. */
    public static String fromMetrics(List<JsonNode> records, String title) {
        List<double[]> train = new ArrayList<>(), val = new ArrayList<>();
        for (JsonNode r : records) {
            if (!r.hasNonNull("step")) continue;
            double s = r.get("step").asDouble();
            if (r.hasNonNull("loss") && r.get("loss").isNumber()) train.add(new double[]{s, r.get("loss").asDouble()});
            if (r.hasNonNull("val_loss") && r.get("val_loss").isNumber()) val.add(new double[]{s, r.get("val_loss").asDouble()});
        }
        return render(title, "step", "loss", trainAndValidation(train, val));
    }

    /** Writes the picture of a metrics file next to it (atomically). */
    public static void writeFromMetrics(Path metricsJsonl, Path svg, String title) {
        AtomicFiles.writeString(svg, fromMetrics(MetricsWriter.read(metricsJsonl), title));
    }

    static List<Series> trainAndValidation(List<double[]> train, List<double[]> val) {
        List<Series> s = new ArrayList<>();
        double[] tx = col(train, 0), ty = col(train, 1);
        if (train.size() > 30) {
            s.add(new Series("train (raw)", tx, ty, "#9ecae1", false));
            s.add(new Series("train (smoothed)", tx, smooth(ty, Math.max(0.8, 1 - 20.0 / train.size())), "#1f77b4", false));
        } else if (!train.isEmpty()) {
            s.add(new Series("train", tx, ty, "#1f77b4", train.size() <= 12));
        }
        if (!val.isEmpty()) s.add(new Series("validation", col(val, 0), col(val, 1), "#d62728", true));
        return s;
    }

    private static double[] col(List<double[]> pts, int c) {
        double[] out = new double[pts.size()];
        for (int i = 0; i < out.length; i++) out[i] = pts.get(i)[c];
        return out;
    }

    /** Exponential moving average with bias correction (as TensorBoard's smoothing), skipping non-finite values. */
    static double[] smooth(double[] y, double beta) {
        double[] out = new double[y.length];
        double avg = 0, wsum = 0;
        for (int i = 0; i < y.length; i++) {
            if (Double.isFinite(y[i])) {
                avg = beta * avg + (1 - beta) * y[i];
                wsum = beta * wsum + (1 - beta);
            }
            out[i] = wsum > 0 ? avg / wsum : Double.NaN;
        }
        return out;
    }

    public static String render(String title, String xLabel, String yLabel, List<Series> series) {
        double xmin = Double.POSITIVE_INFINITY, xmax = Double.NEGATIVE_INFINITY, ymin = xmin, ymax = xmax;
        for (Series s : series) {
            for (int i = 0; i < s.x().length; i++) {
                if (!Double.isFinite(s.x()[i]) || !Double.isFinite(s.y()[i])) continue;
                xmin = Math.min(xmin, s.x()[i]); xmax = Math.max(xmax, s.x()[i]);
                ymin = Math.min(ymin, s.y()[i]); ymax = Math.max(ymax, s.y()[i]);
            }
        }
        boolean empty = !Double.isFinite(xmin);
        if (empty) { xmin = 0; xmax = 1; ymin = 0; ymax = 1; }
        if (xmax == xmin) { xmin -= 1; xmax += 1; }
        if (ymax == ymin) { double d = Math.max(Math.abs(ymin) * 0.1, 0.1); ymin -= d; ymax += d; }
        double[] xt = ticks(xmin, xmax, 8), yt = ticks(ymin - 0.04 * (ymax - ymin), ymax + 0.04 * (ymax - ymin), 6);
        if (xmin >= 0 && xt[0] < 0) xt[0] = 0;
        double x0 = Math.min(xmin, xt[0]), x1 = Math.max(xmax, xt[xt.length - 1]);
        double y0 = yt[0], y1 = yt[yt.length - 1];
        Axis ax = new Axis(x0, x1, y0, y1);

        StringBuilder sb = new StringBuilder();
        sb.append(String.format(Locale.ROOT,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                        + "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"13\">\n", W, H, W, H));
        sb.append(String.format(Locale.ROOT, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H));
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"30\" text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\" fill=\"#222\">%s</text>\n",
                L + (W - L - R) / 2, esc(title)));
        // grid and ticks
        sb.append("<g stroke=\"#e6e6e6\" stroke-width=\"1\">\n");
        for (double t : yt) sb.append(line(L, ax.py(t), W - R, ax.py(t)));
        for (double t : xt) if (t >= x0 && t <= x1) sb.append(line(ax.px(t), T, ax.px(t), H - B));
        sb.append("</g>\n<g fill=\"#444\">\n");
        double ystep = yt.length > 1 ? yt[1] - yt[0] : 1, xstep = xt.length > 1 ? xt[1] - xt[0] : 1;
        for (double t : yt) sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 8, ax.py(t) + 4.5, label(t, ystep)));
        for (double t : xt) if (t >= x0 && t <= x1) sb.append(String.format(Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", ax.px(t), H - B + 20, label(t, xstep)));
        sb.append("</g>\n");
        // axes
        sb.append(String.format(Locale.ROOT, "<g stroke=\"#444\" stroke-width=\"1.2\">%s%s</g>\n", line(L, H - B, W - R, H - B), line(L, T, L, H - B)));
        sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#222\">%s</text>\n", L + (W - L - R) / 2, H - 16, esc(xLabel)));
        sb.append(String.format(Locale.ROOT, "<text x=\"20\" y=\"%d\" text-anchor=\"middle\" fill=\"#222\" transform=\"rotate(-90 20 %d)\">%s</text>\n",
                T + (H - T - B) / 2, T + (H - T - B) / 2, esc(yLabel)));
        // series
        for (Series s : series) {
            StringBuilder path = new StringBuilder();
            boolean pen = false;
            for (int i = 0; i < s.x().length; i++) {
                if (!Double.isFinite(s.y()[i])) { pen = false; continue; }
                path.append(String.format(Locale.ROOT, "%s%.1f,%.1f ", pen ? "L" : "M", ax.px(s.x()[i]), ax.py(s.y()[i])));
                pen = true;
            }
            double width = s.name().contains("raw") ? 1 : 2.2;
            sb.append(String.format(Locale.ROOT, "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-linejoin=\"round\" stroke-linecap=\"round\"/>\n",
                    path.toString().strip(), s.color(), width));
            if (s.dots()) {
                sb.append(String.format(Locale.ROOT, "<g fill=\"%s\" stroke=\"white\" stroke-width=\"1\">", s.color()));
                for (int i = 0; i < s.x().length; i++) {
                    if (Double.isFinite(s.y()[i])) sb.append(String.format(Locale.ROOT, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\"/>", ax.px(s.x()[i]), ax.py(s.y()[i])));
                }
                sb.append("</g>\n");
            }
        }
        if (empty) {
            sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#888\">no data yet</text>\n", L + (W - L - R) / 2, T + (H - T - B) / 2));
        }
        // legend (top right, inside the plot)
        if (!series.isEmpty()) {
            int lw = 0;
            for (Series s : series) lw = Math.max(lw, s.name().length());
            int boxW = 44 + (int) (lw * 7.2), boxH = 10 + 20 * series.size();
            int bx = W - R - boxW - 10, by = T + 10;
            sb.append(String.format(Locale.ROOT, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#ccc\" rx=\"4\"/>\n", bx, by, boxW, boxH));
            for (int i = 0; i < series.size(); i++) {
                Series s = series.get(i);
                int yy = by + 18 + 20 * i;
                sb.append(String.format(Locale.ROOT, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"%.1f\"/>",
                        bx + 8, yy - 4, bx + 30, yy - 4, s.color(), s.name().contains("raw") ? 1.5 : 2.5));
                if (s.dots()) sb.append(String.format(Locale.ROOT, "<circle cx=\"%d\" cy=\"%d\" r=\"3.5\" fill=\"%s\"/>", bx + 19, yy - 4, s.color()));
                sb.append(String.format(Locale.ROOT, "<text x=\"%d\" y=\"%d\" fill=\"#222\">%s</text>\n", bx + 36, yy, esc(s.name())));
            }
        }
        sb.append("</svg>\n");
        return sb.toString();
    }

    private record Axis(double x0, double x1, double y0, double y1) {
        double px(double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); }
        double py(double y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); }
    }

    private static String line(double xa, double ya, double xb, double yb) {
        return String.format(Locale.ROOT, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", xa, ya, xb, yb);
    }

    /**
     * "Nice" tick values covering [lo, hi]: a step of 1, 2 or 5 times a power of ten giving at most about
     * {@code target} intervals; the first tick is at or below lo and the last at or above hi.
     */
    static double[] ticks(double lo, double hi, int target) {
        double raw = (hi - lo) / target;
        double mag = Math.pow(10, Math.floor(Math.log10(raw)));
        double step = mag;
        for (double m : new double[]{1, 2, 5, 10}) {
            if (m * mag >= raw) { step = m * mag; break; }
        }
        double start = Math.floor(lo / step + 1e-9) * step, end = Math.ceil(hi / step - 1e-9) * step;
        int n = (int) Math.round((end - start) / step) + 1;
        double[] t = new double[n];
        for (int i = 0; i < n; i++) t[i] = start + i * step;
        return t;
    }

    /** Tick label with just enough decimals for the tick step; large values get thousands separators. */
    static String label(double v, double step) {
        int dec = step >= 1 ? 0 : (int) Math.ceil(-Math.log10(step) - 1e-9);
        if (Math.abs(v) < step * 1e-6) v = 0;
        return dec == 0 ? String.format(Locale.ROOT, "%,d", Math.round(v)) : String.format(Locale.ROOT, "%." + dec + "f", v);
    }

    private static String esc(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
