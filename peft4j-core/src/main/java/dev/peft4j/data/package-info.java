/**
 * Instruction datasets, templates, label masking, batching and resumable data order.
 *
 * <p><b>Internal, may change</b> in any release without notice. Applications use the public API in {@link dev.peft4j.api}.
 */
package dev.peft4j.data;
