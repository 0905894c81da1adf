package dev.peft4j.langchain4j;

import dev.langchain4j.model.ModelProvider;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;

/**
 * A LangChain4j {@link ChatModel} over an in-process peft4j Gemma 3 model (optionally with a PEFT adapter): messages go through
 * Gemma's chat template; temperature, top-p, top-k, max output tokens and stop sequences are honoured; responses report token
 * usage and the finish reason. Tools and JSON response formats are not supported. Close it to release the model it loaded.
 *
 * <pre>{@code
 * try (Peft4jChatModel chat = Peft4jChatModel.builder().modelPath("google/gemma-3-270m-it").adapter("runs/lora").build()) {
 *     Assistant a = AiServices.create(Assistant.class, chat);
 * }
 * }</pre>
 */
public final class Peft4jChatModel implements ChatModel, AutoCloseable {
    private final Bridge bridge;

    private Peft4jChatModel(Builder b) { this.bridge = new Bridge(b); }

    /**
     * A builder.
     *
     * @return a builder
     */
    public static Builder builder() { return new Builder(); }

    /** Builds a {@link Peft4jChatModel}. */
    public static final class Builder extends Peft4jModelBuilder<Builder> {
        private Builder() {}

        /**
         * The chat model (loads the model when {@link #modelPath} was given).
         *
         * @return the chat model (loads the model when {@link #modelPath} was given)
         */
        public Peft4jChatModel build() { return new Peft4jChatModel(this); }
    }

    @Override
    public ChatResponse doChat(ChatRequest request) {
        return bridge.response(bridge.chat(request, null));
    }

    @Override
    public ChatRequestParameters defaultRequestParameters() { return bridge.defaults; }

    @Override
    public ModelProvider provider() { return ModelProvider.OTHER; }

    /** Closes the model if this chat model loaded it. */
    @Override
    public void close() { bridge.close(); }
}
