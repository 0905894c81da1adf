package dev.peft4j.util;

import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.stream.Stream;

/**
 * Writing files so that a crash never leaves a half-written one: write to a temporary name in the same directory,
 * fsync it, rename it over the target (atomic on POSIX file systems), then fsync the directory.
 *
 * <p>Whole directories (a checkpoint, an adapter) are filled under a temporary sibling name and renamed into place.
 * Replacing an existing directory takes two renames (old out of the way, new in), so a crash between them leaves the
 * new complete directory under its temporary name and the old one under {@code NAME.old-*}, never a mixture.
 */
public final class AtomicFiles {
    private AtomicFiles() {}

    private static final java.security.SecureRandom RANDOM = new java.security.SecureRandom();

    /** Writes the stream's content to {@code target} atomically. */
    public interface Writer { void write(OutputStream out) throws IOException; }

    /** Fills a directory. */
    public interface DirWriter { void fill(Path dir) throws IOException; }

    public static void write(Path target, Writer w) {
        if (Files.isDirectory(target)) throw new UserException(target + ": is a directory, expected a file name");
        Path dir = parentOf(target);
        Path tmp = null;
        try {
            Files.createDirectories(dir);
            tmp = dir.resolve("." + target.getFileName() + ".tmp-" + Long.toHexString(RANDOM.nextLong()));
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.WRITE, StandardOpenOption.CREATE_NEW)) {
                java.io.BufferedOutputStream buf = new java.io.BufferedOutputStream(java.nio.channels.Channels.newOutputStream(ch), 1 << 16) {
                    @Override public void close() throws IOException { flush(); } // the channel stays open until forced
                };
                w.write(buf);
                buf.flush();
                ch.force(true);
            }
            move(tmp, target);
            tmp = null;
            fsyncDir(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + target + ": " + e.getMessage(), e);
        } finally {
            if (tmp != null) try { Files.deleteIfExists(tmp); } catch (IOException ignored) {}
        }
    }

    public static void write(Path target, byte[] bytes) { write(target, out -> out.write(bytes)); }

    public static void writeString(Path target, String text) { write(target, text.getBytes(StandardCharsets.UTF_8)); }

    /**
     * Creates {@code target} as a directory filled by {@code w}: {@code w} fills a fresh temporary sibling directory,
     * every file in it is fsynced, and it is renamed to {@code target} (replacing an existing directory of that name).
     */
    public static void writeDirectory(Path target, DirWriter w) {
        Path parent = parentOf(target);
        Path tmp = null;
        try {
            Files.createDirectories(parent);
            tmp = Files.createDirectory(parent.resolve("." + target.getFileName() + ".tmp-" + Long.toHexString(RANDOM.nextLong())));
            w.fill(tmp);
            fsyncTree(tmp);
            if (Files.exists(target)) {
                Path old = parent.resolve("." + target.getFileName() + ".old-" + System.nanoTime());
                move(target, old);
                move(tmp, target);
                tmp = null;
                deleteTree(old);
            } else {
                move(tmp, target);
                tmp = null;
            }
            fsyncDir(parent);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write directory " + target + ": " + e.getMessage(), e);
        } finally {
            if (tmp != null) try { deleteTree(tmp); } catch (IOException ignored) {}
        }
    }

    private static Path parentOf(Path p) {
        Path parent = p.toAbsolutePath().getParent();
        return parent == null ? Path.of(".").toAbsolutePath() : parent;
    }

    private static void move(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    private static void fsyncTree(Path root) throws IOException {
        try (Stream<Path> s = Files.walk(root)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                if (Files.isRegularFile(p)) {
                    try (FileChannel ch = FileChannel.open(p, StandardOpenOption.WRITE)) { ch.force(true); }
                } else if (Files.isDirectory(p)) {
                    fsyncDir(p);
                }
            }
        }
    }

    /** Best effort: directories can be fsynced on Linux/macOS, not on Windows. */
    private static void fsyncDir(Path dir) {
        try (FileChannel ch = FileChannel.open(dir, StandardOpenOption.READ)) {
            ch.force(true);
        } catch (IOException | UnsupportedOperationException ignored) {
        }
    }

    /** Deletes a file or a directory with everything in it (symbolic links are removed, not followed); nothing if absent. */
    public static void deleteTree(Path root) throws IOException {
        if (!Files.exists(root)) return;
        Files.walkFileTree(root, new SimpleFileVisitor<>() {
            @Override public FileVisitResult visitFile(Path f, BasicFileAttributes a) throws IOException {
                Files.delete(f);
                return FileVisitResult.CONTINUE;
            }
            @Override public FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
                Files.delete(d);
                return FileVisitResult.CONTINUE;
            }
        });
    }
}
