package dev.peft4j.langchain4j;

import dev.langchain4j.model.language.LanguageModel;
import dev.langchain4j.model.output.Response;
import dev.peft4j.api.Generation;

/**
 * A LangChain4j {@link LanguageModel} (plain text completion, no chat template) over an in-process peft4j model, with the
 * builder's default sampling parameters; the response reports token usage and the finish reason.
 */
public final class Peft4jLanguageModel implements LanguageModel, AutoCloseable {
    private final Bridge bridge;

    private Peft4jLanguageModel(Builder b) { this.bridge = new Bridge(b); }

    /**
     * A builder.
     *
     * @return a builder
     */
    public static Builder builder() { return new Builder(); }

    /** Builds a {@link Peft4jLanguageModel}. */
    public static final class Builder extends Peft4jModelBuilder<Builder> {
        private Builder() {}

        /**
         * The language model (loads the model when {@link #modelPath} was given).
         *
         * @return the language model (loads the model when {@link #modelPath} was given)
         */
        public Peft4jLanguageModel build() { return new Peft4jLanguageModel(this); }
    }

    /**
     * The continuation, token usage and finish reason.
     *
     * @param prompt the text to continue (BOS is put first)
     * @return the continuation, token usage and finish reason
     */
    @Override
    public Response<String> generate(String prompt) {
        Generation g = bridge.model.generate(prompt, bridge.options(null));
        return Response.from(g.text(), Bridge.usage(g), Bridge.finishReason(g));
    }

    /** Closes the model if this language model loaded it. */
    @Override
    public void close() { bridge.close(); }
}
