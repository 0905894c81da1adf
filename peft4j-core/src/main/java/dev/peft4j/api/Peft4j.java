package dev.peft4j.api;

import dev.peft4j.data.QuickstartAssets;
import dev.peft4j.model.RandomInit;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * The entry point: load a model ({@link #load}), then generate, chat, score or evaluate with it ({@link Model}); fine-tune with
 * {@link Training}. See the package documentation for a ten-minute tour.
 */
public final class Peft4j {
    private Peft4j() {}

    /**
     * Loads a model with {@link LoadOptions#defaults()}.
     *
     * @param model a Hugging Face model directory, or a Hub repo id such as {@code google/gemma-3-270m} (looked up in the
     *              Hugging Face cache, downloaded when missing; {@code HF_TOKEN} for gated models)
     * @return the model; close it to release the mapped weight files
     * @throws Peft4jException when the directory, a file in it, or the repo id is not usable
     */
    public static Model load(String model) { return load(model, LoadOptions.defaults()); }

    /**
     * Loads a model with an optional PEFT adapter and options.
     *
     * @param model   a Hugging Face model directory or a Hub repo id
     * @param options adapter, merge, weight dtype, threads, tokenizer, quantization
     * @return the model; close it to release the mapped weight files
     * @throws Peft4jException when the model, adapter or an option is not usable
     */
    public static Model load(String model, LoadOptions options) { return Model.load(model, options); }

    /**
     * Loads a model directory.
     *
     * @param dir     a Hugging Face model directory
     * @param options adapter, merge, weight dtype, threads, tokenizer, quantization
     * @return the model
     */
    public static Model load(Path dir, LoadOptions options) { return Model.load(dir.toString(), options); }

    /**
     * Writes the quickstart's small random Gemma 3 (4 layers, hidden 128, the bundled 1,024-token tokenizer) in the Hugging
     * Face layout: a model to try the API on without a download (it says nothing sensible until trained).
     *
     * @param dir  the directory to create (or fill)
     * @param seed seed of the random weights
     * @return {@code dir}
     */
    public static Path createQuickstartModel(Path dir, long seed) {
        return Guard.call(() -> {
            Path assets = Files.createTempDirectory("peft4j-assets");
            try {
                Path cfg = assets.resolve("model-config.json");
                try (InputStream in = Peft4j.class.getResourceAsStream("/quickstart/model-config.json")) {
                    Files.copy(in, cfg, StandardCopyOption.REPLACE_EXISTING);
                }
                RandomInit.write(cfg, dir, seed, false, 0);
                Path tok = QuickstartAssets.copyTo(assets.resolve("q")).resolve("tokenizer");
                for (String f : new String[]{"tokenizer.json", "tokenizer_config.json"}) {
                    Files.copy(tok.resolve(f), dir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
                }
            } finally {
                dev.peft4j.util.AtomicFiles.deleteTree(assets);
            }
            return dir;
        });
    }

    /**
     * Writes the quickstart's 76 Dolly-format instruction records (written for this project) as JSON Lines: training data
     * for {@link Training} without a download.
     *
     * @param file the {@code .jsonl} file to write
     * @return {@code file}
     */
    public static Path writeQuickstartData(Path file) {
        return Guard.call(() -> {
            dev.peft4j.util.AtomicFiles.write(file, QuickstartAssets.resource(QuickstartAssets.DATA));
            return file;
        });
    }
}
