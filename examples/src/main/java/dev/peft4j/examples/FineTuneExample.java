package dev.peft4j.examples;

import dev.peft4j.api.Peft4j;
import dev.peft4j.api.Training;
import dev.peft4j.api.TrainingResult;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Fine-tune a prompt-tuning adapter (20 virtual tokens) on instruction data in Dolly's format, printing progress; the output
 * directory holds a PEFT adapter that Python's {@code peft} loads too. Ctrl-C-safe in the sense that a cancelled or killed
 * run continues with {@code resume(true)}.
 *
 * <pre>FineTuneExample [MODEL [DATA.jsonl [OUTPUT_DIR [STEPS]]]]</pre>
 * Without arguments: the quickstart's small random model and its 76 bundled Dolly-format records, 30 steps.
 */
public final class FineTuneExample {
    private FineTuneExample() {}

    /** @param args optional: model, data file, output directory, optimizer steps */
    public static void main(String[] args) throws Exception {
        Path work = args.length < 3 ? Files.createTempDirectory("peft4j-finetune") : null;
        String model = args.length > 0 ? args[0] : Peft4j.createQuickstartModel(work.resolve("model"), 42).toString();
        Path data = args.length > 1 ? Path.of(args[1]) : Peft4j.writeQuickstartData(work.resolve("dolly-mini.jsonl"));
        Path output = args.length > 2 ? Path.of(args[2]) : work.resolve("adapter");
        int steps = args.length > 3 ? Integer.parseInt(args[3]) : 30;

        Training training = Training.builder()
                .model(model).data(data).output(output)
                .method(Training.Method.PROMPT_TUNING).numVirtualTokens(20).promptInit("text:Answer the question helpfully.")
                .template("gemma-chat").maxSeqLen(256).valSize("8")
                .maxSteps(steps).batchSize(4).learningRate(0.3).schedule("cosine").warmupSteps(2)
                .evalEvery(10).saveEvery(10).seed(42)
                .listener(p -> System.out.printf("step %d/%d  loss %.4f  lr %.2e  %.0f tok/s  eta %.0fs%s%n", p.step(), p.totalSteps(),
                        p.loss(), p.learningRate(), p.tokensPerSecond(), p.etaSeconds(),
                        p.validationLoss() == null ? "" : String.format("  validation loss %.4f", p.validationLoss())))
                .build();
        TrainingResult r = training.run();
        System.out.printf("done: %d steps, final loss %.4f; adapter in %s%n", r.steps(), r.finalLoss(), r.output());
    }
}
