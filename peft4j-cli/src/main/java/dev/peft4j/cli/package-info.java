/**
 * The {@code peft4j} command line (picocli).
 *
 * <p><b>Internal, may change</b>: the commands and their flags are the interface, not these classes. Applications use the
 * public API in {@code dev.peft4j.api} (peft4j-core).
 */
package dev.peft4j.cli;
