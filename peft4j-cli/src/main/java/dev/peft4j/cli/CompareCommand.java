package dev.peft4j.cli;

import dev.peft4j.eval.Reports;
import dev.peft4j.util.AtomicFiles;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.Callable;

@Command(name = "compare", mixinStandardHelpOptions = true,
        description = "Compare two results files (tuned vs. baseline): a Markdown table with the change, the five-subject MMLU "
                + "average and the MMLU sub-task breakdown.")
public final class CompareCommand implements Callable<Integer> {
    @Option(names = "--base", required = true, description = "baseline results JSON") Path base;
    @Option(names = "--tuned", required = true, description = "tuned results JSON") Path tuned;
    @Option(names = "--output", description = "also write the table to this Markdown file") Path output;

    @Override
    public Integer call() throws IOException {
        String table = Reports.compare(Reports.readResults(base, "--base"), Reports.readResults(tuned, "--tuned"));
        if (output != null) AtomicFiles.writeString(output, table);
        System.out.print(table);
        System.out.flush();
        return 0;
    }
}
