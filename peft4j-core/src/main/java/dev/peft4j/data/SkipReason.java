package dev.peft4j.data;

/** Why a row was left out. */
public enum SkipReason {
    MALFORMED_JSON("malformed JSON"),
    MISSING_FIELD("missing field"),
    EMPTY_INSTRUCTION("empty instruction"),
    EMPTY_RESPONSE("empty response"),
    NON_UTF8("not UTF-8"),
    TOO_LONG("too long");

    public final String label;

    SkipReason(String label) { this.label = label; }
}
