package dev.peft4j.train;

import dev.peft4j.util.UserException;

/**
 * Learning-rate schedules as transformers' get_*_schedule_with_warmup: lr(step) = base · λ(step), where step counts optimizer
 * steps already taken (0 for the first update, as the Trainer calls scheduler.step() after optimizer.step()).
 * Warmup λ = step / max(1, warmup) for step &lt; warmup. After warmup: constant 1; linear max(0, (total − step) /
 * max(1, total − warmup)); cosine max(0, ½(1 + cos(π · 2 · 0.5 · progress))), progress = (step − warmup) / max(1, total − warmup).
 */
public record LrSchedule(Kind kind, double base, int warmup, int total) {
    public enum Kind { CONSTANT, LINEAR, COSINE }

    public static LrSchedule of(String kind, double base, int warmup, int total) {
        Kind k = switch (kind.toLowerCase(java.util.Locale.ROOT)) {
            case "constant", "constant_with_warmup" -> Kind.CONSTANT;
            case "linear" -> Kind.LINEAR;
            case "cosine" -> Kind.COSINE;
            default -> throw new UserException("--schedule: unknown schedule '" + kind + "' (expected constant, linear or cosine)");
        };
        return new LrSchedule(k, base, warmup, total);
    }

    public double lr(long step) { return base * factor(step); }

    public double factor(long step) {
        if (step < warmup) return (double) step / Math.max(1, warmup);
        double rest = Math.max(1, total - warmup);
        return switch (kind) {
            case CONSTANT -> 1.0;
            case LINEAR -> Math.max(0.0, (total - step) / rest);
            case COSINE -> Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * 2.0 * 0.5 * ((step - warmup) / rest))));
        };
    }
}
