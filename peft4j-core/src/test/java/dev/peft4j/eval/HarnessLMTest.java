package dev.peft4j.eval;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.peft4j.Shared;
import dev.peft4j.eval.FakeLMs.PrefixLM;
import dev.peft4j.eval.FakeLMs.WordCodec;
import dev.peft4j.eval.HarnessLM.LL;
import dev.peft4j.eval.HarnessLM.LLRequest;
import dev.peft4j.model.CausalLM;
import dev.peft4j.tokenizer.Tokenizer;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static dev.peft4j.eval.FakeLMs.words;
import static org.junit.jupiter.api.Assertions.*;

class HarnessLMTest {
    private static final int V = 1024;

    /** Test-only safetensors reader: 8-byte LE header length, JSON header, raw little-endian data. */
    static ByteBuffer tensor(Path file, String name) throws IOException {
        byte[] all = Files.readAllBytes(file);
        ByteBuffer b = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        long n = b.getLong(0);
        JsonNode h = new ObjectMapper().readTree(new String(all, 8, (int) n, java.nio.charset.StandardCharsets.UTF_8));
        JsonNode off = h.get(name).get("data_offsets");
        int start = (int) (8 + n + off.get(0).asLong()), end = (int) (8 + n + off.get(1).asLong());
        return ByteBuffer.wrap(Arrays.copyOfRange(all, start, end)).order(ByteOrder.LITTLE_ENDIAN);
    }

    int[][] ids = new int[3][20];
    float[][][] logits = new float[3][20][V];

    private PrefixLM fixtureLM(int maxPos) throws IOException {
        Path f = Shared.require("fixtures/tiny-gemma3-reference.safetensors");
        ByteBuffer i = tensor(f, "input_ids"), l = tensor(f, "logits");
        for (int s = 0; s < 3; s++) for (int t = 0; t < 20; t++) {
            ids[s][t] = i.getInt();
            for (int v = 0; v < V; v++) logits[s][t][v] = l.getFloat();
        }
        return new PrefixLM(V, maxPos, prefix -> {
            for (int s = 0; s < 3; s++) {
                if (prefix.length <= 20 && Arrays.equals(prefix, Arrays.copyOf(ids[s], prefix.length))) return logits[s][prefix.length - 1];
            }
            throw new IllegalArgumentException("prefix not in the fixture: " + Arrays.toString(prefix));
        });
    }

    /** Hand computation straight from the reference logits: sum_k log_softmax(logits[s, pos+k])[tok_k]. */
    private double handLL(int s, int lastCtxPos, int[] toks) {
        double sum = 0;
        for (int k = 0; k < toks.length; k++) {
            float[] row = logits[s][lastCtxPos + k];
            double max = Double.NEGATIVE_INFINITY;
            for (float x : row) max = Math.max(max, x);
            double z = 0;
            for (float x : row) z += Math.exp(x - max);
            sum += row[toks[k]] - max - Math.log(z);
        }
        return sum;
    }

    private boolean handGreedy(int s, int lastCtxPos, int[] toks) {
        for (int k = 0; k < toks.length; k++) {
            float[] row = logits[s][lastCtxPos + k];
            int best = 0;
            for (int v = 1; v < V; v++) if (row[v] > row[best]) best = v;
            if (best != toks[k]) return false;
        }
        return true;
    }

    @Test
    void loglikelihoodsEqualReferenceLogits() throws IOException {
        PrefixLM lm = fixtureLM(32768);
        HarnessLM h = new HarnessLM(lm, new WordCodec(), 2);
        List<LLRequest> reqs = new ArrayList<>();
        List<double[]> expected = new ArrayList<>();
        List<Boolean> expectedGreedy = new ArrayList<>();
        // Sequence s: context = tokens 1..c-1 (BOS added by tok_encode), continuation = tokens c..c+m-1 of the fixture.
        int[][] cases = {{0, 10, 1}, {0, 10, 4}, {1, 5, 1}, {1, 5, 15}, {2, 12, 1}, {2, 3, 2}};
        for (int[] c : cases) {
            int s = c[0], ctxEnd = c[1], m = c[2];
            // trailing space on the context exercises the whitespace move of _encode_pair
            reqs.add(new LLRequest(words(ids[s], 1, ctxEnd) + " ", words(ids[s], ctxEnd, ctxEnd + m)));
            int[] cont = Arrays.copyOfRange(ids[s], ctxEnd, ctxEnd + m);
            expected.add(new double[]{handLL(s, ctxEnd - 1, cont)});
            expectedGreedy.add(handGreedy(s, ctxEnd - 1, cont));
        }
        // Single-token choices that are not the fixture's next token (scored from the context's last row).
        for (int tokId : new int[]{5, 600, 1023}) {
            reqs.add(new LLRequest(words(ids[2], 1, 12), " t" + tokId));
            expected.add(new double[]{handLL(2, 11, new int[]{tokId})});
            expectedGreedy.add(handGreedy(2, 11, new int[]{tokId}));
        }
        List<LL> got = h.loglikelihood(reqs, n -> {});
        for (int i = 0; i < reqs.size(); i++) {
            assertEquals(expected.get(i)[0], got.get(i).logprob(), 1e-4, "request " + i);
            assertEquals(expectedGreedy.get(i), got.get(i).greedy(), "greedy flag of request " + i);
        }
    }

    @Test
    void theRealTinyModelGivesTheReferenceLoglikelihoods() throws IOException {
        fixtureLM(32768); // loads ids and reference logits
        CausalLM model = dev.peft4j.model.Models.load(Shared.require("fixtures/tiny-gemma3"), null);
        HarnessLM h = new HarnessLM(model, new WordCodec(), 2);
        List<LLRequest> reqs = new ArrayList<>();
        List<Double> expected = new ArrayList<>();
        int[][] cases = {{0, 10, 1}, {0, 10, 6}, {1, 4, 16}, {2, 12, 1}, {2, 12, 8}, {1, 19, 1}};
        for (int[] c : cases) {
            int s = c[0], ctxEnd = c[1], m = c[2];
            reqs.add(new LLRequest(words(ids[s], 1, ctxEnd), " " + words(ids[s], ctxEnd, ctxEnd + m)));
            expected.add(handLL(s, ctxEnd - 1, Arrays.copyOfRange(ids[s], ctxEnd, ctxEnd + m)));
        }
        List<LL> got = h.loglikelihood(reqs, n -> {});
        for (int i = 0; i < reqs.size(); i++) assertEquals(expected.get(i), got.get(i).logprob(), 2e-4, "request " + i);
    }

    @Test
    void singleTokenChoicesShareOneBatchedForward() throws IOException {
        PrefixLM lm = fixtureLM(32768);
        HarnessLM h = new HarnessLM(lm, new WordCodec(), 8);
        List<LLRequest> reqs = new ArrayList<>();
        for (int s = 0; s < 3; s++) for (int choice : new int[]{10, 20, 30, 40}) reqs.add(new LLRequest(words(ids[s], 1, 9), " t" + choice));
        List<LL> got = h.loglikelihood(reqs, n -> {});
        assertEquals(1, lm.logitsCalls, "three contexts x four one-token choices: one batched forward");
        assertEquals(0, lm.sessionTokens);
        for (int s = 0; s < 3; s++) for (int k = 0; k < 4; k++) {
            assertEquals(handLL(s, 8, new int[]{10 * (k + 1)}), got.get(s * 4 + k).logprob(), 1e-4);
        }
    }

    @Test
    void multiTokenChoicesOfAContextGoInOneBatchedCall() {
        PrefixLM lm = new PrefixLM(64, 1000, p -> FakeLMs.bigramRow(p[p.length - 1], 64));
        HarnessLM h = new HarnessLM(lm, new WordCodec(), 4);
        String ctx = "t10 t11 t12 t13 t14 t15 t16 t17 t18 t19";
        List<LLRequest> reqs = List.of(new LLRequest(ctx, " t20 t21 t22"), new LLRequest(ctx, " t30"),
                new LLRequest(ctx, " t40 t41"), new LLRequest(ctx, " t50 t51 t52 t53"));
        List<LL> got = h.loglikelihood(reqs, n -> {});
        // one call with context + continuation[:-1] per choice; the model reuses the shared context's cache
        // (Gemma3LM: PrefixReuseTest checks that only the new tokens run)
        assertEquals(1, lm.logitsCalls);
        assertEquals(0, lm.sessionTokens);
        assertEquals(bigramLL(19, new int[]{20, 21, 22}), got.get(0).logprob(), 1e-6);
        assertEquals(bigramLL(19, new int[]{30}), got.get(1).logprob(), 1e-6);
        assertEquals(bigramLL(19, new int[]{40, 41}), got.get(2).logprob(), 1e-6);
        assertEquals(bigramLL(19, new int[]{50, 51, 52, 53}), got.get(3).logprob(), 1e-6);
    }

    private static double bigramLL(int prev, int[] toks) {
        double sum = 0;
        for (int t : toks) {
            float[] r = FakeLMs.bigramRow(prev, 64);
            double z = 0;
            for (float x : r) z += Math.exp(x);
            sum += r[t] - Math.log(z);
            prev = t;
        }
        return sum;
    }

    @Test
    void overlongInputsAreLeftTruncatedLikeLmEval() {
        PrefixLM lm = new PrefixLM(64, 6, p -> FakeLMs.bigramRow(p[p.length - 1], 64));
        HarnessLM h = new HarnessLM(lm, new WordCodec(), 4);
        // BOS + 6 context + 3 continuation = 10 tokens; input = joined[-(6+1):][:-1] = 6 tokens ending at t21.
        List<LL> got = h.loglikelihood(List.of(new LLRequest("t10 t11 t12 t13 t14 t15", " t20 t21 t22")), n -> {});
        assertArrayEquals(new int[]{13, 14, 15, 20, 21}, Arrays.copyOfRange(lm.logitsInputs.get(0), 1, 6));
        assertEquals(6, lm.logitsInputs.get(0).length);
        assertEquals(bigramLL(15, new int[]{20, 21, 22}), got.get(0).logprob(), 1e-6);
    }

    @Test
    void aContinuationWithoutTokensIsAUserError() {
        HarnessLM h = new HarnessLM(new PrefixLM(8, 100, p -> new float[8]), new WordCodec(), 1);
        var e = assertThrows(dev.peft4j.util.UserException.class, () -> h.encodePair("t5", ""));
        assertTrue(e.getMessage().contains("no tokens of its own"), e.getMessage());
    }

    @Test
    void generationStopsAtStopStringsAndCuts() {
        // Bigram LM over 64 tokens: greedy from a given last token is deterministic; the word codec decodes " tN".
        PrefixLM lm = new PrefixLM(64, 1000, p -> FakeLMs.bigramRow(p[p.length - 1], 64));
        HarnessLM h = new HarnessLM(lm, new WordCodec(), 1);
        int t1 = HarnessLM.argmax(FakeLMs.bigramRow(15, 64), 0, 64);
        int t2 = HarnessLM.argmax(FakeLMs.bigramRow(t1, 64), 0, 64);
        List<String> out = h.generateUntil(List.of(
                new HarnessLM.GenRequest("t15", List.of("never"), 2),
                new HarnessLM.GenRequest("t15", List.of(" t" + t2), 50)), n -> {});
        assertEquals(" t" + t1 + " t" + t2, out.get(0));
        assertEquals(" t" + t1, out.get(1));
    }

    @Test
    void encodePairFollowsLmEvalWithTheGemmaTokenizer() {
        Path dir = Shared.require("tokenizers/gemma3");
        try (Tokenizer t = Tokenizer.load(dir)) {
            HarnessLM h = new HarnessLM(new PrefixLM(8, 100, p -> new float[8]), TextCodec.of(t), 1);
            String ctx = "Question: What is the capital of France?\nAnswer:";
            HarnessLM.Pair p = h.encodePair(ctx, " Paris");
            int[] whole = t.encode(ctx + " Paris", true);
            assertEquals(2, p.context()[0], "BOS first");
            assertArrayEquals(t.encode(ctx, true), p.context());
            assertArrayEquals(Arrays.copyOfRange(whole, p.context().length, whole.length), p.continuation());
            // Trailing whitespace of the context moves to the continuation.
            HarnessLM.Pair q = h.encodePair(ctx + " ", "Paris");
            assertArrayEquals(p.context(), q.context());
            assertArrayEquals(p.continuation(), q.continuation());
            // A context that already starts with <bos> gets no second one.
            assertArrayEquals(t.encode(ctx, true), h.tokEncode("<bos>" + ctx));
        }
    }
}
