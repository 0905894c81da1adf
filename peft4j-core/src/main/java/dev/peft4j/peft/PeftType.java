package dev.peft4j.peft;

/** The PEFT methods whose adapter_config.json peft4j reads and writes (PEFT's {@code PeftType} string values). */
public enum PeftType {
    PROMPT_TUNING, P_TUNING, PREFIX_TUNING, LORA, IA3
}
