package dev.peft4j.tokenizer;

import dev.peft4j.util.UserException;

import java.util.List;

/**
 * Gemma 3's chat template (tokenizer_config.json {@code chat_template}) rendered without a Jinja engine: a system message is
 * folded into the first user turn (followed by a blank line), "assistant" is called "model", contents are trimmed, roles must
 * alternate user/model. BOS is not part of the string: pass {@code withBos} to {@link Tokenizer#encode} instead.
 */
public final class ChatTemplate {
    public record Message(String role, String content) {}

    private ChatTemplate() {}

    public static String render(List<Message> messages, boolean addGenerationPrompt) {
        String prefix = "";
        int start = 0;
        if (!messages.isEmpty() && messages.get(0).role().equals("system")) {
            prefix = messages.get(0).content() + "\n\n";
            start = 1;
        }
        StringBuilder sb = new StringBuilder();
        for (int i = start; i < messages.size(); i++) {
            Message m = messages.get(i);
            boolean userTurn = (i - start) % 2 == 0;
            if (m.role().equals("user") != userTurn) {
                throw new UserException("chat: conversation roles must alternate user/assistant/user/assistant/... (message " + i + " is " + m.role() + ")");
            }
            String role = m.role().equals("assistant") ? "model" : m.role();
            sb.append("<start_of_turn>").append(role).append('\n');
            if (i == start) sb.append(prefix);
            sb.append(m.content().strip()).append("<end_of_turn>\n");
        }
        if (addGenerationPrompt) sb.append("<start_of_turn>model\n");
        return sb.toString();
    }

    /** One user turn followed by the generation prompt. */
    public static String user(String text) {
        return render(List.of(new Message("user", text)), true);
    }
}
