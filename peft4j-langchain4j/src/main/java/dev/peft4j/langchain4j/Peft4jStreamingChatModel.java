package dev.peft4j.langchain4j;

import dev.langchain4j.model.ModelProvider;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.peft4j.api.Generation;

/**
 * A LangChain4j {@link StreamingChatModel} over an in-process peft4j model: as {@link Peft4jChatModel}, with the answer
 * delivered piece by piece to {@link StreamingChatResponseHandler#onPartialResponse(String)} on the calling thread (the pieces
 * add up to the complete response's text), then {@code onCompleteResponse} with token usage and finish reason.
 */
public final class Peft4jStreamingChatModel implements StreamingChatModel, AutoCloseable {
    private final Bridge bridge;

    private Peft4jStreamingChatModel(Builder b) { this.bridge = new Bridge(b); }

    /**
     * A builder.
     *
     * @return a builder
     */
    public static Builder builder() { return new Builder(); }

    /** Builds a {@link Peft4jStreamingChatModel}. */
    public static final class Builder extends Peft4jModelBuilder<Builder> {
        private Builder() {}

        /**
         * The streaming chat model (loads the model when {@link #modelPath} was given).
         *
         * @return the streaming chat model (loads the model when {@link #modelPath} was given)
         */
        public Peft4jStreamingChatModel build() { return new Peft4jStreamingChatModel(this); }
    }

    @Override
    public void doChat(ChatRequest request, StreamingChatResponseHandler handler) {
        Generation g;
        try {
            g = bridge.chat(request, (id, text) -> {
                if (!text.isEmpty()) handler.onPartialResponse(text);
            });
        } catch (RuntimeException e) {
            handler.onError(e);
            return;
        }
        handler.onCompleteResponse(bridge.response(g));
    }

    @Override
    public ChatRequestParameters defaultRequestParameters() { return bridge.defaults; }

    @Override
    public ModelProvider provider() { return ModelProvider.OTHER; }

    /** Closes the model if this chat model loaded it. */
    @Override
    public void close() { bridge.close(); }
}
