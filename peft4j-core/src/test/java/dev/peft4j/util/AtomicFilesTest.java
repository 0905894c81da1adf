package dev.peft4j.util;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

class AtomicFilesTest {
    @TempDir Path dir;

    long entries() throws IOException {
        try (Stream<Path> s = Files.list(dir)) { return s.count(); }
    }

    @Test
    void writesAndReplacesFilesLeavingNoTemporaries() throws IOException {
        Path f = dir.resolve("sub/a.txt");
        AtomicFiles.writeString(f, "one");
        AtomicFiles.writeString(f, "two");
        assertEquals("two", Files.readString(f));
        try (Stream<Path> s = Files.list(f.getParent())) { assertEquals(1, s.count()); }
        AtomicFiles.write(f, out -> { out.write('x'); out.close(); out.write('y'); }); // closing early is harmless
        assertEquals("xy", Files.readString(f));
    }

    @Test
    void aFailingWriterKeepsTheOldFile() throws IOException {
        Path f = dir.resolve("a.txt");
        AtomicFiles.writeString(f, "old");
        assertThrows(UncheckedIOException.class, () -> AtomicFiles.write(f, out -> { out.write(1); throw new IOException("disk full"); }));
        assertEquals("old", Files.readString(f));
        assertEquals(1, entries());
    }

    @Test
    void directoriesAppearComplete() throws IOException {
        Path d = dir.resolve("ckpt");
        AtomicFiles.writeDirectory(d, tmp -> {
            assertFalse(Files.exists(d), "target must not exist while being filled");
            Files.writeString(tmp.resolve("a"), "1");
            Files.createDirectories(tmp.resolve("sub"));
            Files.writeString(tmp.resolve("sub/b"), "2");
        });
        assertEquals("2", Files.readString(d.resolve("sub/b")));
        AtomicFiles.writeDirectory(d, tmp -> Files.writeString(tmp.resolve("c"), "3"));
        assertFalse(Files.exists(d.resolve("a")), "replaced, not merged");
        assertEquals("3", Files.readString(d.resolve("c")));
        assertThrows(UncheckedIOException.class, () -> AtomicFiles.writeDirectory(d, tmp -> { throw new IOException("boom"); }));
        assertEquals("3", Files.readString(d.resolve("c")));
        assertEquals(1, entries(), "no temporary or old directories left");
    }

    @Test
    void aDirectoryIsNotOverwrittenByAFile() throws IOException {
        Files.createDirectories(dir.resolve("d"));
        UserException e = assertThrows(UserException.class, () -> AtomicFiles.writeString(dir.resolve("d"), "x"));
        assertTrue(e.getMessage().contains("is a directory"), e.getMessage());
        assertTrue(Files.isDirectory(dir.resolve("d")));
    }
}
