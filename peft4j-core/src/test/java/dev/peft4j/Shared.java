package dev.peft4j;

import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.URL;
import java.nio.file.FileSystem;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Map;
import java.util.stream.Stream;

/**
 * Reference material for tests. The small part (the reference fixtures computed by transformers + PEFT, and the real model
 * configs, about 5 MB) is bundled in the test resources under {@code shared/}, so a fresh clone runs every parity test.
 * The large part (the 33 MB real Gemma 3 tokenizer in {@code tokenizers/}, the benchmark datasets in {@code data/}) lives
 * outside the repository, in the folder named by the system property {@code peft4j.shared} (the build sets it from the
 * environment variable {@code PEFT4J_SHARED}, else to {@code ../shared} beside the checkout); tests that need it skip and say
 * what is missing and how to point them at it.
 */
public final class Shared {
    private Shared() {}

    /** The external folder: {@code -Dpeft4j.shared}, else {@code $PEFT4J_SHARED}, else {@code ../shared}. */
    public static final Path ROOT = Path.of(externalRoot()).toAbsolutePath().normalize();

    /** Top-level folders of the bundled copy (test resources {@code shared/}). */
    private static final String[] BUNDLED = {"fixtures", "configs"};

    private static String externalRoot() {
        String p = System.getProperty("peft4j.shared");
        if (p == null || p.isBlank()) p = System.getenv("PEFT4J_SHARED");
        return p == null || p.isBlank() ? "../shared" : p;
    }

    /**
     * The file or folder {@code rel} ({@code "fixtures/tiny-gemma3"}, {@code "tokenizers/gemma3"}, {@code "data"}): the bundled
     * copy for fixtures and configs, else {@code ROOT.resolve(rel)}; skips the calling test (printing why) when it does not exist.
     */
    public static Path require(String rel) {
        Path bundled = bundled(rel);
        if (bundled != null) return bundled;
        Path p = ROOT.resolve(rel);
        if (!Files.exists(p)) {
            String why = "skipped: needs " + describe(rel) + ", which is not in the repository; looked for " + p
                    + ". Point the tests at a folder that holds " + rel + " with `mvn test -Dpeft4j.shared=DIR` or the environment"
                    + " variable PEFT4J_SHARED=DIR (default: ../shared beside the checkout).";
            System.out.println(why);
            Assumptions.assumeTrue(false, why);
        }
        return p;
    }

    /**
     * A top-level test resource of the core module ({@code "tiny-gemma3-config.json"}) as a file. Other modules see the core's
     * test resources in its test jar when the build runs {@code install}, where a resource has no path: it is then copied out
     * to a temporary file.
     */
    public static Path resource(String name) {
        URL u = Shared.class.getResource("/" + name);
        if (u == null) throw new IllegalStateException("test resource " + name + " is missing from the class path (peft4j-core's test resources)");
        try {
            URI uri = u.toURI();
            if (uri.getScheme().equals("file")) return Path.of(uri);
            Path tmp = Files.createTempFile("peft4j-", "-" + name);
            tmp.toFile().deleteOnExit();
            try (InputStream in = u.openStream()) { Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING); }
            return tmp;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (java.net.URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String describe(String rel) {
        if (rel.startsWith("tokenizers/gemma3")) return "the real Gemma 3 tokenizer (tokenizer.json + tokenizer_config.json, 33 MB)";
        if (rel.equals("data")) return "the benchmark datasets folder data/ (MMLU CSVs, HellaSwag, a Dolly sample, 19 MB)";
        if (rel.startsWith("data/")) return "the dataset file " + rel + " (from the benchmark datasets folder data/)";
        return rel;
    }

    private static Path bundledRoot;

    /** The bundled copy of {@code rel}, or null when {@code rel} is not in a bundled folder or not in the bundle. */
    private static synchronized Path bundled(String rel) {
        boolean inBundle = false;
        for (String b : BUNDLED) if (rel.equals(b) || rel.startsWith(b + "/")) inBundle = true;
        if (!inBundle) return null;
        if (bundledRoot == null) bundledRoot = locateBundle();
        Path p = bundledRoot.resolve(rel);
        return Files.exists(p) ? p : null;
    }

    /** The test-resources folder {@code shared/}; when it is inside a jar (core's test-jar), a copy extracted to a temp folder. */
    private static Path locateBundle() {
        URL u = Shared.class.getResource("/shared/fixtures/README.md");
        if (u == null) throw new IllegalStateException("test resources shared/fixtures are missing from the class path");
        try {
            URI uri = u.toURI();
            if (uri.getScheme().equals("file")) return Path.of(uri).getParent().getParent();
            Path tmp = Files.createTempDirectory("peft4j-shared");
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                try (Stream<Path> w = Files.walk(tmp)) {
                    for (Path q : w.sorted(java.util.Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
                } catch (IOException ignored) {
                    // a temp folder left behind
                }
            }));
            try (FileSystem fs = FileSystems.newFileSystem(uri, Map.of())) {
                Path src = fs.getPath("/shared");
                try (Stream<Path> w = Files.walk(src)) {
                    for (Path s : w.toList()) {
                        Path d = tmp.resolve(src.relativize(s).toString());
                        if (Files.isDirectory(s)) Files.createDirectories(d);
                        else try (InputStream in = Files.newInputStream(s)) { Files.copy(in, d, StandardCopyOption.REPLACE_EXISTING); }
                    }
                }
            }
            return tmp;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (java.net.URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }
}
