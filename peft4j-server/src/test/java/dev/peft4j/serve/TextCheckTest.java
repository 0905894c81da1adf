package dev.peft4j.serve;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Incremental decoding gives, token after token, what decoding all the tokens each time gives. */
class TextCheckTest {
    /** Pieces of a byte-fallback vocabulary: ids 0-255 are single bytes (UTF-8 characters split over tokens), the rest words. */
    static final String[] WORDS = {" the", " cat", "é", " 日本", "ST", "OP", "\n", " ", "😀", "x"};

    /** Decodes as Gemma's decoder does (byte fallback, then fuse); id 300 is a special token, skipped. */
    static final Function<int[], String> DECODE = ids -> {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        for (int id : ids) {
            if (id == 300) continue;
            if (id < 256) b.write(id);
            else b.writeBytes(WORDS[id - 256].getBytes(StandardCharsets.UTF_8));
        }
        return b.toString(StandardCharsets.UTF_8);
    };

    /** A SentencePiece-style decoder that drops the text's leading space (transformers' Llama tokenizers do). */
    static final Function<int[], String> STRIP = ids -> {
        String t = DECODE.apply(ids);
        return t.startsWith(" ") ? t.substring(1) : t;
    };

    /** The reference: the whole text decoded at every token, and the same rules on it. */
    static TextCheck.Result reference(Function<int[], String> decode, int[] ids, List<String> stops) {
        return TextCheck.rules(decode.apply(ids), stops);
    }

    @Test
    void incrementalTextEqualsTheFullDecodeAtEveryToken() {
        check(DECODE);
    }

    @Test
    void aDecoderThatStripsTheLeadingSpaceToo() {
        check(STRIP);   // both decodes of a window start at the same token, so both drop its space alike
    }

    private static void check(Function<int[], String> decode) {
        Random r = new Random(7);
        List<String> stops = List.of("STOP", "\n\n");
        int checked = 0, full = 0;
        for (int trial = 0; trial < 300; trial++) {
            List<Integer> ids = new ArrayList<>();
            // tokens: words, a special token, and multi-byte characters split into their bytes
            for (int t = 0; t < 40; t++) {
                int kind = r.nextInt(6);
                if (kind == 0) {
                    for (byte x : (r.nextBoolean() ? "ü" : "😀").getBytes(StandardCharsets.UTF_8)) ids.add(x & 0xff);
                } else if (kind == 1) {
                    ids.add(300);
                } else if (kind == 2) {
                    ids.add('a' + r.nextInt(3));
                } else {
                    ids.add(256 + r.nextInt(WORDS.length));
                }
            }
            TextCheck tc = new TextCheck(decode, stops);
            for (int n = 1; n <= ids.size(); n++) {
                int[] gen = ids.subList(0, n).stream().mapToInt(Integer::intValue).toArray();
                TextCheck.Result want = reference(decode, gen, stops), got = tc.add(gen);
                assertEquals(want, got, "trial " + trial + ", token " + n);
                checked++;
                if (got.stopped()) break;
            }
            full += tc.fullDecodes;
        }
        assertEquals(true, checked > 3000, "checked " + checked + " prefixes");
        // a concatenating decoder never needs the whole text again
        assertEquals(0, full, "full decodes");
    }
}
