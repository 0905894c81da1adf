/**
 * Hugging Face tokenizer.json through DJL, Gemma's chat template, the quickstart tokenizer builder.
 *
 * <p><b>Internal, may change</b> in any release without notice. Applications use the public API in {@link dev.peft4j.api}.
 */
package dev.peft4j.tokenizer;
