package dev.peft4j.examples;

import dev.peft4j.api.ChatMessage;
import dev.peft4j.api.Generation;
import dev.peft4j.api.GenerationOptions;
import dev.peft4j.api.Model;
import dev.peft4j.api.Peft4j;

import java.nio.file.Files;
import java.util.List;

/**
 * Generate text: greedy, then sampled and streamed, then a chat answer through Gemma's chat template.
 *
 * <pre>java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED ... GenerateExample [MODEL_DIR_OR_HUB_ID]</pre>
 * Without an argument it uses a small random model (the quickstart's), which says nothing sensible but needs no download.
 */
public final class GenerateExample {
    private GenerateExample() {}

    /** @param args optional: a model directory or Hub repo id (e.g. google/gemma-3-270m-it) */
    public static void main(String[] args) throws Exception {
        String modelRef = args.length > 0 ? args[0]
                : Peft4j.createQuickstartModel(Files.createTempDirectory("peft4j-model"), 42).toString();
        try (Model model = Peft4j.load(modelRef)) {
            // 1. greedy (temperature 0), at most 32 new tokens
            Generation g = model.generate("The capital of France is", GenerationOptions.builder().maxNewTokens(32).build());
            System.out.println("greedy: " + g.text() + "  [" + g.generatedTokens() + " tokens, " + g.finishReason() + "]");

            // 2. sampled and streamed as it is produced; stops at a blank line
            GenerationOptions sampled = GenerationOptions.builder().maxNewTokens(48).temperature(0.8f).topP(0.95f)
                    .repetitionPenalty(1.2f).seed(1).stop("\n\n").build();
            System.out.print("streamed: ");
            model.generate("Once upon a time", sampled, (tokenId, text) -> System.out.print(text));
            System.out.println();

            // 3. chat with the template
            Generation answer = model.chat(List.of(ChatMessage.system("Answer in one sentence."), ChatMessage.user("Why is the sky blue?")),
                    GenerationOptions.builder().maxNewTokens(48).build());
            System.out.println("chat: " + answer.text());
        }
    }
}
