package dev.peft4j.langchain4j;

import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.Content;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.TextContent;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.exception.UnsupportedFeatureException;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.request.DefaultChatRequestParameters;
import dev.langchain4j.model.chat.request.ResponseFormatType;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.model.output.TokenUsage;
import dev.peft4j.api.ChatMessage;
import dev.peft4j.api.Generation;
import dev.peft4j.api.GenerationOptions;
import dev.peft4j.api.Model;
import dev.peft4j.api.Peft4j;

import java.util.ArrayList;
import java.util.List;

/** What the three LangChain4j models share: the peft4j model, its default parameters, and the mapping of requests and results. */
final class Bridge implements AutoCloseable {
    final Model model;
    private final boolean owned;
    final String modelName;
    final ChatRequestParameters defaults;
    final Long seed;
    final Double repetitionPenalty;

    Bridge(Peft4jModelBuilder<?> b) {
        if ((b.model == null) == (b.modelPath == null)) {
            throw new IllegalArgumentException("give exactly one of model(Model) or modelPath(directory or Hub repo id)");
        }
        this.model = b.model != null ? b.model : Peft4j.load(b.modelPath, b.loadOptions);
        this.owned = b.model == null;
        this.modelName = b.modelName != null ? b.modelName : b.modelPath != null ? b.modelPath : model.directory().getFileName().toString();
        this.defaults = DefaultChatRequestParameters.builder().modelName(modelName).temperature(b.temperature).topP(b.topP)
                .topK(b.topK).maxOutputTokens(b.maxTokens).stopSequences(b.stopSequences).build();
        this.seed = b.seed;
        this.repetitionPenalty = b.repetitionPenalty;
    }

    /** The request's parameters over this model's defaults as peft4j options; refuses what peft4j cannot honour. */
    GenerationOptions options(ChatRequestParameters p) {
        ChatRequestParameters r = p == null ? defaults : defaults.overrideWith(p);
        if (r.toolSpecifications() != null && !r.toolSpecifications().isEmpty()) {
            throw new UnsupportedFeatureException("peft4j: tools (function calling) are not supported");
        }
        if (r.responseFormat() != null && r.responseFormat().type() == ResponseFormatType.JSON) {
            throw new UnsupportedFeatureException("peft4j: JSON response format is not supported");
        }
        if (r.frequencyPenalty() != null || r.presencePenalty() != null) {
            throw new UnsupportedFeatureException("peft4j: frequencyPenalty/presencePenalty are not supported (use the builder's repetitionPenalty)");
        }
        GenerationOptions.Builder o = GenerationOptions.builder();
        if (r.temperature() != null) o.temperature(r.temperature().floatValue());
        if (r.topP() != null) o.topP(r.topP().floatValue());
        if (r.topK() != null) o.topK(r.topK());
        o.maxNewTokens(r.maxOutputTokens() != null ? r.maxOutputTokens() : Peft4jModelBuilder.DEFAULT_MAX_TOKENS);
        if (r.stopSequences() != null) o.stop(r.stopSequences());
        if (seed != null) o.seed(seed);
        if (repetitionPenalty != null) o.repetitionPenalty(repetitionPenalty.floatValue());
        return o.build();
    }

    /** LangChain4j messages as a conversation for Gemma's chat template (text only). */
    static List<ChatMessage> messages(List<dev.langchain4j.data.message.ChatMessage> in) {
        List<ChatMessage> out = new ArrayList<>();
        for (dev.langchain4j.data.message.ChatMessage m : in) {
            switch (m) {
                case SystemMessage s -> out.add(ChatMessage.system(s.text()));
                case UserMessage u -> {
                    StringBuilder sb = new StringBuilder();
                    for (Content c : u.contents()) {
                        if (!(c instanceof TextContent t)) throw new UnsupportedFeatureException("peft4j: only text content is supported, got " + c.type());
                        sb.append(t.text());
                    }
                    out.add(ChatMessage.user(sb.toString()));
                }
                case AiMessage a -> {
                    if (a.hasToolExecutionRequests()) throw new UnsupportedFeatureException("peft4j: tool execution requests are not supported");
                    out.add(ChatMessage.assistant(a.text() == null ? "" : a.text()));
                }
                default -> throw new UnsupportedFeatureException("peft4j: message type " + m.type() + " is not supported");
            }
        }
        return out;
    }

    ChatResponse response(Generation g) {
        return ChatResponse.builder().aiMessage(AiMessage.from(g.text())).modelName(modelName)
                .tokenUsage(usage(g)).finishReason(finishReason(g)).build();
    }

    static TokenUsage usage(Generation g) { return new TokenUsage(g.promptTokens(), g.generatedTokens()); }

    static FinishReason finishReason(Generation g) {
        return switch (g.finishReason()) {
            case EOS, STOP -> FinishReason.STOP;
            case LENGTH -> FinishReason.LENGTH;
        };
    }

    Generation chat(ChatRequest request, dev.peft4j.api.TokenListener listener) {
        return model.chat(messages(request.messages()), options(request.parameters()), listener);
    }

    @Override
    public void close() {
        if (owned) model.close();
    }
}
