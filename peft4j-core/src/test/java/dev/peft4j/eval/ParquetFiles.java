package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import io.airlift.compress.lz4.Lz4Compressor;
import io.airlift.compress.zstd.ZstdCompressor;
import org.apache.parquet.bytes.BytesInput;
import org.apache.parquet.column.ParquetProperties;
import org.apache.parquet.compression.CompressionCodecFactory;
import org.apache.parquet.conf.ParquetConfiguration;
import org.apache.parquet.conf.PlainParquetConfiguration;
import org.apache.parquet.example.data.Group;
import org.apache.parquet.example.data.simple.SimpleGroupFactory;
import org.apache.parquet.hadoop.ParquetWriter;
import org.apache.parquet.hadoop.example.ExampleParquetWriter;
import org.apache.parquet.hadoop.metadata.CompressionCodecName;
import org.apache.parquet.io.LocalOutputFile;
import org.apache.parquet.io.OutputFile;
import org.apache.parquet.schema.GroupType;
import org.apache.parquet.schema.LogicalTypeAnnotation;
import org.apache.parquet.schema.MessageType;
import org.apache.parquet.schema.MessageTypeParser;
import org.apache.parquet.schema.Type;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.zip.GZIPOutputStream;

/**
 * Writes Parquet files for tests with parquet-java's example writer (no Hadoop), from JSON rows and a schema in
 * Parquet's message syntax, laid out as pyarrow (what {@code datasets} uses) writes them: optional fields, 3-level lists.
 */
final class ParquetFiles {
    private ParquetFiles() {}

    static String str(String name) { return "optional binary " + name + " (STRING);"; }
    static String i64(String name) { return "optional int64 " + name + ";"; }
    static String i32(String name) { return "optional int32 " + name + ";"; }
    /** pyarrow's list<element>: {@code optional group name (LIST) { repeated group list { optional &lt;type&gt; element; } }}. */
    static String list(String name, String element) {
        return "optional group " + name + " (LIST) { repeated group list { optional " + element + "; } }";
    }
    static String strList(String name) { return list(name, "binary element (STRING)"); }
    static String struct(String name, String... fields) { return "optional group " + name + " { " + String.join(" ", fields) + " }"; }
    static MessageType schema(String... fields) { return MessageTypeParser.parseMessageType("message schema { " + String.join(" ", fields) + " }"); }

    static Path write(Path file, MessageType schema, List<JsonNode> rows) throws IOException {
        return write(file, schema, rows, CompressionCodecName.SNAPPY, 0, false);
    }

    /** @param rowsPerGroup row-group row limit (0 = parquet-java's default); @param v2 data pages v2 */
    static Path write(Path file, MessageType schema, List<JsonNode> rows, CompressionCodecName codec, int rowsPerGroup, boolean v2)
            throws IOException {
        Files.createDirectories(file.toAbsolutePath().getParent());
        Files.deleteIfExists(file);
        try {
            // builder(OutputFile) and withConf(ParquetConfiguration) have Hadoop-typed overloads javac cannot resolve without Hadoop
            ExampleParquetWriter.Builder b = (ExampleParquetWriter.Builder) MethodHandles.publicLookup()
                    .findStatic(ExampleParquetWriter.class, "builder", MethodType.methodType(ExampleParquetWriter.Builder.class, OutputFile.class))
                    .invoke((OutputFile) new LocalOutputFile(file));
            MethodHandles.publicLookup().findVirtual(ParquetWriter.Builder.class, "withConf",
                    MethodType.methodType(ParquetWriter.Builder.class, ParquetConfiguration.class)).invoke(b, new PlainParquetConfiguration());
            b.withType(schema).withCodecFactory(new Compressors()).withCompressionCodec(codec)
                    .withWriterVersion(v2 ? ParquetProperties.WriterVersion.PARQUET_2_0 : ParquetProperties.WriterVersion.PARQUET_1_0);
            if (rowsPerGroup > 0) b.withRowGroupRowCountLimit(rowsPerGroup);
            try (ParquetWriter<Group> w = b.build()) {
                SimpleGroupFactory f = new SimpleGroupFactory(schema);
                for (JsonNode row : rows) {
                    Group g = f.newGroup();
                    fill(g, schema, row);
                    w.write(g);
                }
            }
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException(t);
        }
        return file;
    }

    private static void fill(Group g, GroupType type, JsonNode obj) {
        for (Type f : type.getFields()) {
            JsonNode v = obj.get(f.getName());
            if (v == null || v.isNull()) continue;
            if (f.isRepetition(Type.Repetition.REPEATED)) {
                for (JsonNode e : v) add(g, f, e);
            } else {
                add(g, f, v);
            }
        }
    }

    private static void add(Group g, Type f, JsonNode v) {
        String n = f.getName();
        if (f.isPrimitive()) {
            switch (f.asPrimitiveType().getPrimitiveTypeName()) {
                case BINARY -> g.append(n, v.asText());
                case INT64 -> g.append(n, v.asLong());
                case INT32 -> g.append(n, v.asInt());
                case BOOLEAN -> g.append(n, v.asBoolean());
                case DOUBLE -> g.append(n, v.asDouble());
                case FLOAT -> g.append(n, (float) v.asDouble());
                default -> throw new IllegalArgumentException("test writer: " + f);
            }
            return;
        }
        GroupType gt = f.asGroupType();
        Group c = g.addGroup(n);
        if (gt.getLogicalTypeAnnotation() instanceof LogicalTypeAnnotation.ListLogicalTypeAnnotation) {
            Type rep = gt.getType(0);
            boolean threeLevel = !rep.isPrimitive() && rep.asGroupType().getFieldCount() == 1 && !rep.getName().equals("array");
            for (JsonNode e : v) {
                if (threeLevel) {
                    Group l = c.addGroup(rep.getName());
                    if (!e.isNull()) add(l, rep.asGroupType().getType(0), e);
                } else {
                    add(c, rep, e);
                }
            }
        } else {
            fill(c, gt, v);
        }
    }

    /** Page compression for the writer (the reader's side is {@link Parquet.Codecs}); BROTLI is stored uncompressed
     *  but labelled BROTLI, to test the reader's unsupported-codec error. */
    static final class Compressors implements CompressionCodecFactory {
        @Override
        public BytesInputCompressor getCompressor(CompressionCodecName codec) {
            return new BytesInputCompressor() {
                @Override
                public BytesInput compress(BytesInput bytes) throws IOException {
                    byte[] in = bytes.toByteArray();
                    return BytesInput.from(switch (codec) {
                        case UNCOMPRESSED, BROTLI -> in;
                        case SNAPPY -> org.xerial.snappy.Snappy.compress(in);
                        case GZIP -> {
                            ByteArrayOutputStream out = new ByteArrayOutputStream();
                            try (GZIPOutputStream z = new GZIPOutputStream(out)) { z.write(in); }
                            yield out.toByteArray();
                        }
                        case ZSTD -> airlift(new ZstdCompressor(), in);
                        case LZ4_RAW -> airlift(new Lz4Compressor(), in);
                        default -> throw new IOException("test writer: " + codec);
                    });
                }

                @Override public CompressionCodecName getCodecName() { return codec; }
                @Override public void release() {}
            };
        }

        private static byte[] airlift(io.airlift.compress.Compressor c, byte[] in) {
            byte[] out = new byte[c.maxCompressedLength(in.length)];
            int n = c.compress(in, 0, in.length, out, 0, out.length);
            return Arrays.copyOf(out, n);
        }

        @Override
        public BytesInputDecompressor getDecompressor(CompressionCodecName codec) { return Parquet.Codecs.INSTANCE.getDecompressor(codec); }

        @Override
        public void release() {}
    }
}
