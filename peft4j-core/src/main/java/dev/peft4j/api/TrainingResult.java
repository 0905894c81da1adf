package dev.peft4j.api;

import java.nio.file.Path;

/**
 * The outcome of {@link Training#run()}.
 *
 * @param steps          optimizer steps done in total
 * @param finalLoss      the last step's training loss
 * @param validationLoss the last validation loss, or null when there is no validation set
 * @param output         the output directory: the PEFT adapter (or, for full fine-tuning, a Hugging Face checkpoint), metrics,
 *                       loss curve and checkpoints
 * @param cancelled      true when {@link Training#cancel()} stopped the run early: the last checkpoint is in
 *                       {@code output/checkpoints} and the same settings with {@link Training.Builder#resume(boolean)} continue it
 *                       (the final adapter is written only by a finished run)
 */
public record TrainingResult(long steps, double finalLoss, Double validationLoss, Path output, boolean cancelled) {}
