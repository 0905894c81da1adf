package dev.peft4j;

import org.junit.jupiter.api.Assumptions;

import java.nio.file.Files;
import java.nio.file.Path;

/** Access to {@code ../shared} (developers' and CI's reference material). Tests that need it skip, with a printed reason, when absent. */
public final class Shared {
    private Shared() {}

    public static final Path ROOT = Path.of(System.getProperty("peft4j.shared", "../shared")).toAbsolutePath().normalize();

    /** Returns {@code ROOT.resolve(rel)}, or skips the calling test (printing why) when it does not exist. */
    public static Path require(String rel) {
        Path p = ROOT.resolve(rel);
        if (!Files.exists(p)) {
            String why = "skipped: " + p + " not found (../shared is only present for developers and CI)";
            System.out.println(why);
            Assumptions.assumeTrue(false, why);
        }
        return p;
    }
}
