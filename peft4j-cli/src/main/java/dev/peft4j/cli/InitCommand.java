package dev.peft4j.cli;

import dev.peft4j.model.RandomInit;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.concurrent.Callable;

@Command(name = "init", mixinStandardHelpOptions = true,
        description = "Write a random-weight Gemma 3 checkpoint of any shape in the Hugging Face layout (for benchmarks and demos).")
public final class InitCommand implements Callable<Integer> {
    @Option(names = "--config", required = true, description = "config.json giving the shape (transformers v4 or v5 format)")
    Path config;
    @Option(names = "--random", description = "random weights (the only mode)", defaultValue = "true")
    boolean random;
    @Option(names = "--seed", defaultValue = "0", description = "random seed (default ${DEFAULT-VALUE})")
    long seed;
    @Option(names = "--dtype", defaultValue = "bf16", description = "bf16 or f32 (default ${DEFAULT-VALUE})")
    String dtype;
    @Option(names = "--norm-std", defaultValue = "0", description = "std of the norm weights w of (1+w); 0 = transformers' init (default ${DEFAULT-VALUE})")
    double normStd;
    @Option(names = "--tokenizer", description = "directory with tokenizer.json (and tokenizer_config.json) to copy into the output")
    Path tokenizer;
    @Option(names = "--output", required = true, description = "output directory")
    Path output;

    @Override
    public Integer call() throws Exception {
        if (!dtype.equals("bf16") && !dtype.equals("f32")) throw new UserException("--dtype: expected bf16 or f32, got '" + dtype + "'");
        if (!Files.isRegularFile(config)) throw new UserException(config + ": config file not found");
        if (Files.exists(output) && !Files.isDirectory(output)) throw new UserException("--output: " + output + " is a file, expected a directory");
        long t0 = System.nanoTime();
        RandomInit.write(config, output, seed, dtype.equals("bf16"), normStd);
        if (tokenizer != null) {
            for (String f : new String[]{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model"}) {
                Path src = tokenizer.resolve(f);
                if (Files.isRegularFile(src)) Files.copy(src, output.resolve(f), StandardCopyOption.REPLACE_EXISTING);
            }
            if (!Files.isRegularFile(output.resolve("tokenizer.json"))) throw new UserException(tokenizer + ": no tokenizer.json there");
        }
        System.out.printf("wrote %s (%s, seed %d) in %.1f s%n", output, dtype, seed, (System.nanoTime() - t0) / 1e9);
        return 0;
    }
}
