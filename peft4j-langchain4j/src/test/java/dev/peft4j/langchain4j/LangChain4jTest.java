package dev.peft4j.langchain4j;

import dev.langchain4j.agent.tool.ToolSpecification;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.exception.UnsupportedFeatureException;
import dev.langchain4j.memory.chat.MessageWindowChatMemory;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.ChatRequestParameters;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.model.output.Response;
import dev.langchain4j.service.AiServices;
import dev.langchain4j.service.SystemMessage;
import dev.langchain4j.service.TokenStream;
import dev.peft4j.api.ChatMessage;
import dev.peft4j.api.Generation;
import dev.peft4j.api.GenerationOptions;
import dev.peft4j.api.Model;
import dev.peft4j.api.Peft4j;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/** The LangChain4j models, driven by LangChain4j's own AiServices, on the quickstart's small random model. */
class LangChain4jTest {
    @TempDir
    static Path tmp;
    static Model model;
    static Peft4jChatModel chat;
    static Peft4jStreamingChatModel streaming;

    interface Assistant {
        @SystemMessage("Be brief.")
        String answer(String question);
    }

    interface StreamingAssistant {
        @SystemMessage("Be brief.")
        TokenStream answer(String question);
    }

    interface Friend {
        String chat(String message);
    }

    @BeforeAll
    static void setUp() {
        model = Peft4j.load(Peft4j.createQuickstartModel(tmp.resolve("model"), 7).toString());
        chat = Peft4jChatModel.builder().model(model).maxTokens(24).build();
        streaming = Peft4jStreamingChatModel.builder().model(model).maxTokens(24).build();
    }

    @AfterAll
    static void tearDown() {
        chat.close();   // shares the model: does not close it
        streaming.close();
        assertEquals(1024, model.vocabSize(), "a shared model stays usable");
        model.close();
    }

    static Generation direct(String question, GenerationOptions o) {
        return model.chat(List.of(ChatMessage.system("Be brief."), ChatMessage.user(question)), o);
    }

    @Test
    void aiServiceAnswersThroughTheChatTemplate() {
        Assistant a = AiServices.builder(Assistant.class).chatModel(chat).build();
        String answer = a.answer("Why is the sky blue?");
        assertEquals(direct("Why is the sky blue?", GenerationOptions.builder().maxNewTokens(24).build()).text(), answer);
    }

    @Test
    void streamingDeliversTheSameTextWithUsageAndFinishReason() throws Exception {
        StreamingAssistant s = AiServices.builder(StreamingAssistant.class).streamingChatModel(streaming).build();
        StringBuilder parts = new StringBuilder();
        CompletableFuture<ChatResponse> done = new CompletableFuture<>();
        s.answer("Why is the sky blue?").onPartialResponse(parts::append).onCompleteResponse(done::complete)
                .onError(done::completeExceptionally).start();
        ChatResponse r = done.get(60, TimeUnit.SECONDS);
        Generation g = direct("Why is the sky blue?", GenerationOptions.builder().maxNewTokens(24).build());
        assertEquals(g.text(), r.aiMessage().text());
        assertEquals(g.text(), parts.toString(), "the partial responses add up to the answer");
        assertEquals(g.promptTokens(), r.tokenUsage().inputTokenCount());
        assertEquals(g.generatedTokens(), r.tokenUsage().outputTokenCount());
        assertEquals(g.finishReason() == dev.peft4j.api.FinishReason.LENGTH ? FinishReason.LENGTH : FinishReason.STOP, r.finishReason());
    }

    @Test
    void requestParametersAreHonoured() {
        ChatResponse five = chat.chat(ChatRequest.builder().messages(UserMessage.from("Tell me about bees."))
                .parameters(ChatRequestParameters.builder().maxOutputTokens(5).build()).build());
        assertEquals(5, five.tokenUsage().outputTokenCount());
        assertEquals(FinishReason.LENGTH, five.finishReason());
        assertEquals(model.chat(List.of(ChatMessage.user("Tell me about bees.")), GenerationOptions.builder().maxNewTokens(5).build()).text(),
                five.aiMessage().text());

        String full = chat.chat(ChatRequest.builder().messages(UserMessage.from("Tell me about bees.")).build()).aiMessage().text();
        assertTrue(full.length() >= 6, "long enough answer: " + full);
        String stop = full.substring(full.length() / 2, full.length() / 2 + 2);
        ChatResponse stopped = chat.chat(ChatRequest.builder().messages(UserMessage.from("Tell me about bees."))
                .parameters(ChatRequestParameters.builder().stopSequences(stop).build()).build());
        assertEquals(full.substring(0, full.indexOf(stop)), stopped.aiMessage().text());
        assertEquals(FinishReason.STOP, stopped.finishReason());

        ChatResponse hot = chat.chat(ChatRequest.builder().messages(UserMessage.from("Tell me about bees."))
                .parameters(ChatRequestParameters.builder().temperature(1.5).topK(50).build()).build());
        assertEquals(model.chat(List.of(ChatMessage.user("Tell me about bees.")),
                GenerationOptions.builder().maxNewTokens(24).temperature(1.5f).topK(50).build()).text(), hot.aiMessage().text());
        assertNotEquals(full, hot.aiMessage().text(), "sampling at temperature 1.5 differs from greedy");
    }

    @Test
    void memoryKeepsTheConversationInTemplateOrder() {
        Friend f = AiServices.builder(Friend.class).chatModel(chat).chatMemory(MessageWindowChatMemory.withMaxMessages(10)).build();
        String first = f.chat("Hi");
        String second = f.chat("What do bees make?");
        Generation expected = model.chat(List.of(ChatMessage.user("Hi"), ChatMessage.assistant(first), ChatMessage.user("What do bees make?")),
                GenerationOptions.builder().maxNewTokens(24).build());
        assertEquals(expected.text(), second);
    }

    @Test
    void languageModelCompletesPlainText() {
        try (Peft4jLanguageModel lm = Peft4jLanguageModel.builder().model(model).maxTokens(7).build()) {
            Response<String> r = lm.generate("The capital of France is");
            Generation g = model.generate("The capital of France is", GenerationOptions.builder().maxNewTokens(7).build());
            assertEquals(g.text(), r.content());
            assertEquals(7, r.tokenUsage().outputTokenCount());
            assertEquals(FinishReason.LENGTH, r.finishReason());
        }
    }

    @Test
    void whatPeft4jCannotDoIsRefusedClearly() {
        ChatRequest tools = ChatRequest.builder().messages(UserMessage.from("x")).parameters(ChatRequestParameters.builder()
                .toolSpecifications(ToolSpecification.builder().name("now").description("time").build()).build()).build();
        assertThrows(UnsupportedFeatureException.class, () -> chat.chat(tools));
        assertThrows(IllegalArgumentException.class, () -> Peft4jChatModel.builder().build());
        // a model loaded by path with an adapter that is not there: one clear error
        var e = assertThrows(RuntimeException.class, () -> Peft4jChatModel.builder().modelPath(tmp.resolve("model").toString())
                .adapter(tmp.resolve("missing-adapter").toString()).build());
        assertTrue(e.getMessage().contains("missing-adapter"), e.getMessage());
    }
}
