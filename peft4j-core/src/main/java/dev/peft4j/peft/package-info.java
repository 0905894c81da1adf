/**
 * PEFT adapter configurations, LoRA/(IA)3 target matching, initialisation, adapter loading and writing.
 *
 * <p><b>Internal, may change</b> in any release without notice. Applications use the public API in {@link dev.peft4j.api}.
 */
package dev.peft4j.peft;
