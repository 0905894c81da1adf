package dev.peft4j.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Built-in templates and user template files.
 *
 * <ul>
 *   <li>{@code dolly}: Dolly's training format ({@code databrickslabs/dolly training/consts.py}), with "### End" after the response;
 *       its no-context prompt equals Dolly's generation prompt.</li>
 *   <li>{@code alpaca}: Stanford Alpaca's {@code PROMPT_DICT} verbatim (the response follows "### Response:" directly, as in Alpaca).</li>
 *   <li>{@code gemma-chat}: Gemma's turn format; a context is appended to the instruction after a blank line.</li>
 * </ul>
 *
 * <p>A template file ({@code --template FILE}) is either a JSON object with the string keys {@code prompt},
 * {@code prompt_no_context} and optionally {@code response_suffix}, or a sectioned text file:
 * <pre>
 * [prompt]
 * Instruction: {instruction}
 * Context: {context}
 * Answer:
 *
 * [prompt_no_context]
 * Instruction: {instruction}
 * Answer:
 *
 * [response_suffix]
 *
 * ### End
 * </pre>
 * Each section's text is the lines after its header up to the next header, joined with newlines; the line break just
 * before the next header (or the end of the file) is not part of it. So the prompts above end with one newline and
 * the suffix is {@code "\n### End"}. A file that does not start with {@code [prompt} or {@code {} is rejected.
 */
public final class Templates {
    private Templates() {}

    public static final String DOLLY_INTRO =
            "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

    public static final Template DOLLY = new Template("dolly",
            DOLLY_INTRO + "\n\n### Instruction:\n{instruction}\n\nInput:\n{context}\n\n### Response:\n",
            DOLLY_INTRO + "\n\n### Instruction:\n{instruction}\n\n### Response:\n",
            "\n\n### End");

    public static final Template ALPACA = new Template("alpaca",
            "Below is an instruction that describes a task, paired with an input that provides further context. "
                    + "Write a response that appropriately completes the request.\n\n"
                    + "### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n### Response:",
            "Below is an instruction that describes a task. "
                    + "Write a response that appropriately completes the request.\n\n"
                    + "### Instruction:\n{instruction}\n\n### Response:",
            "");

    public static final Template GEMMA_CHAT = new Template("gemma-chat",
            "<start_of_turn>user\n{instruction}\n\n{context}<end_of_turn>\n<start_of_turn>model\n",
            "<start_of_turn>user\n{instruction}<end_of_turn>\n<start_of_turn>model\n",
            "<end_of_turn>");

    public static final List<String> NAMES = List.of("dolly", "alpaca", "gemma-chat");

    public static Template byName(String name) {
        return switch (name) {
            case "dolly" -> DOLLY;
            case "alpaca" -> ALPACA;
            case "gemma-chat" -> GEMMA_CHAT;
            default -> throw new UserException("--template: unknown template '" + name + "' (built in: "
                    + String.join(", ", NAMES) + "; or give a template file)");
        };
    }

    /** A built-in name, or else the path of a template file. */
    public static Template resolve(String nameOrFile) {
        if (NAMES.contains(nameOrFile)) return byName(nameOrFile);
        Path p = Path.of(nameOrFile);
        if (Files.exists(p)) return fromFile(p);
        return byName(nameOrFile);
    }

    public static Template fromFile(Path file) {
        if (!Files.isRegularFile(file)) throw new UserException(file + ": template file not found");
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(Files.readAllBytes(file))).toString();
        } catch (CharacterCodingException e) {
            throw new UserException(file + ": template file is not valid UTF-8");
        } catch (IOException e) {
            throw new UserException(file + ": cannot read (" + e.getMessage() + ")");
        }
        if (text.startsWith("\uFEFF")) text = text.substring(1);
        text = text.replace("\r\n", "\n");
        Map<String, String> keys = text.stripLeading().startsWith("{") ? parseJson(file, text) : parseSections(file, text);
        for (String k : keys.keySet()) {
            if (!List.of("prompt", "prompt_no_context", "response_suffix").contains(k)) {
                throw new UserException(file + ": unknown key '" + k + "' (expected prompt, prompt_no_context, response_suffix)");
            }
        }
        return new Template(file.toString(), keys.get("prompt"), keys.get("prompt_no_context"), keys.getOrDefault("response_suffix", ""));
    }

    private static Map<String, String> parseJson(Path file, String text) {
        JsonNode n;
        try {
            n = new ObjectMapper().readTree(text);
        } catch (IOException e) {
            throw new UserException(file + ": template is not valid JSON (" + e.getMessage().split("\n")[0] + ")");
        }
        Map<String, String> out = new LinkedHashMap<>();
        var it = n.fields();
        while (it.hasNext()) {
            var e = it.next();
            if (!e.getValue().isTextual()) throw new UserException(file + ": '" + e.getKey() + "' must be a string");
            out.put(e.getKey(), e.getValue().asText());
        }
        return out;
    }

    static Map<String, String> parseSections(Path file, String text) {
        Map<String, String> out = new LinkedHashMap<>();
        String[] lines = text.split("\n", -1);
        int n = lines.length;
        if (text.endsWith("\n")) n--; // the final line break ends the last section
        String key = null;
        StringBuilder sb = null;
        for (int i = 0; i < n; i++) {
            String l = lines[i];
            if (l.matches("\\[(prompt|prompt_no_context|response_suffix)\\]\\s*")) {
                if (key != null) out.put(key, sb.toString());
                key = l.strip().substring(1, l.strip().length() - 1);
                if (out.containsKey(key)) throw new UserException(file + ":" + (i + 1) + ": section [" + key + "] given twice");
                sb = null;
                continue;
            }
            if (key == null) {
                if (l.isBlank()) continue;
                throw new UserException(file + ":" + (i + 1) + ": expected a section header [prompt], [prompt_no_context] or [response_suffix] (or a JSON object)");
            }
            if (sb == null) sb = new StringBuilder(l);
            else sb.append('\n').append(l);
        }
        if (key != null) out.put(key, sb == null ? "" : sb.toString());
        return out;
    }
}
