package dev.peft4j.api;

/** Receives a {@link TrainingProgress} after every optimizer step, on the training thread (keep it quick). */
@FunctionalInterface
public interface TrainingListener {
    /**
     * Sets the step just finished.
     *
     * @param progress the step just finished
     */
    void onStep(TrainingProgress progress);
}
