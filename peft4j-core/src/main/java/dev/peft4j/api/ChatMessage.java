package dev.peft4j.api;

import java.util.Objects;

/**
 * One message of a conversation for {@link Model#chat}. Gemma's chat template folds a system message into the first user turn;
 * after it, roles must alternate user, assistant, user, ...
 *
 * @param role    who speaks
 * @param content the text
 */
public record ChatMessage(Role role, String content) {
    /** Who speaks. */
    public enum Role {
        /** Instructions for the model (at most one, first). */
        SYSTEM,
        /** The user. */
        USER,
        /** The model (Gemma calls this role "model"). */
        ASSISTANT
    }

    /** Checks that neither part is null. */
    public ChatMessage {
        Objects.requireNonNull(role, "role");
        Objects.requireNonNull(content, "content");
    }

    /**
     * A system message.
     *
     * @param text the instructions
     * @return a system message
     */
    public static ChatMessage system(String text) { return new ChatMessage(Role.SYSTEM, text); }

    /**
     * A user message.
     *
     * @param text what the user says
     * @return a user message
     */
    public static ChatMessage user(String text) { return new ChatMessage(Role.USER, text); }

    /**
     * An assistant message.
     *
     * @param text what the model said
     * @return an assistant message
     */
    public static ChatMessage assistant(String text) { return new ChatMessage(Role.ASSISTANT, text); }
}
