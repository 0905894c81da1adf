package dev.peft4j.serve;

import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.KVCache;
import dev.peft4j.model.SeqAdapter;
import dev.peft4j.peft.Adapters;
import dev.peft4j.util.UserException;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The adapters a server holds over its one base model, by name. Every PEFT type peft4j loads is kept apart from the base
 * (prompt tuning / P-tuning: virtual-token vectors; prefix tuning: a prefilled cache each sequence copies; LoRA and IA3: a
 * {@link SeqAdapter} applied to the rows of the sequences that use it), so the base weights are mapped once and never
 * copied. Thread-safe: adapters can be added and removed while requests run; a running sequence keeps the adapter it started
 * with until it ends.
 */
public final class AdapterRegistry {
    /** One loaded adapter. */
    public record Entry(String name, Path dir, String peftType, float[] virtualTokens, KVCache prefix, SeqAdapter perSequence, long created) {
        public int virtualCount(int hidden) { return virtualTokens == null ? 0 : virtualTokens.length / hidden; }
        public int prefixLength() { return prefix == null ? 0 : prefix.length(); }
    }

    private final Gemma3Model model;
    private final Map<String, Entry> byName = new ConcurrentHashMap<>();
    private final List<String> order = new ArrayList<>();

    public AdapterRegistry(Gemma3Model model) { this.model = model; }

    /** Loads {@code dir} under {@code name}; a name in use is refused (unload it first). */
    public Entry load(String name, Path dir) {
        if (name == null || name.isBlank()) throw new ServeException(ServeException.Kind.BAD_REQUEST, "lora_name", "adapter name must not be empty");
        if (!Files.isDirectory(dir)) throw new ServeException(ServeException.Kind.BAD_REQUEST, "lora_path", dir + ": adapter directory not found");
        Adapters.Loaded a;
        try {
            a = Adapters.load(model, dir);
        } catch (UserException | IllegalArgumentException e) {
            throw new ServeException(ServeException.Kind.BAD_REQUEST, "lora_path", e.getMessage());
        }
        Entry e = new Entry(name, dir, String.valueOf(a.config().peftType()), a.virtualTokens(), a.prefix(), a.perSequence(), System.currentTimeMillis() / 1000);
        synchronized (order) {
            if (byName.putIfAbsent(name, e) != null) {
                throw new ServeException(ServeException.Kind.BAD_REQUEST, "lora_name", "an adapter named '" + name + "' is already loaded");
            }
            order.add(name);
        }
        return e;
    }

    /** Removes an adapter; running sequences that use it finish with it. */
    public Entry unload(String name) {
        synchronized (order) {
            Entry e = byName.remove(name);
            if (e == null) throw new ServeException(ServeException.Kind.NOT_FOUND, "lora_name", "no adapter named '" + name + "' is loaded");
            order.remove(name);
            return e;
        }
    }

    public Entry get(String name) { return byName.get(name); }

    /** Loaded adapters in load order. */
    public List<Entry> list() {
        synchronized (order) {
            return order.stream().map(byName::get).toList();
        }
    }
}
