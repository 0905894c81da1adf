package dev.peft4j.train;

import dev.peft4j.model.Gemma3Model;
import dev.peft4j.util.AtomicFiles;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;

/**
 * {@code --teacher-cache DIR}: the teacher's top-k log-probabilities (plus the log of the remaining mass) at every labelled
 * position of a training example, so later epochs and later runs skip the teacher.
 *
 * <p>Layout: {@code DIR/<teacher key>/<aa>/<example key>.bin}. The teacher key is a SHA-256 of the teacher's config.json, the
 * name, size, safetensors header and the first and last 64 KiB of each weight file, the temperature, k and the cache format;
 * the example key a SHA-256 of its token ids and labels. Each file is written atomically (temporary name, fsync, rename): a
 * killed run leaves complete entries only. Entry: magic "P4KD", version, M (labelled positions), k, then ids [M·k] (int32),
 * log-probabilities [M·k] (float32), rest log-masses [M] (float32), little-endian.
 */
public final class TeacherCache {
    private static final int MAGIC = 0x4434_4B50, VERSION = 1;   // "P4KD"
    private final Path dir;
    private final int k;

    private TeacherCache(Path dir, int k) {
        this.dir = dir;
        this.k = k;
    }

    /** The cache folder of this teacher, temperature and k under {@code root} (created). */
    public static TeacherCache open(Path root, Gemma3Model teacher, double temperature, int k) {
        try {
            MessageDigest d = MessageDigest.getInstance("SHA-256");
            d.update(("peft4j-teacher-cache v" + VERSION + " T=" + Double.toString(temperature) + " k=" + k + "\n").getBytes());
            Path cfg = teacher.dir.resolve("config.json");
            if (Files.isRegularFile(cfg)) d.update(Files.readAllBytes(cfg));
            List<Path> files;
            try (Stream<Path> s = Files.list(teacher.dir)) {
                files = s.filter(p -> p.getFileName().toString().endsWith(".safetensors")).sorted().toList();
            }
            for (Path f : files) {
                d.update(f.getFileName().toString().getBytes());
                try (FileChannel ch = FileChannel.open(f, StandardOpenOption.READ)) {
                    long size = ch.size();
                    d.update(ByteBuffer.allocate(8).putLong(0, size));
                    ByteBuffer head = ByteBuffer.allocate((int) Math.min(size, 8));
                    ch.read(head, 0);
                    long hdr = size >= 8 ? head.order(ByteOrder.LITTLE_ENDIAN).getLong(0) : 0;
                    long first = Math.min(size, 8 + Math.max(0, Math.min(hdr, 100L << 20)) + 65536);
                    d.update(read(ch, 0, first));
                    d.update(read(ch, Math.max(0, size - 65536), size));
                }
            }
            String key = HexFormat.of().formatHex(d.digest()).substring(0, 24);
            Path folder = root.resolve(key);
            Files.createDirectories(folder);
            Path about = folder.resolve("teacher.json");
            if (!Files.exists(about)) {
                AtomicFiles.writeString(about, "{\"teacher\": \"" + teacher.dir.toString().replace("\\", "\\\\").replace("\"", "\\\"")
                        + "\", \"temperature\": " + temperature + ", \"top_k\": " + k + "}\n");
            }
            return new TeacherCache(folder, k);
        } catch (IOException e) {
            throw new UncheckedIOException("--teacher-cache " + root + ": " + e.getMessage(), e);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static byte[] read(FileChannel ch, long from, long to) throws IOException {
        ByteBuffer b = ByteBuffer.allocate((int) (to - from));
        while (b.hasRemaining()) if (ch.read(b, from + b.position()) < 0) break;
        return b.array();
    }

    /** The folder of this teacher's entries. */
    public Path folder() { return dir; }

    private Path file(int[] ids, int[] labels) {
        try {
            MessageDigest d = MessageDigest.getInstance("SHA-256");
            ByteBuffer b = ByteBuffer.allocate(8 + 8 * ids.length);
            b.putInt(ids.length).putInt(labels.length);
            for (int i : ids) b.putInt(i);
            for (int l : labels) b.putInt(l);
            String h = HexFormat.of().formatHex(d.digest(b.array()));
            return dir.resolve(h.substring(0, 2)).resolve(h + ".bin");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The cached top-k of an example with {@code m} labelled positions, or null when absent (or unreadable: recomputed). */
    public KdLoss.SparseTeacher get(int[] ids, int[] labels, int m) {
        Path f = file(ids, labels);
        if (!Files.isRegularFile(f)) return null;
        try (InputStream in = Files.newInputStream(f)) {
            ByteBuffer b = ByteBuffer.wrap(in.readAllBytes()).order(ByteOrder.LITTLE_ENDIAN);
            if (b.remaining() < 16 || b.getInt() != MAGIC || b.getInt() != VERSION) return null;
            int mm = b.getInt(), kk = b.getInt();
            if (mm != m || kk != k || b.remaining() != (long) mm * kk * 8 + mm * 4L) return null;
            int[] idx = new int[mm * kk];
            float[] lp = new float[mm * kk], rest = new float[mm];
            b.asIntBuffer().get(idx);
            b.position(b.position() + idx.length * 4);
            b.asFloatBuffer().get(lp);
            b.position(b.position() + lp.length * 4);
            b.asFloatBuffer().get(rest);
            return new KdLoss.SparseTeacher(kk, idx, lp, rest);
        } catch (IOException e) {
            return null;
        }
    }

    /** Stores an example's top-k atomically. */
    public void put(int[] ids, int[] labels, KdLoss.SparseTeacher t) {
        int m = t.restLogMass().length;
        ByteBuffer b = ByteBuffer.allocate(16 + m * t.k() * 8 + m * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(MAGIC).putInt(VERSION).putInt(m).putInt(t.k());
        for (int i : t.ids()) b.putInt(i);
        for (float v : t.logProbs()) b.putFloat(v);
        for (float v : t.restLogMass()) b.putFloat(v);
        AtomicFiles.write(file(ids, labels), b.array());
    }
}
