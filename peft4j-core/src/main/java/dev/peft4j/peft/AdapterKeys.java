package dev.peft4j.peft;

/**
 * Tensor names of PEFT adapters. On disk ({@code adapter_model.safetensors}) the adapter name is removed:
 * {@code base_model.model.<module>.lora_A.weight}; in a live PEFT model it is present:
 * {@code base_model.model.<module>.lora_A.default.weight}. {@code <module>} is the name inside the CausalLM
 * (e.g. {@code model.layers.0.self_attn.q_proj}). Prompt tuning / p-tuning / prefix tuning save one tensor,
 * {@code prompt_embeddings}.
 */
public final class AdapterKeys {
    private AdapterKeys() {}

    /** {@code PeftModel} → {@code LoraModel} ({@code base_model}) → the CausalLM ({@code .model}). */
    public static final String PREFIX = "base_model.model.";
    public static final String DEFAULT_ADAPTER = "default";
    public static final String PROMPT_EMBEDDINGS = "prompt_embeddings";

    /** On-disk key of LoRA A ({@code [r, in]}). */
    public static String loraA(String module) { return PREFIX + module + ".lora_A.weight"; }

    /** On-disk key of LoRA B ({@code [out, r]}). */
    public static String loraB(String module) { return PREFIX + module + ".lora_B.weight"; }

    /** On-disk key of the DoRA magnitude vector ({@code [out]}). */
    public static String loraMagnitude(String module) { return PREFIX + module + ".lora_magnitude_vector"; }

    /** On-disk key of an IA3 vector. */
    public static String ia3(String module) { return PREFIX + module + ".ia3_l"; }

    /** In-memory (PEFT parameter) name: {@code ...lora_A.default.weight}. */
    public static String inMemory(String diskKey) { return inMemory(diskKey, DEFAULT_ADAPTER); }

    /** In-memory name with an adapter name inserted after lora_A / lora_B / lora_magnitude_vector / ia3_l. */
    public static String inMemory(String diskKey, String adapter) {
        for (String p : new String[] {".lora_A.", ".lora_B."}) {
            int i = diskKey.lastIndexOf(p);
            if (i >= 0) return diskKey.substring(0, i + p.length()) + adapter + "." + diskKey.substring(i + p.length());
        }
        if (diskKey.endsWith(".lora_magnitude_vector")) return diskKey + "." + adapter + ".weight";
        if (diskKey.endsWith(".ia3_l")) return diskKey + "." + adapter;
        return diskKey;
    }

    /** On-disk name of an in-memory name (PEFT removes {@code .<adapter>}; DoRA drops the trailing {@code .weight}). */
    public static String onDisk(String memKey, String adapter) {
        String m = memKey.replace(".lora_magnitude_vector." + adapter + ".weight", ".lora_magnitude_vector");
        return m.replace("." + adapter + ".", ".").replaceAll("\\." + java.util.regex.Pattern.quote(adapter) + "$", "");
    }

    public static String onDisk(String memKey) { return onDisk(memKey, DEFAULT_ADAPTER); }

    /** The module of a LoRA key (disk or memory form), e.g. {@code model.layers.0.self_attn.q_proj}; null if not a LoRA A/B key. */
    public static String loraModule(String key) {
        if (!key.startsWith(PREFIX)) return null;
        for (String p : new String[] {".lora_A.", ".lora_B."}) {
            int i = key.lastIndexOf(p);
            if (i >= 0) return key.substring(PREFIX.length(), i);
        }
        return null;
    }

    /** True for an A matrix key, false for B; throws if neither. */
    public static boolean isLoraA(String key) {
        if (key.contains(".lora_A.")) return true;
        if (key.contains(".lora_B.")) return false;
        throw new IllegalArgumentException("not a LoRA A/B key: " + key);
    }
}
