package dev.peft4j.cli;

import dev.peft4j.model.CheckpointWriter;
import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Models;
import dev.peft4j.model.Quantization;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/** Writes a q8 checkpoint (see {@link CheckpointWriter#saveQ8}): the weights quantized once, loaded later without re-quantizing. */
@Command(name = "quantize", mixinStandardHelpOptions = true,
        description = {"Store a model with 8-bit weights (llama.cpp's Q8_0: blocks of 32 weights of a row, one fp16 scale each)",
                "for every linear and the embedding/output head; norms stay float32. The result loads with --model in every command."})
public final class QuantizeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "model directory (Hugging Face layout) or Hub repo id") Path model;
    @Option(names = "--output", required = true, description = "output directory (new or empty)") Path output;
    @Option(names = "--format", defaultValue = "q8", description = "q8 (the only format; default ${DEFAULT-VALUE})") String format;

    @Override
    public Integer call() throws Exception {
        if (Quantization.parse(format) != Quantization.Q8) throw new UserException("--format: expected q8, got '" + format + "'");
        Path dir = Models.resolve(model, "model");
        if (Files.exists(output)) {
            if (!Files.isDirectory(output)) throw new UserException("--output: " + output + " is a file, expected a new or empty directory");
            try (var ls = Files.list(output)) {
                if (ls.findAny().isPresent()) throw new UserException("--output: " + output + " is not empty (give a new or empty directory)");
            }
        }
        if (dir.toAbsolutePath().normalize().equals(output.toAbsolutePath().normalize())) throw new UserException("--output: must differ from --model");
        long t0 = System.nanoTime();
        Gemma3Model m = Gemma3Model.load(dir);
        long before = m.weights.weightBytes();
        System.err.println("quantizing " + dir + " (" + m.weights.embed.dtype + ", " + before / 1_000_000 + " MB of weights)...");
        m.weights.quantizeQ8();
        CheckpointWriter.saveQ8(m, output);
        long after = m.weights.weightBytes();
        m.weights.close();
        System.out.printf("wrote %s (q8_0, %d MB of weights, was %d MB) in %.1f s%n", output, after / 1_000_000, before / 1_000_000, (System.nanoTime() - t0) / 1e9);
        return 0;
    }
}
