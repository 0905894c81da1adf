/**
 * Backward kernels, cross-entropy, AdamW, schedules, clipping, the training step and the Trainer loop.
 *
 * <p><b>Internal, may change</b> in any release without notice. Applications use the public API in {@link dev.peft4j.api}.
 */
package dev.peft4j.train;
