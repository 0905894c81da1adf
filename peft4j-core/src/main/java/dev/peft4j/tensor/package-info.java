/**
 * Vector API kernels (matrix products over F32/BF16/F16 weights, norms, RoPE, activations) and the kernel thread pool.
 *
 * <p><b>Internal, may change</b> in any release without notice. Applications use the public API in {@link dev.peft4j.api}.
 */
package dev.peft4j.tensor;
