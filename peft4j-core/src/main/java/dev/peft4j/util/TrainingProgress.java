package dev.peft4j.util;

import java.io.PrintStream;
import java.util.Locale;
import java.util.function.LongSupplier;

/**
 * Console progress for training on stderr: step, percentage, loss, learning rate, tokens/s, elapsed time and ETA.
 *
 * <p>On a terminal one line is redrawn in place (at most 5 times a second). Without a terminal (CI logs, a file) a full
 * line is printed for the first step, every 10% of the steps or 30 seconds (whichever comes first) and the last step,
 * so logs stay short and readable. Rates and ETA count only the steps done by this process (so a resumed run is right).
 *
 * <pre>
 * step  120/3000 [==>                 ]   4.0% | loss 2.3456 | lr 1.00e-05 | 1.23k tok/s | elapsed 01:02, ETA 25:30
 * </pre>
 */
public final class TrainingProgress implements AutoCloseable {
    private static final int BAR = 20;
    private final PrintStream out;
    private final long total, startStep;
    private final boolean tty;
    private final LongSupplier clock;
    private final long t0;
    private long lastDraw = Long.MIN_VALUE, lastStep = -1;
    private int lastDecile = -1, lastLen;
    private String lastLine;

    public TrainingProgress(PrintStream out, long totalSteps, long startStep, boolean tty, LongSupplier nanoClock) {
        this.out = out;
        this.total = totalSteps;
        this.startStep = startStep;
        this.tty = tty;
        this.clock = nanoClock;
        this.t0 = nanoClock.getAsLong();
    }

    /** On stderr, redrawing in place when stderr is a terminal. */
    public static TrainingProgress onStderr(long totalSteps, long startStep) {
        return new TrainingProgress(System.err, totalSteps, startStep, isTerminal(), System::nanoTime);
    }

    static boolean isTerminal() {
        java.io.Console c = System.console();
        return c != null && c.isTerminal() && !"dumb".equals(System.getenv("TERM"));
    }

    /**
     * Reports that {@code step} (1-based, of {@code totalSteps}) is done.
     *
     * @param tokens tokens processed by this process so far (for tokens/s)
     */
    public synchronized void update(long step, double loss, double lr, long tokens) {
        long now = clock.getAsLong();
        lastStep = step;
        String line = line(step, loss, lr, tokens, now);
        lastLine = line;
        if (tty) {
            if (lastDraw == Long.MIN_VALUE || step >= total || now - lastDraw >= 200_000_000L) {
                draw(line);
                lastDraw = now;
            }
        } else {
            int decile = total > 0 ? (int) (10 * step / total) : 0;
            boolean first = lastDraw == Long.MIN_VALUE;
            if (first || step >= total || decile != lastDecile || now - lastDraw >= 30_000_000_000L) {
                out.println(line);
                out.flush();
                lastDraw = now;
            }
            lastDecile = decile;
        }
    }

    /** Prints a line (e.g. a validation result) without garbling the progress line. */
    public synchronized void message(String msg) {
        if (tty && lastLen > 0) {
            out.print("\r" + " ".repeat(lastLen) + "\r");
            out.println(msg);
            if (lastLine != null) draw(lastLine);
        } else {
            out.println(msg);
        }
        out.flush();
    }

    private void draw(String line) {
        int pad = Math.max(0, lastLen - line.length());
        out.print("\r" + line + " ".repeat(pad));
        out.flush();
        lastLen = line.length();
    }

    String line(long step, double loss, double lr, long tokens, long now) {
        double elapsed = (now - t0) / 1e9;
        long done = step - startStep;
        double perStep = done > 0 ? elapsed / done : Double.NaN;
        double eta = perStep * (total - step);
        double frac = total > 0 ? Math.min(1, (double) step / total) : 0;
        int filled = (int) Math.floor(frac * BAR);
        String bar = "=".repeat(filled) + (filled < BAR ? ">" + " ".repeat(BAR - filled - 1) : "");
        int w = Long.toString(total).length();
        return String.format(Locale.ROOT, "step %" + w + "d/%d [%s] %5.1f%% | loss %s | lr %s | %s tok/s | elapsed %s, ETA %s",
                step, total, bar, 100 * frac, Fmt.loss(loss), Fmt.lr(lr),
                Fmt.rate(elapsed > 0 ? tokens / elapsed : Double.NaN), Fmt.duration(elapsed),
                step >= total ? "00:00" : Fmt.duration(eta));
    }

    /** Ends the progress line (on a terminal, moves to a fresh line). */
    @Override
    public synchronized void close() {
        if (tty && lastLen > 0) {
            out.println();
            out.flush();
            lastLen = 0;
        }
    }
}
