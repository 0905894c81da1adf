package dev.peft4j.data;

import dev.peft4j.util.UserException;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A prompt template: the text before the response ({@code prompt} when the record has a context, {@code promptNoContext}
 * otherwise, with {@code {instruction}} and {@code {context}} placeholders) and the text after it ({@code responseSuffix},
 * e.g. Dolly's {@code "\n\n### End"}). The training sequence is
 * {@code BOS + prompt + response + responseSuffix + EOS}; the loss covers {@code response + responseSuffix + EOS}.
 * At generation time the prompt alone is fed (after BOS).
 */
public record Template(String name, String prompt, String promptNoContext, String responseSuffix) {
    private static final Pattern PLACEHOLDER = Pattern.compile("\\{([A-Za-z_][A-Za-z0-9_]*)\\}");

    public Template {
        check(name, "prompt", prompt, true);
        check(name, "prompt_no_context", promptNoContext, false);
        if (responseSuffix == null) responseSuffix = "";
        Matcher m = PLACEHOLDER.matcher(responseSuffix);
        if (m.find()) throw new UserException(name + ": response_suffix must not contain placeholders, found {" + m.group(1) + "}");
    }

    private static void check(String name, String key, String text, boolean withContext) {
        if (text == null) throw new UserException(name + ": '" + key + "' is missing");
        if (!text.contains("{instruction}")) throw new UserException(name + ": '" + key + "' must contain {instruction}");
        if (withContext && !text.contains("{context}")) throw new UserException(name + ": '" + key + "' must contain {context}");
        if (!withContext && text.contains("{context}")) throw new UserException(name + ": '" + key + "' is used when there is no context and must not contain {context}");
        Matcher m = PLACEHOLDER.matcher(text);
        while (m.find()) {
            String p = m.group(1);
            if (!p.equals("instruction") && !p.equals("context")) {
                throw new UserException(name + ": '" + key + "' has unknown placeholder {" + p + "} (known: {instruction}, {context})");
            }
        }
    }

    /** The prompt for {@code r} (its context decides which form); placeholders are filled in one pass. */
    public String renderPrompt(InstructionRecord r) {
        return fill(r.hasContext() ? prompt : promptNoContext, r.instruction(), r.context());
    }

    /** The prompt for generation from a bare instruction (and context, "" for none). */
    public String renderPrompt(String instruction, String context) {
        return renderPrompt(new InstructionRecord(instruction, context, "x", ""));
    }

    /** The target text after the prompt, without EOS. */
    public String renderResponse(InstructionRecord r) {
        return r.response() + responseSuffix;
    }

    /** Replaces {instruction} and {context} in a single left-to-right pass, so braces inside the values stay as they are. */
    static String fill(String template, String instruction, String context) {
        Matcher m = PLACEHOLDER.matcher(template);
        StringBuilder sb = new StringBuilder();
        int last = 0;
        while (m.find()) {
            sb.append(template, last, m.start());
            sb.append(m.group(1).equals("instruction") ? instruction : context);
            last = m.end();
        }
        return sb.append(template, last, template.length()).toString();
    }
}
