/**
 * Gemma 3 configuration, weights, forward pass with KV cache, sampling, generation and random checkpoints.
 *
 * <p><b>Internal, may change</b> in any release without notice. Applications use the public API in {@link dev.peft4j.api}.
 */
package dev.peft4j.model;
