package dev.peft4j.data;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;

/**
 * An instruction data file loaded into {@link InstructionRecord}s.
 *
 * <p>Accepted files: JSON Lines (one object per line; Dolly's {@code databricks-dolly-15k.jsonl}, Alpaca-style or any
 * other field names with {@code --fields}) and a JSON array of objects (Alpaca's {@code alpaca_data.json}). Bad rows —
 * malformed JSON, a missing or non-string field, an empty instruction or response, bytes that are not UTF-8 — are skipped,
 * counted in the {@link DataSummary} and warned about (file and line), or, with {@code strict}, fail the load. A file that is
 * missing, empty or has no usable row is a {@link UserException}.
 */
public final class InstructionDataset {
    private static final ObjectMapper JSON = new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private static final ObjectMapper JSON_STREAM = new ObjectMapper();

    private final Path path;
    private final List<InstructionRecord> records;
    private final DataSummary summary;

    private InstructionDataset(Path path, List<InstructionRecord> records, DataSummary summary) {
        this.path = path;
        this.records = List.copyOf(records);
        this.summary = summary;
    }

    public Path path() { return path; }
    public List<InstructionRecord> records() { return records; }
    public DataSummary summary() { return summary; }

    /** Loads {@code file} with {@code opts}. */
    public static InstructionDataset load(Path file, DataOptions opts) {
        if (Files.isDirectory(file)) throw new UserException(file + ": is a directory, expected a JSON Lines or JSON data file");
        if (!Files.isRegularFile(file)) throw new UserException(file + ": data file not found");
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new UserException(file + ": cannot read (" + e.getMessage() + ")");
        }
        Loader l = new Loader(file, opts);
        int first = firstNonBlank(bytes);
        if (first < 0) throw new UserException(file + ": file is empty (expected JSON Lines or a JSON array of records)");
        if (bytes[first] == '[') l.readArray(bytes);
        else l.readLines(bytes);
        return l.finish();
    }

    public static InstructionDataset load(Path file) { return load(file, DataOptions.defaults()); }

    private static int firstNonBlank(byte[] b) {
        int i = startsWithBom(b) ? 3 : 0;
        for (; i < b.length; i++) if (b[i] != ' ' && b[i] != '\n' && b[i] != '\r' && b[i] != '\t') return i;
        return -1;
    }

    private static boolean startsWithBom(byte[] b) {
        return b.length >= 3 && (b[0] & 0xff) == 0xEF && (b[1] & 0xff) == 0xBB && (b[2] & 0xff) == 0xBF;
    }

    private static CharsetDecoder strictUtf8() {
        return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                .onUnmappableCharacter(CodingErrorAction.REPORT);
    }

    /** Reads one file, row by row. */
    private static final class Loader {
        final Path file;
        final DataOptions opts;
        final DataSummary summary;
        final List<InstructionRecord> out = new ArrayList<>();
        final Set<String> seenCategories = new TreeSet<>();
        final Set<String> matchedCategories = new TreeSet<>();
        FieldMapping mapping;
        int warned, rows;

        Loader(Path file, DataOptions opts) {
            this.file = file;
            this.opts = opts;
            this.summary = new DataSummary(file.getFileName().toString());
            switch (opts.format()) {
                case "dolly" -> mapping = FieldMapping.DOLLY.with(opts.fields());
                case "alpaca" -> mapping = FieldMapping.ALPACA.with(opts.fields());
                case "auto" -> mapping = null; // decided by the first record
                default -> throw new UserException("--format: unknown format '" + opts.format() + "' (expected auto, dolly or alpaca)");
            }
        }

        void readLines(byte[] b) {
            CharsetDecoder dec = strictUtf8();
            int start = startsWithBom(b) ? 3 : 0, lineNo = 0;
            while (start <= b.length) {
                int end = start;
                while (end < b.length && b[end] != '\n') end++;
                if (start == b.length) break;
                lineNo++;
                int stop = end > start && b[end - 1] == '\r' ? end - 1 : end;
                String text;
                try {
                    text = dec.reset().decode(ByteBuffer.wrap(b, start, stop - start)).toString();
                } catch (CharacterCodingException e) {
                    bad(lineNo, SkipReason.NON_UTF8, "bytes that are not valid UTF-8 (at byte " + (firstBadByte(b, start, stop) + 1) + " of the line)");
                    start = end + 1;
                    continue;
                }
                start = end + 1;
                if (text.isBlank()) continue;
                rows++;
                JsonNode node;
                try {
                    node = JSON.readTree(text);
                } catch (JsonProcessingException e) {
                    bad(lineNo, SkipReason.MALFORMED_JSON, "malformed JSON (" + e.getOriginalMessage().split("\n")[0] + ")");
                    continue;
                }
                row(lineNo, node);
            }
        }

        /** A JSON array of objects; lines with invalid UTF-8 are replaced while parsing and the rows touching them skipped. */
        void readArray(byte[] b) {
            Set<Integer> badLines = new TreeSet<>();
            String text = decodeMarkingBadLines(b, badLines);
            try (JsonParser p = JSON_STREAM.createParser(text)) {
                if (p.nextToken() != JsonToken.START_ARRAY) throw new UserException(file + ": expected a JSON array");
                JsonToken t;
                while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
                    if (t == null) throw new UserException(file + ": JSON array is not closed");
                    JsonLocation loc = p.currentTokenLocation();
                    int line = (int) loc.getLineNr();
                    rows++;
                    JsonNode node = p.readValueAsTree();
                    int endLine = (int) p.currentLocation().getLineNr();
                    Integer firstBad = ((TreeSet<Integer>) badLines).ceiling(line);
                    if (firstBad != null && firstBad <= endLine) {
                        bad(firstBad, SkipReason.NON_UTF8, "bytes that are not valid UTF-8");
                        continue;
                    }
                    row(line, node);
                }
                if (p.nextToken() != null) throw new UserException(file + ":" + p.currentTokenLocation().getLineNr() + ": unexpected text after the JSON array");
            } catch (JsonProcessingException e) {
                throw new UserException(file + ":" + e.getLocation().getLineNr() + ": malformed JSON (" + e.getOriginalMessage().split("\n")[0] + ")");
            } catch (IOException e) {
                throw new UserException(file + ": cannot read (" + e.getMessage() + ")");
            }
        }

        private String decodeMarkingBadLines(byte[] b, Set<Integer> badLines) {
            CharsetDecoder dec = strictUtf8();
            int off = startsWithBom(b) ? 3 : 0;
            ByteBuffer in = ByteBuffer.wrap(b, off, b.length - off);
            CharBuffer cb = CharBuffer.allocate(b.length + 1);
            while (true) {
                CoderResult r = dec.decode(in, cb, true);
                if (r.isUnderflow()) break;
                if (r.isError()) {
                    int pos = in.position();
                    int line = 1;
                    for (int i = off; i < pos; i++) if (b[i] == '\n') line++;
                    if (opts.strict()) throw new UserException(file + ":" + line + ": bytes that are not valid UTF-8 (--strict)");
                    badLines.add(line);
                    cb.put('\uFFFD');
                    in.position(pos + r.length());
                }
            }
            dec.flush(cb);
            return cb.flip().toString();
        }

        private static int firstBadByte(byte[] b, int from, int to) {
            CharsetDecoder dec = strictUtf8();
            ByteBuffer in = ByteBuffer.wrap(b, from, to - from);
            dec.decode(in, CharBuffer.allocate(to - from + 1), true);
            return in.position() - from;
        }

        void row(int line, JsonNode node) {
            if (!node.isObject()) {
                bad(line, SkipReason.MALFORMED_JSON, "expected a JSON object, found " + node.getNodeType().toString().toLowerCase());
                return;
            }
            if (mapping == null) {
                boolean alpaca = node.has("output") && !node.has("response");
                mapping = (alpaca ? FieldMapping.ALPACA : FieldMapping.DOLLY).with(opts.fields());
            }
            String[] v = new String[4];
            for (int i = 0; i < 4; i++) {
                String ours = FieldMapping.FIELDS.get(i), theirs = mapping.sourceOf(ours);
                JsonNode f = node.get(theirs);
                boolean required = ours.equals("instruction") || ours.equals("response");
                if (f == null || f.isNull()) {
                    if (required) {
                        bad(line, SkipReason.MISSING_FIELD, "missing field '" + theirs + "'" + (theirs.equals(ours) ? "" : " (" + ours + ")")
                                + "; fields present: " + fieldNames(node));
                        return;
                    }
                    continue;
                }
                if (!f.isTextual()) {
                    bad(line, SkipReason.MISSING_FIELD, "field '" + theirs + "' must be a string, found " + f.getNodeType().toString().toLowerCase());
                    return;
                }
                v[i] = f.asText();
            }
            if (v[0].isBlank()) { bad(line, SkipReason.EMPTY_INSTRUCTION, "empty instruction"); return; }
            if (v[2].isBlank()) { bad(line, SkipReason.EMPTY_RESPONSE, "empty response"); return; }
            String cat = v[3] == null ? "" : v[3];
            seenCategories.add(cat);
            if (!opts.categories().isEmpty() && !opts.categories().contains(cat)) {
                summary.addFiltered();
                return;
            }
            matchedCategories.add(cat);
            out.add(new InstructionRecord(v[0], v[1], v[2], cat, file.getFileName() + ":" + line));
            summary.addUsed(1);
        }

        private static String fieldNames(JsonNode node) {
            List<String> names = new ArrayList<>();
            node.fieldNames().forEachRemaining(names::add);
            return names.isEmpty() ? "none" : String.join(", ", names);
        }

        void bad(int line, SkipReason reason, String what) {
            String msg = file + ":" + line + ": " + what;
            if (opts.strict()) throw new UserException(msg + " (--strict; leave it out to skip bad rows)");
            summary.skip(reason);
            if (++warned <= DataOptions.MAX_WARNINGS) opts.warnings().accept(msg + "; row skipped");
        }

        InstructionDataset finish() {
            if (warned > DataOptions.MAX_WARNINGS) {
                opts.warnings().accept(file + ": " + (warned - DataOptions.MAX_WARNINGS) + " more bad rows skipped (" + summary + ")");
            }
            for (String c : opts.categories()) {
                if (!matchedCategories.contains(c) && !out.isEmpty()) {
                    opts.warnings().accept(file + ": no rows of category '" + c + "' (present: " + String.join(", ", seenCategories) + ")");
                }
            }
            if (out.isEmpty()) {
                if (summary.filtered() > 0) {
                    throw new UserException(file + ": no rows of categories " + String.join(", ", new TreeSet<>(opts.categories()))
                            + " (present: " + String.join(", ", seenCategories) + ")");
                }
                if (summary.skippedTotal() > 0) throw new UserException(file + ": no usable rows (" + summary + ")");
                throw new UserException(file + ": file has no records");
            }
            return new InstructionDataset(file, out, summary);
        }
    }

    /** A train/validation split. */
    public record Split(List<InstructionRecord> train, List<InstructionRecord> validation) {}

    /**
     * Seeded split: a Fisher–Yates permutation ({@link Shuffle#permutation}) of the records with {@code seed}; its first
     * {@code validationCount} entries are the validation set, the rest (in permuted order) the training set.
     */
    public static Split split(List<InstructionRecord> records, int validationCount, long seed) {
        if (validationCount < 0 || validationCount >= records.size()) {
            throw new UserException("validation size " + validationCount + " must be at least 0 and less than the " + records.size() + " usable records");
        }
        int[] perm = Shuffle.permutation(records.size(), seed, 0);
        List<InstructionRecord> val = new ArrayList<>(validationCount), train = new ArrayList<>(records.size() - validationCount);
        for (int i = 0; i < perm.length; i++) (i < validationCount ? val : train).add(records.get(perm[i]));
        return new Split(List.copyOf(train), List.copyOf(val));
    }

    /**
     * Number of validation records from a {@code --val-size} text: a count ({@code 1000}) or a fraction below 1
     * ({@code 0.05}, rounded, at least 1 when the fraction is positive).
     */
    public static int validationCount(String spec, int total) {
        String s = spec.strip();
        try {
            if (s.contains(".") || s.contains("e") || s.contains("E")) {
                double f = Double.parseDouble(s);
                if (!(f >= 0 && f < 1)) throw new UserException("--val-size: fraction " + s + " must be in [0, 1)");
                return f == 0 ? 0 : Math.max(1, (int) Math.round(f * total));
            }
            int n = Integer.parseInt(s);
            if (n < 0) throw new UserException("--val-size: " + s + " must not be negative");
            return n;
        } catch (NumberFormatException e) {
            throw new UserException("--val-size: '" + spec + "' is neither a count (e.g. 1000) nor a fraction (e.g. 0.05)");
        }
    }
}
