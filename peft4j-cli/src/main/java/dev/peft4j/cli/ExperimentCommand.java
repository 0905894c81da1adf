package dev.peft4j.cli;

import dev.peft4j.experiment.Experiment;
import dev.peft4j.experiment.Recipe;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;

/** {@code peft4j experiment RECIPE.yaml}: the whole strategy comparison of a recipe, resumable (see {@link Experiment}). */
@Command(name = "experiment", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Run a recipe: train every run that is not finished (a killed run resumes), evaluate the base and each run",
                "(results cached), and write REPORT.md, results.json, the charts and each run's model card. See recipes/."})
public final class ExperimentCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "RECIPE.yaml", description = "the recipe (e.g. recipes/quickstart.yaml)") Path recipe;
    @Option(names = "--output", description = "experiment folder (default: experiments/<recipe name>)") Path output;
    @Option(names = "--rerun", split = ",", paramLabel = "NAME", description = "train these finished runs again (e.g. after changing their recipe entry)") List<String> rerun;
    @Option(names = "--dry-run", description = "print the plan and an estimated duration (from measured throughput), run nothing") boolean dryRun;
    @Option(names = "--no-estimate", description = "skip the throughput measurement of the estimate") boolean noEstimate;

    @Override
    public Integer call() throws Exception {
        Recipe r = Recipe.load(recipe);
        new Experiment(r, new Experiment.Options(output, rerun == null ? Set.of() : Set.copyOf(rerun), dryRun, !noEstimate, System.out)).run();
        return 0;
    }
}
