/**
 * Atomic files, formatting, metrics and loss-curve writers, console progress, user errors.
 *
 * <p><b>Internal, may change</b> in any release without notice. Applications use the public API in {@link dev.peft4j.api}.
 */
package dev.peft4j.util;
