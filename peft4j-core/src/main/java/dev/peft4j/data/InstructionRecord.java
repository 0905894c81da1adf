package dev.peft4j.data;

/**
 * One instruction-tuning example in Dolly's shape. {@code context} and {@code category} are "" when absent;
 * {@code source} says where it came from ({@code file:line}) for messages.
 */
public record InstructionRecord(String instruction, String context, String response, String category, String source) {
    public InstructionRecord {
        context = context == null ? "" : context;
        category = category == null ? "" : category;
        source = source == null ? "" : source;
    }

    public InstructionRecord(String instruction, String context, String response, String category) {
        this(instruction, context, response, category, "");
    }

    /** Dolly's rule: the empty string means "no context". Whitespace-only counts as empty too. */
    public boolean hasContext() { return !context.isBlank(); }
}
