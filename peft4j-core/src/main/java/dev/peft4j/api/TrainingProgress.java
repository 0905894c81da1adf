package dev.peft4j.api;

/**
 * A {@link TrainingListener}'s view of one finished optimizer step.
 *
 * @param step            steps done (1-based; a resumed run continues the count)
 * @param totalSteps      steps of the whole run
 * @param epoch           the data epoch the next batch comes from (0-based)
 * @param loss            the step's training loss (mean over its target tokens)
 * @param learningRate    the learning rate the step used
 * @param tokensPerSecond training tokens per second since this process started the run
 * @param etaSeconds      estimated seconds to the last step at this pace
 * @param validationLoss  the validation loss computed at this step, or null when none was
 */
public record TrainingProgress(long step, long totalSteps, int epoch, double loss, double learningRate, double tokensPerSecond,
                               double etaSeconds, Double validationLoss) {}
