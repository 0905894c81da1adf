package dev.peft4j.model;

import dev.peft4j.peft.Adapters;
import dev.peft4j.util.UserException;

import java.nio.file.Files;
import java.nio.file.Path;

/** Loading a model directory (and optionally a PEFT adapter) as a {@link CausalLM}. */
public final class Models {
    private Models() {}

    /**
     * A local directory for {@code --model}/{@code --adapter}: an existing path as it is, or a Hub repo id
     * ({@code google/gemma-3-270m[@revision]}) from the Hugging Face cache, downloading it when allowed.
     */
    public static Path resolve(Path ref, String what) {
        if (ref == null) throw new UserException(what + ": no directory given");
        if (Files.exists(ref)) return checkDir(ref, what);
        String s = ref.toString();
        if (s.matches("[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[^/]+)?") && !s.startsWith(".")) {
            try {
                return checkDir(dev.peft4j.hub.HubResolver.resolve(s), what);
            } catch (UserException e) {   // a mistyped local path looks like a repo id too: say both
                throw new UserException(ref + ": no such " + what + " directory here, and as a Hugging Face repo id: " + e.getMessage());
            }
        }
        throw new UserException(ref + ": " + what + " directory not found");
    }

    public static Path checkDir(Path dir, String what) {
        if (dir == null) throw new UserException(what + ": no directory given");
        if (!Files.exists(dir)) throw new UserException(dir + ": " + what + " directory not found");
        if (!Files.isDirectory(dir)) throw new UserException(dir + ": is a file, expected the " + what + " directory");
        return dir;
    }

    public static Gemma3LM load(Path modelDir, Path adapterDir) {
        return load(modelDir, adapterDir, false);
    }

    /** Loads the model; a LoRA adapter is applied unmerged, or merged into float32 copies of the weights when {@code merge}. */
    public static Gemma3LM load(Path modelDir, Path adapterDir, boolean merge) {
        return load(modelDir, adapterDir, merge, Quantization.NONE);
    }

    /**
     * As {@link #load(Path, Path, boolean)}, with the base weights quantized at load time when {@code quant} is Q8 (off-heap,
     * never on the Java heap; norms and adapters stay float32). A merged adapter is folded in before quantizing.
     */
    public static Gemma3LM load(Path modelDir, Path adapterDir, boolean merge, Quantization quant) {
        Gemma3Model m = Gemma3Model.load(resolve(modelDir, "model"));
        if (adapterDir == null) {
            if (quant == Quantization.Q8) m.weights.quantizeQ8();
            return new Gemma3LM(m, null);
        }
        Adapters.Applied a = Adapters.apply(m, resolve(adapterDir, "adapter"), merge);
        if (quant == Quantization.Q8) m.weights.quantizeQ8();
        return new Gemma3LM(m, a.virtualTokens(), a.prefix());
    }
}
