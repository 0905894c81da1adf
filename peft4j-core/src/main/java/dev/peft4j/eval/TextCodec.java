package dev.peft4j.eval;

import dev.peft4j.tokenizer.Tokenizer;

/** The tokenizer operations evaluation needs (a seam so tests can use a fake). */
public interface TextCodec {
    /** Token ids of {@code text}, BOS first when {@code withBos}; no other special tokens are added. */
    int[] encode(String text, boolean withBos);

    /** Text of generated ids, special tokens skipped. */
    String decode(int[] ids);

    int bosId();
    int eosId();
    String bosToken();
    String eosToken();

    static TextCodec of(Tokenizer t) {
        return new TextCodec() {
            public int[] encode(String text, boolean withBos) { return t.encode(text, withBos); }
            public String decode(int[] ids) { return t.decode(ids, true); }
            public int bosId() { return t.bosId(); }
            public int eosId() { return t.eosId(); }
            public String bosToken() { return t.bosToken(); }
            public String eosToken() { return t.eosToken(); }
        };
    }
}
