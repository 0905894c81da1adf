package dev.peft4j.cli;

import dev.peft4j.util.UserException;
import picocli.CommandLine;
import picocli.CommandLine.Command;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryNotEmptyException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;

/** Entry point of the {@code peft4j} command line. Subcommands live in this package, one class each. */
@Command(name = "peft4j", mixinStandardHelpOptions = true, version = "peft4j 0.1.0",
        description = "Run, fine-tune (prompt tuning, P-tuning, LoRA, (IA)³, full) and evaluate Gemma 3 models on the JVM.",
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
                ServeCommand.class,
                BenchServeCommand.class,
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
        // a mistyped option or value: one line, like every other user mistake (picocli would print the whole usage)
        cl.setParameterExceptionHandler((ex, args) -> {
            PrintWriter err = ex.getCommandLine().getErr();
            if (args.length == 0) {   // plain "peft4j": the list of commands
                ex.getCommandLine().usage(err);
                err.flush();
                return 2;
            }
            String hint = ex instanceof CommandLine.UnmatchedArgumentException u && !u.getSuggestions().isEmpty()
                    ? "did you mean " + String.join(" or ", u.getSuggestions()) + "? " : "";
            err.println("error: " + ex.getMessage() + " (" + hint + "see '" + ex.getCommandLine().getCommandSpec().qualifiedName() + " --help')");
            err.flush();
            return 2;
        });
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            PrintWriter err = cmd.getErr();
            for (Throwable t = ex; t != null; t = t.getCause() == t ? null : t.getCause()) {
                if (t instanceof UserException) {
                    err.println("error: " + t.getMessage());
                    err.flush();
                    return 2;
                }
            }
            // input/output that failed (an output path that is a directory or a file, no permission, disk full): the
            // system's reason on one line; anything else is a bug and keeps its stack trace
            for (Throwable t = ex; t != null; t = t.getCause() == t ? null : t.getCause()) {
                if (t instanceof IOException || t instanceof UncheckedIOException) {
                    err.println("error: " + describe(t));
                    err.flush();
                    return 1;
                }
            }
            ex.printStackTrace(err);
            err.flush();
            return 1;
        });
        return cl;
    }

    /**
     * One line for an I/O failure: our own wrapper's message (e.g. AtomicFiles' "cannot write X: ..."), {@code path: reason}
     * for a file-system error, else the exception's message.
     */
    static String describe(Throwable t) {
        if (t instanceof UncheckedIOException u && u.getCause() != null) {
            String own = u.getMessage();
            return own != null && !own.equals(u.getCause().toString()) ? own : describe(u.getCause());
        }
        if (t instanceof FileSystemException fe) return describe(fe);
        return t.getMessage() != null ? t.getMessage() : t.getClass().getSimpleName();
    }

    /** {@code path: reason} for a file-system error, also for those the JDK gives without a reason. */
    static String describe(FileSystemException e) {
        String reason = e.getReason();
        if (reason == null) {
            reason = switch (e) {
                case FileAlreadyExistsException x -> "already exists";
                case NoSuchFileException x -> "not found";
                case NotDirectoryException x -> "not a directory";
                case DirectoryNotEmptyException x -> "directory not empty";
                case AccessDeniedException x -> "permission denied";
                default -> e.getClass().getSimpleName();
            };
        }
        return e.getFile() + (e.getOtherFile() != null ? " -> " + e.getOtherFile() : "") + ": " + reason;
    }
}
