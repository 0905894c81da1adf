package dev.peft4j.eval;

import dev.peft4j.model.CausalLM;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Function;

/** Small CausalLM fakes for tests: logits are a function of the sequence prefix. */
final class FakeLMs {
    private FakeLMs() {}

    /** A CausalLM whose logits row at position t is {@code rowOf.apply(prefix[0..t])}; counts forward calls. */
    static final class PrefixLM implements CausalLM {
        final int vocab, maxPos;
        final Function<int[], float[]> rowOf;
        int logitsCalls, sessionTokens;
        final List<int[]> logitsInputs = new ArrayList<>();

        PrefixLM(int vocab, int maxPos, Function<int[], float[]> rowOf) {
            this.vocab = vocab; this.maxPos = maxPos; this.rowOf = rowOf;
        }

        public int vocabSize() { return vocab; }
        public int maxPositions() { return maxPos; }

        public List<float[]> logits(List<int[]> seqs, int[] from) {
            logitsCalls++;
            List<float[]> out = new ArrayList<>();
            for (int i = 0; i < seqs.size(); i++) {
                int[] s = seqs.get(i);
                if (s.length > maxPos) throw new IllegalArgumentException("sequence longer than maxPositions");
                logitsInputs.add(s);
                float[] r = new float[(s.length - from[i]) * vocab];
                for (int t = from[i]; t < s.length; t++) {
                    System.arraycopy(rowOf.apply(Arrays.copyOf(s, t + 1)), 0, r, (t - from[i]) * vocab, vocab);
                }
                out.add(r);
            }
            return out;
        }

        public Session newSession() { return new S(new int[0]); }

        final class S implements Session {
            int[] toks;
            S(int[] toks) { this.toks = toks; }

            public float[] append(int[] tokens) {
                float[] all = appendAll(tokens);
                return Arrays.copyOfRange(all, all.length - vocab, all.length);
            }

            public float[] appendAll(int[] tokens) {
                sessionTokens += tokens.length;
                int old = toks.length;
                toks = Arrays.copyOf(toks, old + tokens.length);
                System.arraycopy(tokens, 0, toks, old, tokens.length);
                float[] r = new float[tokens.length * vocab];
                for (int t = old; t < toks.length; t++) System.arraycopy(rowOf.apply(Arrays.copyOf(toks, t + 1)), 0, r, (t - old) * vocab, vocab);
                return r;
            }

            public int length() { return toks.length; }
            public Session fork() { return new S(toks.clone()); }
        }
    }

    /** Logits depend on the last token only: row[v] = sin(0.37 * last + 1.3 * v) * 3. */
    static float[] bigramRow(int last, int vocab) {
        float[] r = new float[vocab];
        for (int v = 0; v < vocab; v++) r[v] = (float) (Math.sin(0.37 * last + 1.3 * v) * 3);
        return r;
    }

    /** Word codec: text "t5 t17" is tokens [5, 17] (spaces belong to the following word); BOS "<bos>" = 2, EOS = 1. */
    static final class WordCodec implements TextCodec {
        public int[] encode(String text, boolean withBos) {
            List<Integer> ids = new ArrayList<>();
            if (withBos) ids.add(2);
            for (String w : text.split(" ")) {
                if (w.isEmpty()) continue;
                if (!w.matches("t[0-9]+")) throw new IllegalArgumentException("word codec: bad word '" + w + "'");
                ids.add(Integer.parseInt(w.substring(1)));
            }
            return ids.stream().mapToInt(Integer::intValue).toArray();
        }

        public String decode(int[] ids) {
            StringBuilder sb = new StringBuilder();
            for (int id : ids) if (id > 2) sb.append(" t").append(id);
            return sb.toString();
        }

        public int bosId() { return 2; }
        public int eosId() { return 1; }
        public String bosToken() { return "<bos>"; }
        public String eosToken() { return "<eos>"; }
    }

    static String words(int[] ids, int from, int to) {
        StringBuilder sb = new StringBuilder();
        for (int i = from; i < to; i++) sb.append(i == from ? "" : " ").append('t').append(ids[i]);
        return sb.toString();
    }
}
