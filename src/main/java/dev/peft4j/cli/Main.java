package dev.peft4j.cli;

import dev.peft4j.util.UserException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.PrintWriter;

/** Entry point of the {@code peft4j} command line. Subcommands live in this package, one class each. */
@Command(name = "peft4j", mixinStandardHelpOptions = true, version = "peft4j 0.1.0",
        description = "Run, fine-tune (prompt tuning, LoRA, full) and evaluate Gemma 3 models on the JVM.",
        subcommands = {
                CommandLine.HelpCommand.class,
                GenerateCommand.class,
                ForwardCommand.class,
                InitCommand.class,
                BenchCommand.class,
                DownloadCommand.class,
                TrainCommand.class,
                QuickstartCommand.class,
                EvalCommand.class,
                CompareCommand.class,
                CardCommand.class,
        })
public final class Main {

    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the CLI and returns the exit code (used by tests too). */
    public static int run(String... args) {
        CommandLine cl = commandLine();
        return cl.execute(args);
    }

    public static CommandLine commandLine() {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            Throwable t = ex;
            while (t != null && !(t instanceof UserException) && t.getCause() != null && t.getCause() != t) {
                if (t instanceof UserException) break;
                t = t.getCause();
            }
            PrintWriter err = cmd.getErr();
            if (t instanceof UserException) {
                err.println("error: " + t.getMessage());
                err.flush();
                return 2;
            }
            ex.printStackTrace(err);
            err.flush();
            return 1;
        });
        return cl;
    }
}
