package dev.peft4j.peft;

import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Saves adapters exactly as PEFT's save_pretrained does: adapter_config.json + adapter_model.safetensors (float32). */
public final class AdapterWriter {
    private AdapterWriter() {}

    public static void promptTuning(Path dir, PromptTuningConfig cfg, float[] prompt, int hidden) {
        cfg.write(dir);
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        e.put(AdapterKeys.PROMPT_EMBEDDINGS, SafeTensors.Entry.f32(prompt, prompt.length / hidden, hidden));
        write(dir, e);
    }

    /** P-tuning: PEFT saves the prompt encoder's OUTPUTS [n, token_dim] as {@code prompt_embeddings} (no encoder weights). */
    public static void promptEncoder(Path dir, PromptEncoderConfig cfg, float[] encoderOutputs, int hidden) {
        cfg.write(dir);
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        e.put(AdapterKeys.PROMPT_EMBEDDINGS, SafeTensors.Entry.f32(encoderOutputs, encoderOutputs.length / hidden, hidden));
        write(dir, e);
    }

    /** Writes the LoRA factors of every adapted module; {@code target_modules} is saved as PEFT saves it (resolved names). */
    public static void lora(Path dir, LoraConfig cfg, Gemma3Model model) {
        List<String> names = model.weights.linears().stream().map(l -> l.name).toList();
        cfg.withResolvedTargets(names).write(dir);
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        for (Linear l : model.weights.linears()) {
            if (l.lora == null) continue;
            e.put(AdapterKeys.loraA(l.name), SafeTensors.Entry.f32(l.lora.a.array(), l.lora.r, l.in()));
            e.put(AdapterKeys.loraB(l.name), SafeTensors.Entry.f32(l.lora.b.array(), l.out(), l.lora.r));
        }
        write(dir, e);
    }

    /**
     * Writes the {@code ia3_l} vector of every adapted module ([out, 1], or [1, in] for feed-forward modules); the config
     * is saved as PEFT saves it (default / all-linear targets resolved).
     */
    public static void ia3(Path dir, IA3Config cfg, Gemma3Model model) {
        List<String> names = model.weights.linears().stream().map(l -> l.name).toList();
        cfg.withResolvedTargets(names).write(dir);
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        for (Linear l : model.weights.linears()) {
            if (l.ia3 == null) continue;
            long[] shape = l.ia3.feedforward ? new long[]{1, l.in()} : new long[]{l.out(), 1};
            e.put(AdapterKeys.ia3(l.name), SafeTensors.Entry.f32(l.ia3.l, shape));
        }
        write(dir, e);
    }

    private static void write(Path dir, Map<String, SafeTensors.Entry> e) {
        try {
            SafeTensors.write(dir.resolve(AdapterConfig.WEIGHTS_NAME), e, null);
        } catch (IOException ex) {
            throw new UncheckedIOException(ex);
        }
    }
}
