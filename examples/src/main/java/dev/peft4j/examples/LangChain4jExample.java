package dev.peft4j.examples;

import dev.langchain4j.memory.chat.MessageWindowChatMemory;
import dev.langchain4j.service.AiServices;
import dev.langchain4j.service.SystemMessage;
import dev.peft4j.api.Peft4j;
import dev.peft4j.langchain4j.Peft4jChatModel;

import java.nio.file.Files;

/**
 * A LangChain4j AI service backed by an in-process Gemma 3 (optionally with a PEFT adapter): an interface, a system message,
 * chat memory, and no server.
 *
 * <pre>LangChain4jExample [MODEL [ADAPTER]]      e.g. google/gemma-3-270m-it runs/gemma-lora</pre>
 */
public final class LangChain4jExample {
    private LangChain4jExample() {}

    /** The AI service: LangChain4j implements it. */
    interface Assistant {
        @SystemMessage("You are a helpful assistant. Answer in one or two sentences.")
        String chat(String message);
    }

    /** @param args optional: a model directory or Hub repo id, and an adapter */
    public static void main(String[] args) throws Exception {
        String model = args.length > 0 ? args[0] : Peft4j.createQuickstartModel(Files.createTempDirectory("peft4j-model"), 42).toString();
        Peft4jChatModel.Builder b = Peft4jChatModel.builder().modelPath(model).temperature(0.7).topP(0.95).seed(1L).maxTokens(64);
        if (args.length > 1) b.adapter(args[1]);
        try (Peft4jChatModel chatModel = b.build()) {
            Assistant assistant = AiServices.builder(Assistant.class)
                    .chatModel(chatModel)
                    .chatMemory(MessageWindowChatMemory.withMaxMessages(10))
                    .build();
            for (String q : new String[]{"What do bees make?", "And how do they make it?"}) {
                System.out.println("> " + q);
                System.out.println(assistant.chat(q));
            }
        }
    }
}
