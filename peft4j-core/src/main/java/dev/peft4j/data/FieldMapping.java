package dev.peft4j.data;

import dev.peft4j.util.UserException;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Which JSON field of a source record holds each of our four fields ({@code instruction, context, response, category}).
 * Dolly's own names are the identity mapping; Alpaca maps {@code context->input, response->output}. A user's
 * {@code --fields instruction=prompt,response=answer} overrides single entries on top of the detected format.
 */
public record FieldMapping(String instruction, String context, String response, String category) {
    public static final List<String> FIELDS = List.of("instruction", "context", "response", "category");
    public static final FieldMapping DOLLY = new FieldMapping("instruction", "context", "response", "category");
    public static final FieldMapping ALPACA = new FieldMapping("instruction", "input", "output", "category");

    /** Parses {@code --fields} text ({@code ours=theirs,...}) into overrides (ours -> theirs), in the order given. */
    public static Map<String, String> parseOverrides(String spec) {
        Map<String, String> out = new LinkedHashMap<>();
        if (spec == null || spec.isBlank()) return out;
        for (String part : spec.split(",")) {
            String p = part.strip();
            if (p.isEmpty()) continue;
            int eq = p.indexOf('=');
            if (eq <= 0 || eq == p.length() - 1) {
                throw new UserException("--fields: '" + p + "' is not of the form ours=theirs (e.g. instruction=prompt,response=answer)");
            }
            String ours = p.substring(0, eq).strip(), theirs = p.substring(eq + 1).strip();
            if (!FIELDS.contains(ours)) {
                throw new UserException("--fields: unknown field '" + ours + "' (expected one of " + String.join(", ", FIELDS) + ")");
            }
            if (theirs.isEmpty()) throw new UserException("--fields: empty source field name for '" + ours + "'");
            if (out.put(ours, theirs) != null) throw new UserException("--fields: '" + ours + "' given twice");
        }
        return out;
    }

    /** This mapping with the given overrides (ours -> theirs) applied. */
    public FieldMapping with(Map<String, String> overrides) {
        return new FieldMapping(overrides.getOrDefault("instruction", instruction), overrides.getOrDefault("context", context),
                overrides.getOrDefault("response", response), overrides.getOrDefault("category", category));
    }

    public String sourceOf(String ours) {
        return switch (ours) {
            case "instruction" -> instruction;
            case "context" -> context;
            case "response" -> response;
            case "category" -> category;
            default -> throw new IllegalArgumentException(ours);
        };
    }
}
