/**
 * {@code peft4j experiment}: recipes (YAML), the resumable plan of training and evaluation runs, the duration estimate, and
 * the comparison report (REPORT.md, results.json, charts, model cards).
 *
 * <p><b>Internal, may change</b> in any release without notice. Applications use the public API in {@link dev.peft4j.api}.
 */
package dev.peft4j.experiment;
