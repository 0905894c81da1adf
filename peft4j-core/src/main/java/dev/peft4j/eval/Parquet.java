package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.util.UserException;
import io.airlift.compress.Decompressor;
import io.airlift.compress.lz4.Lz4Decompressor;
import io.airlift.compress.zstd.ZstdDecompressor;
import org.apache.parquet.ParquetReadOptions;
import org.apache.parquet.bytes.ByteBufferAllocator;
import org.apache.parquet.bytes.BytesInput;
import org.apache.parquet.bytes.HeapByteBufferAllocator;
import org.apache.parquet.column.page.PageReadStore;
import org.apache.parquet.compression.CompressionCodecFactory;
import org.apache.parquet.conf.ParquetConfiguration;
import org.apache.parquet.conf.PlainParquetConfiguration;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.example.data.simple.convert.GroupRecordConverter;
import org.apache.parquet.filter2.compat.FilterCompat;
import org.apache.parquet.format.converter.ParquetMetadataConverter;
import org.apache.parquet.hadoop.ParquetFileReader;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.io.ColumnIOFactory;
import org.apache.parquet.io.InputFile;
import org.apache.parquet.io.LocalInputFile;
import org.apache.parquet.io.MessageColumnIO;
import org.apache.parquet.io.RecordReader;
import org.apache.parquet.io.api.Binary;
import org.apache.parquet.schema.GroupType;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.PrimitiveType;
import org.apache.parquet.schema.Type;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.reflect.Constructor;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.zip.GZIPInputStream;

/**
 * Reads a Parquet file (as the Hugging Face Hub and {@code datasets.Dataset.to_parquet} write them) into one JSON object
 * per row, with the same field names and nesting that {@code to_json} would give: structs become objects, lists
 * (3-level {@code LIST} and the legacy 2-level forms) arrays, maps objects, strings text, integers numbers (int when
 * they fit, as Jackson parses JSON), nulls null.
 *
 * <p>Uses parquet-java (parquet-hadoop's {@link ParquetFileReader} + parquet-column's record assembly) without Hadoop
 * on the class path: the file is a {@link LocalInputFile}, and the read options are built with a codec factory of
 * our own, since {@code ParquetReadOptions.Builder} always makes Hadoop's. Pages compressed with UNCOMPRESSED, SNAPPY
 * (snappy-java), GZIP (java.util.zip), ZSTD and LZ4_RAW (aircompressor) are read; BROTLI, LZO and LZ4 (Hadoop framing)
 * are reported as unsupported.
 */
final class Parquet {
    private Parquet() {}

    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;

    /** Rows of {@code file}, in order. Any failure is a one-line {@link UserException} naming the file. */
    static List<ObjectNode> read(Path file) {
        List<ObjectNode> rows = new ArrayList<>();
        try (ParquetFileReader r = open(file)) {
            MessageType schema = r.getFooter().getFileMetaData().getSchema();
            MessageColumnIO io = new ColumnIOFactory().getColumnIO(schema);
            PageReadStore pages;
            while ((pages = r.readNextRowGroup()) != null) {
                RecordReader<Group> rr = io.getRecordReader(pages, new GroupRecordConverter(schema));
                for (long i = 0, n = pages.getRowCount(); i < n; i++) rows.add(object(rr.read(), schema));
            }
        } catch (UserException e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new UserException(file + ": not a readable Parquet file (" + oneLine(e) + ")");
        }
        return rows;
    }

    private static String oneLine(Throwable e) {
        String m = e.getMessage();
        if (m == null || m.isBlank()) m = e.getClass().getSimpleName();
        if (e.getCause() != null && e.getCause().getMessage() != null && !m.contains(e.getCause().getMessage())) {
            m += ": " + e.getCause().getMessage();
        }
        return m.replaceAll("\\s+", " ").strip();
    }

    // ------------------------------------------------------------------ rows -> JSON

    private static ObjectNode object(Group g, GroupType type) {
        ObjectNode o = NODES.objectNode();
        for (int i = 0; i < type.getFieldCount(); i++) {
            Type f = type.getType(i);
            int n = g.getFieldRepetitionCount(i);
            if (f.isRepetition(Type.Repetition.REPEATED)) {
                ArrayNode a = o.putArray(f.getName());
                for (int j = 0; j < n; j++) a.add(value(g, i, j, f));
            } else {
                o.set(f.getName(), n == 0 ? NODES.nullNode() : value(g, i, 0, f));
            }
        }
        return o;
    }

    private static JsonNode value(Group g, int field, int index, Type f) {
        if (f.isPrimitive()) return primitive(g, field, index, f.asPrimitiveType());
        GroupType gt = f.asGroupType();
        Group child = g.getGroup(field, index);
        LogicalTypeAnnotation ann = gt.getLogicalTypeAnnotation();
        if (ann instanceof LogicalTypeAnnotation.ListLogicalTypeAnnotation && gt.getFieldCount() == 1
                && gt.getType(0).isRepetition(Type.Repetition.REPEATED)) {
            return list(child, gt);
        }
        if ((ann instanceof LogicalTypeAnnotation.MapLogicalTypeAnnotation || ann instanceof LogicalTypeAnnotation.MapKeyValueTypeAnnotation)
                && gt.getFieldCount() == 1 && !gt.getType(0).isPrimitive() && gt.getType(0).asGroupType().getFieldCount() == 2) {
            return map(child, gt.getType(0).asGroupType());
        }
        return object(child, gt);
    }

    /** The LIST forms of the Parquet spec (LogicalTypes.md, "Lists" and its backward-compatibility rules). */
    private static ArrayNode list(Group g, GroupType listType) {
        ArrayNode a = NODES.arrayNode();
        Type rep = listType.getType(0);
        boolean repeatedIsElement = rep.isPrimitive() || rep.asGroupType().getFieldCount() != 1
                || rep.getName().equals("array") || rep.getName().equals(listType.getName() + "_tuple");
        for (int j = 0, n = g.getFieldRepetitionCount(0); j < n; j++) {
            if (repeatedIsElement) {
                a.add(value(g, 0, j, rep));
            } else {
                Group e = g.getGroup(0, j);
                Type et = rep.asGroupType().getType(0);
                a.add(e.getFieldRepetitionCount(0) == 0 ? NODES.nullNode() : value(e, 0, 0, et));
            }
        }
        return a;
    }

    private static ObjectNode map(Group g, GroupType keyValue) {
        ObjectNode o = NODES.objectNode();
        for (int j = 0, n = g.getFieldRepetitionCount(0); j < n; j++) {
            Group kv = g.getGroup(0, j);
            JsonNode k = value(kv, 0, 0, keyValue.getType(0));
            o.set(k.isTextual() ? k.textValue() : k.toString(),
                    kv.getFieldRepetitionCount(1) == 0 ? NODES.nullNode() : value(kv, 1, 0, keyValue.getType(1)));
        }
        return o;
    }

    private static JsonNode primitive(Group g, int field, int index, PrimitiveType t) {
        LogicalTypeAnnotation ann = t.getLogicalTypeAnnotation();
        int scale = ann instanceof LogicalTypeAnnotation.DecimalLogicalTypeAnnotation d ? d.getScale() : -1;
        boolean unsigned = ann instanceof LogicalTypeAnnotation.IntLogicalTypeAnnotation i && !i.isSigned();
        return switch (t.getPrimitiveTypeName()) {
            case BOOLEAN -> NODES.booleanNode(g.getBoolean(field, index));
            case INT32 -> {
                int v = g.getInteger(field, index);
                if (scale >= 0) yield NODES.numberNode(BigDecimal.valueOf(v, scale));
                yield unsigned && v < 0 ? NODES.numberNode(Integer.toUnsignedLong(v)) : NODES.numberNode(v);
            }
            case INT64 -> {
                long v = g.getLong(field, index);
                if (scale >= 0) yield NODES.numberNode(BigDecimal.valueOf(v, scale));
                if (unsigned && v < 0) yield NODES.numberNode(new BigInteger(Long.toUnsignedString(v)));
                yield v == (int) v ? NODES.numberNode((int) v) : NODES.numberNode(v);
            }
            // the shortest decimal that reads back as this float, as pyarrow's JSON writer prints it
            case FLOAT -> NODES.numberNode(Double.parseDouble(Float.toString(g.getFloat(field, index))));
            case DOUBLE -> NODES.numberNode(g.getDouble(field, index));
            case INT96 -> NODES.textNode(g.getValueToString(field, index));
            case BINARY, FIXED_LEN_BYTE_ARRAY -> {
                Binary b = g.getBinary(field, index);
                if (scale >= 0) yield NODES.numberNode(new BigDecimal(new BigInteger(b.getBytes()), scale));
                // strings, and unannotated byte arrays (older writers leave out the STRING annotation) as UTF-8
                yield NODES.textNode(b.toStringUsingUTF8());
            }
        };
    }

    // ------------------------------------------------------------------ reading without Hadoop

    /** {@code ParquetFileReader.open(InputFile, ParquetReadOptions)}, looked up by exact type: javac cannot pick among
     *  its overloads without Hadoop's {@code Configuration} class, which is not on the class path. */
    private static final MethodHandle OPEN;
    static {
        try {
            OPEN = MethodHandles.publicLookup().findStatic(ParquetFileReader.class, "open",
                    MethodType.methodType(ParquetFileReader.class, InputFile.class, ParquetReadOptions.class));
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private static ParquetFileReader open(Path file) throws IOException {
        try {
            InputFile in = new LocalInputFile(file) {
                @Override
                public String toString() { return file.getFileName().toString(); } // parquet-java's messages name it
            };
            return (ParquetFileReader) OPEN.invokeExact(in, options());
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException(t);
        }
    }

    private static volatile ParquetReadOptions options;

    /**
     * Read options without Hadoop. {@code ParquetReadOptions.builder(...)} makes a Hadoop codec factory and record
     * filter in its constructor whatever is asked later, so the (package-private) constructor is called directly:
     * its longest overload, with each parameter given by type (no filtering, heap buffers, our codecs).
     */
    private static ParquetReadOptions options() {
        if (options != null) return options;
        try {
            Constructor<?> c = Arrays.stream(ParquetReadOptions.class.getDeclaredConstructors())
                    .max(Comparator.comparingInt(Constructor::getParameterCount)).orElseThrow();
            Class<?>[] types = c.getParameterTypes();
            Object[] args = new Object[types.length];
            for (int i = 0; i < types.length; i++) {
                Class<?> t = types[i];
                args[i] = t == boolean.class ? false
                        : t == int.class ? 8 << 20 // max allocation, as the builder's default
                        : t == FilterCompat.Filter.class ? FilterCompat.NOOP
                        : t == ParquetMetadataConverter.MetadataFilter.class ? ParquetMetadataConverter.NO_FILTER
                        : t == CompressionCodecFactory.class ? Codecs.INSTANCE
                        : t == ByteBufferAllocator.class ? new HeapByteBufferAllocator()
                        : t == java.util.Map.class ? new HashMap<String, String>()
                        : t == ParquetConfiguration.class ? new PlainParquetConfiguration()
                        : null; // decryption properties, metrics callback
                if (args[i] == null && t.isPrimitive()) throw new IllegalStateException("unexpected parameter " + t);
            }
            c.setAccessible(true);
            return options = (ParquetReadOptions) c.newInstance(args);
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new IllegalStateException("parquet-java's ParquetReadOptions changed: " + e, e);
        }
    }

    /** Page decompression with the codecs parquet-java already depends on, none of them Hadoop's. */
    static final class Codecs implements CompressionCodecFactory {
        static final Codecs INSTANCE = new Codecs();

        @Override
        public BytesInputCompressor getCompressor(CompressionCodecName codec) {
            throw new UnsupportedOperationException("peft4j reads Parquet only");
        }

        @Override
        public BytesInputDecompressor getDecompressor(CompressionCodecName codec) {
            return new BytesInputDecompressor() {
                @Override
                public BytesInput decompress(BytesInput bytes, int size) throws IOException {
                    return BytesInput.from(Codecs.decompress(codec, bytes.toByteArray(), size));
                }

                @Override
                public void decompress(ByteBuffer in, int inSize, ByteBuffer out, int outSize) throws IOException {
                    byte[] src = new byte[inSize];
                    in.duplicate().get(src);
                    out.put(Codecs.decompress(codec, src, outSize));
                }

                @Override
                public void release() {}
            };
        }

        @Override
        public void release() {}

        static byte[] decompress(CompressionCodecName codec, byte[] in, int size) throws IOException {
            byte[] out = new byte[size];
            int n = switch (codec) {
                case UNCOMPRESSED -> {
                    System.arraycopy(in, 0, out, 0, Math.min(in.length, size));
                    yield in.length;
                }
                case SNAPPY -> org.xerial.snappy.Snappy.uncompress(in, 0, in.length, out, 0);
                case GZIP -> {
                    try (InputStream z = new GZIPInputStream(new ByteArrayInputStream(in))) {
                        yield z.readNBytes(out, 0, size) + (z.read() < 0 ? 0 : 1);
                    }
                }
                case ZSTD -> airlift(new ZstdDecompressor(), in, out);
                case LZ4_RAW -> airlift(new Lz4Decompressor(), in, out);
                default -> throw new IOException("pages compressed with " + codec + " are not supported "
                        + "(UNCOMPRESSED, SNAPPY, GZIP, ZSTD and LZ4_RAW are); rewrite the file, e.g. with pyarrow's default SNAPPY");
            };
            if (n != size) throw new IOException(codec + " page decompressed to " + n + " bytes, expected " + size);
            return out;
        }

        private static int airlift(Decompressor d, byte[] in, byte[] out) throws IOException {
            try {
                return d.decompress(in, 0, in.length, out, 0, out.length);
            } catch (RuntimeException e) {
                throw new IOException(e.getMessage(), e);
            }
        }
    }
}
