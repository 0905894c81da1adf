package dev.peft4j.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.tensor.DType;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A memory-mapped safetensors file (format: u64 little-endian header length, JSON header, raw little-endian data).
 * Tensors are views of the mapping; nothing is copied to the heap until asked for. The mapping lives as long as the JVM
 * (shared arena, closed by {@link #close()}).
 */
public final class SafeTensors implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final ValueLayout.OfFloat LE_FLOAT = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** One tensor: its name, dtype, shape and bytes (a slice of the mapping). */
    public record Tensor(String name, DType dtype, long[] shape, MemorySegment data, Path file) {
        public long numel() {
            long n = 1;
            for (long s : shape) n *= s;
            return n;
        }

        public String shapeString() { return Arrays.toString(shape); }

        /** All elements as float32 (F32, BF16, F16, F64, integer types converted). */
        public float[] toFloats() {
            long n = numel();
            if (n > Integer.MAX_VALUE) throw new UserException(file + ": tensor " + name + " too large to copy to the heap");
            float[] out = new float[(int) n];
            switch (dtype) {
                case F32 -> MemorySegment.copy(data, LE_FLOAT, 0, out, 0, out.length);
                case BF16, F16 -> Matrix.mapped(1, out.length, dtype, data).rowsToFloat(0, 1, out, 0);
                case F64 -> { for (int i = 0; i < out.length; i++) out[i] = (float) data.get(ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 8L * i); }
                case I32 -> { for (int i = 0; i < out.length; i++) out[i] = data.get(LE_INT, 4L * i); }
                case I64 -> { for (int i = 0; i < out.length; i++) out[i] = data.get(LE_LONG, 8L * i); }
                default -> throw new UserException(file + ": tensor " + name + " has dtype " + dtype + ", expected a float type");
            }
            return out;
        }

        /** All elements as int (I32, I64, I16, U8; floats must be integral). */
        public int[] toInts() {
            int n = (int) numel();
            int[] out = new int[n];
            switch (dtype) {
                case I32 -> MemorySegment.copy(data, LE_INT, 0, out, 0, n);
                case I64 -> { for (int i = 0; i < n; i++) out[i] = Math.toIntExact(data.get(LE_LONG, 8L * i)); }
                case I16 -> { for (int i = 0; i < n; i++) out[i] = data.get(LE_SHORT, 2L * i); }
                case U8 -> { for (int i = 0; i < n; i++) out[i] = data.get(ValueLayout.JAVA_BYTE, i) & 0xff; }
                default -> throw new UserException(file + ": tensor " + name + " has dtype " + dtype + ", expected an integer type (I32 or I64)");
            }
            return out;
        }

        /** A 2-D view [rows, cols] for weights (F32/BF16/F16). 1-D tensors become [1, n]. */
        public Matrix matrix() {
            if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16) {
                throw new UserException(file + ": tensor " + name + " has dtype " + dtype + ", expected F32, BF16 or F16");
            }
            long rows = shape.length == 2 ? shape[0] : 1;
            long cols = shape.length == 2 ? shape[1] : numel();
            return Matrix.mapped((int) rows, (int) cols, dtype, data);
        }
    }

    private final Path file;
    private final Arena arena;
    private final Map<String, Tensor> tensors;
    private final Map<String, String> metadata;

    private SafeTensors(Path file, Arena arena, Map<String, Tensor> tensors, Map<String, String> metadata) {
        this.file = file;
        this.arena = arena;
        this.tensors = tensors;
        this.metadata = metadata;
    }

    /** Maps and validates a safetensors file. Every problem is a {@link UserException} naming the file. */
    public static SafeTensors open(Path file) {
        if (!Files.exists(file)) throw new UserException(file + ": file not found");
        if (!Files.isReadable(file) || Files.isDirectory(file)) throw new UserException(file + ": not a readable file");
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw new UserException(file + ": truncated safetensors file (" + size + " bytes, no header)");
            MemorySegment all = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long hlen = all.get(LE_LONG, 0);
            if (hlen <= 0 || hlen > size - 8 || hlen > 100_000_000) {
                throw new UserException(file + ": invalid safetensors header length " + hlen + " (file has " + size + " bytes)");
            }
            byte[] hb = new byte[(int) hlen];
            MemorySegment.copy(all, ValueLayout.JAVA_BYTE, 8, hb, 0, hb.length);
            JsonNode header;
            try {
                header = JSON.readTree(new String(hb, StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw new UserException(file + ": safetensors header is not valid JSON");
            }
            if (header == null || !header.isObject()) throw new UserException(file + ": safetensors header is not a JSON object");
            long dataStart = 8 + hlen;
            long dataSize = size - dataStart;
            Map<String, Tensor> map = new LinkedHashMap<>();
            Map<String, String> meta = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = header.fields(); it.hasNext(); ) {
                var e = it.next();
                String name = e.getKey();
                JsonNode t = e.getValue();
                if (name.equals("__metadata__")) {
                    t.fields().forEachRemaining(m -> meta.put(m.getKey(), m.getValue().asText()));
                    continue;
                }
                String ds = t.path("dtype").asText(null);
                DType dt = DType.parse(ds);
                if (dt == null) throw new UserException(file + ": tensor " + name + " has unknown dtype '" + ds + "' (expected F32, BF16, F16, I32, I64, ...)");
                JsonNode sh = t.path("shape");
                JsonNode off = t.path("data_offsets");
                if (!sh.isArray() || !off.isArray() || off.size() != 2) throw new UserException(file + ": tensor " + name + " lacks shape or data_offsets");
                long[] shape = new long[sh.size()];
                long numel = 1;
                for (int i = 0; i < shape.length; i++) {
                    shape[i] = sh.get(i).asLong(-1);
                    if (shape[i] < 0) throw new UserException(file + ": tensor " + name + " has a negative dimension");
                    numel *= shape[i];
                }
                long b = off.get(0).asLong(-1), en = off.get(1).asLong(-1);
                if (b < 0 || en < b || en > dataSize) {
                    throw new UserException(file + ": tensor " + name + " data_offsets [" + b + ", " + en + "] run past the end of the data ("
                            + dataSize + " bytes; file truncated?)");
                }
                if (en - b != numel * dt.bytes) {
                    throw new UserException(file + ": tensor " + name + " has " + (en - b) + " bytes but shape " + Arrays.toString(shape) + " of " + dt + " needs " + numel * dt.bytes);
                }
                map.put(name, new Tensor(name, dt, shape, all.asSlice(dataStart + b, en - b), file));
            }
            return new SafeTensors(file, arena, Collections.unmodifiableMap(map), meta);
        } catch (UserException e) {
            arena.close();
            throw e;
        } catch (NoSuchFileException e) {
            arena.close();
            throw new UserException(file + ": file not found");
        } catch (IOException e) {
            arena.close();
            throw new UserException(file + ": cannot read (" + e.getMessage() + ")");
        }
    }

    public Path file() { return file; }
    public Map<String, Tensor> tensors() { return tensors; }
    public Map<String, String> metadata() { return metadata; }
    public boolean has(String name) { return tensors.containsKey(name); }

    public Tensor get(String name) {
        Tensor t = tensors.get(name);
        if (t == null) throw new UserException(file + ": tensor " + name + " not found");
        return t;
    }

    @Override
    public void close() { arena.close(); }

    // ------------------------------------------------------------------ writing

    /**
     * A tensor to write: F32 from floats, BF16 from floats (round-to-nearest-even), I32 from ints, or U8 copied from raw bytes
     * (off-heap, e.g. Q8_0 blocks, written without a heap copy).
     */
    public record Entry(DType dtype, long[] shape, float[] floats, int[] ints, MemorySegment bytes) {
        public Entry(DType dtype, long[] shape, float[] floats, int[] ints) { this(dtype, shape, floats, ints, null); }
        public static Entry f32(float[] v, long... shape) { return new Entry(DType.F32, shape, v, null); }
        public static Entry bf16(float[] v, long... shape) { return new Entry(DType.BF16, shape, v, null); }
        public static Entry f16(float[] v, long... shape) { return new Entry(DType.F16, shape, v, null); }
        public static Entry i32(int[] v, long... shape) { return new Entry(DType.I32, shape, null, v); }
        public static Entry u8(MemorySegment b, long... shape) { return new Entry(DType.U8, shape, null, null, b); }

        long count() { return floats != null ? floats.length : ints != null ? ints.length : bytes.byteSize(); }
    }

    /** Writes tensors (in the given order) atomically: to a temporary file in the same folder, then renamed. */
    public static void write(Path file, Map<String, Entry> entries, Map<String, String> metadata) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        ObjectNode meta = header.putObject("__metadata__");
        meta.put("format", "pt");
        if (metadata != null) metadata.forEach(meta::put);
        long off = 0;
        for (var e : entries.entrySet()) {
            Entry t = e.getValue();
            long n = 1;
            for (long s : t.shape) n *= s;
            long have = t.count();
            if (have != n) throw new IllegalArgumentException("tensor " + e.getKey() + ": " + have + " values for shape " + Arrays.toString(t.shape));
            ObjectNode o = header.putObject(e.getKey());
            o.put("dtype", t.dtype.name());
            var sh = o.putArray("shape");
            for (long s : t.shape) sh.add(s);
            var offs = o.putArray("data_offsets");
            offs.add(off);
            off += n * t.dtype.bytes;
            offs.add(off);
        }
        byte[] hb = JSON.writeValueAsBytes(header);
        int pad = (8 - hb.length % 8) % 8;
        byte[] hp = Arrays.copyOf(hb, hb.length + pad);
        Arrays.fill(hp, hb.length, hp.length, (byte) ' ');
        dev.peft4j.util.AtomicFiles.write(file, os -> {
            java.nio.channels.WritableByteChannel ch = java.nio.channels.Channels.newChannel(os);
            ByteBuffer lb = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(hp.length).flip();
            writeFully(ch, lb);
            writeFully(ch, ByteBuffer.wrap(hp));
            ByteBuffer buf = ByteBuffer.allocate(1 << 20).order(ByteOrder.LITTLE_ENDIAN);
            for (Entry t : entries.values()) {
                if (t.bytes != null) {
                    for (long o = 0; o < t.bytes.byteSize(); ) {
                        if (!buf.hasRemaining()) { buf.flip(); writeFully(ch, buf); buf.clear(); }
                        int k = (int) Math.min(buf.remaining(), t.bytes.byteSize() - o);
                        MemorySegment.copy(t.bytes, o, MemorySegment.ofArray(buf.array()), buf.arrayOffset() + buf.position(), k);
                        buf.position(buf.position() + k);
                        o += k;
                    }
                    continue;
                }
                int n = (int) t.count();
                for (int i = 0; i < n; i++) {
                    if (buf.remaining() < 8) { buf.flip(); writeFully(ch, buf); buf.clear(); }
                    switch (t.dtype) {
                        case F32 -> buf.putFloat(t.floats[i]);
                        case BF16 -> buf.putShort(toBf16(t.floats[i]));
                        case F16 -> buf.putShort(Float.floatToFloat16(t.floats[i]));
                        case I32 -> buf.putInt(t.ints[i]);
                        default -> throw new IllegalArgumentException("cannot write " + t.dtype);
                    }
                }
            }
            buf.flip();
            writeFully(ch, buf);
        });
    }

    private static void writeFully(java.nio.channels.WritableByteChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) ch.write(b);
    }

    /** float32 → bfloat16 bits with round-to-nearest-even (as torch's .to(torch.bfloat16)). */
    public static short toBf16(float f) {
        int bits = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) return (short) 0x7fc0;
        int lsb = (bits >>> 16) & 1;
        bits += 0x7fff + lsb;
        return (short) (bits >>> 16);
    }
}
