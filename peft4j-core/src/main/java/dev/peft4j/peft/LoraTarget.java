package dev.peft4j.peft;

/** One LoRA-adapted linear layer: module name (e.g. {@code model.layers.0.self_attn.q_proj}), rank, alpha and scaling. */
public record LoraTarget(String moduleName, int r, double alpha, double scaling) {}
