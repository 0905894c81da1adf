package dev.peft4j.cli;

import dev.peft4j.eval.ModelCard;
import dev.peft4j.eval.Reports;
import dev.peft4j.util.AtomicFiles;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "card", mixinStandardHelpOptions = true,
        description = "Write an adapter's README.md: Hugging Face model-card metadata, usage, training details and the results table.")
public final class CardCommand implements Callable<Integer> {
    @Option(names = "--adapter", required = true, description = "PEFT adapter directory") Path adapter;
    @Option(names = "--base-results", required = true, description = "results JSON of the base model") Path baseResults;
    @Option(names = "--results", required = true, description = "results JSON of the model with the adapter") Path results;
    @Option(names = "--base-model", description = "Hub id of the base model (default: adapter_config.json's base_model_name_or_path)") String baseModel;
    @Option(names = "--output", description = "where to write (default: <adapter>/README.md)") Path output;

    @Override
    public Integer call() throws IOException {
        if (!Files.isDirectory(adapter)) throw new UserException("--adapter: " + adapter + " is not a directory");
        String card = ModelCard.render(adapter, Reports.readResults(baseResults, "--base-results"),
                Reports.readResults(results, "--results"), baseModel);
        Path out = output != null ? output : adapter.resolve("README.md");
        AtomicFiles.writeString(out, card);
        System.out.println("wrote " + out);
        return 0;
    }
}
