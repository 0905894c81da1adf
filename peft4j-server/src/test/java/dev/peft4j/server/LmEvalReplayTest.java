package dev.peft4j.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.eval.HarnessLM;
import dev.peft4j.eval.TextCodec;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Models;
import dev.peft4j.serve.Engine;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * lm-evaluation-harness's {@code local-completions} model replayed against the server: its log-likelihood payload
 * ({@code prompt} = token-id lists, max_tokens 1, temperature 0, logprobs 1, echo, seed 1234), its
 * {@code batch_loglikelihood_requests} truncation and its {@code parse_logprobs} ({@code sum(token_logprobs[ctxlen:-1])},
 * greedy when each token's log-probability equals the max of its {@code top_logprobs}), and its generation payload and
 * {@code parse_generations}. The results must equal what {@code peft4j eval} ({@link HarnessLM}) computes for the same
 * requests: log-probabilities to 1e-4, the same greedy flags, the same accuracy on a small multiple-choice task, the same
 * generated text.
 */
class LmEvalReplayTest {
    @TempDir
    static java.nio.file.Path tmp;
    static ServerFixture f;
    static final int MAX_LENGTH = 200;      // lm-eval's max_length model arg
    static final int BATCH = 4;             // lm-eval's batch_size model arg

    @BeforeAll
    static void setUp() throws Exception {
        f = new ServerFixture(tmp, new Engine.Config(8, 64, 1 << 16, 32), o -> o.withHeartbeatMs(10));   // parsed through heartbeat whitespace too
    }

    @AfterAll
    static void tearDown() { f.close(); }

    /** A small multiple-choice task: each doc has a context, 4 choices, the gold index. */
    record Doc(String context, List<String> choices, int gold) {}

    static List<Doc> task() {
        String[] ctx = {"The capital of France is", "Water boils at", "Give three tips for staying healthy.\nAnswer:",
                "The quick brown fox", "Question: what color is the sky?\nAnswer:", "A haiku about the sea:",
                "Summarize the text below in one line. The meeting moved to Tuesday because of the holiday.",
                "Classify the animal: whale. Category:"};
        String[][] ch = {{" Paris", " London", " a city in Europe with a long history", " Rome"},
                {" 100 degrees", " zero", " a very high temperature indeed", " cold"},
                {" Eat well.", " Sleep.", " Exercise daily and drink water.", " Nothing."},
                {" jumps over the lazy dog", " runs", " sleeps", " is brown"},
                {" blue", " green", " it depends on the time of day", " red"},
                {" waves", " salt and foam at dusk", " fish", " the tide returns"},
                {" The meeting is on Tuesday.", " Holiday.", " Tuesday", " It moved."},
                {" mammal", " fish", " bird", " a large marine mammal"}};
        List<Doc> d = new ArrayList<>();
        for (int i = 0; i < ctx.length; i++) d.add(new Doc(ctx[i], List.of(ch[i]), i % 4));
        return d;
    }

    record LL(double logprob, boolean greedy) {}

    /** lm-eval's LocalCompletionsAPI._loglikelihood_tokens over HTTP (batches of BATCH requests, longest first). */
    static List<LL> lmEvalLoglikelihood(String model, List<HarnessLM.Pair> pairs) throws Exception {
        LL[] out = new LL[pairs.size()];
        List<Integer> order = new ArrayList<>();
        for (int i = 0; i < pairs.size(); i++) order.add(i);
        order.sort(Comparator.comparingInt(i -> -(pairs.get(i).context().length + pairs.get(i).continuation().length)));
        for (int b = 0; b < order.size(); b += BATCH) {
            List<Integer> chunk = order.subList(b, Math.min(order.size(), b + BATCH));
            ObjectNode payload = ServerFixture.JSON.createObjectNode();
            payload.put("model", model);
            ArrayNode prompt = payload.putArray("prompt");
            List<Integer> ctxlens = new ArrayList<>();
            for (int i : chunk) {
                int[] c = pairs.get(i).context(), k = pairs.get(i).continuation();
                int[] all = new int[c.length + k.length];
                System.arraycopy(c, 0, all, 0, c.length);
                System.arraycopy(k, 0, all, c.length, k.length);
                int start = Math.max(0, all.length - MAX_LENGTH);                       // (ctx + cont)[-max_length:]
                ArrayNode p = prompt.addArray();
                for (int t = start; t < all.length; t++) p.add(all[t]);
                ctxlens.add(c.length - Math.max(0, c.length + k.length - MAX_LENGTH));
            }
            payload.put("temperature", 0);
            payload.put("max_tokens", 1);
            payload.put("logprobs", 1);
            payload.put("seed", 1234);
            payload.put("echo", true);
            JsonNode resp = f.ok("/v1/completions", payload.toString());
            // parse_logprobs: choices sorted by index, zipped with ctxlens
            List<JsonNode> choices = new ArrayList<>();
            resp.get("choices").forEach(choices::add);
            choices.sort(Comparator.comparingInt(c -> c.get("index").asInt()));
            assertEquals(chunk.size(), choices.size());
            for (int j = 0; j < chunk.size(); j++) {
                JsonNode lp = choices.get(j).get("logprobs");
                JsonNode tl = lp.get("token_logprobs"), top = lp.get("top_logprobs");
                int ctxlen = ctxlens.get(j);
                assertTrue(ctxlen > 0);
                double sum = 0;
                boolean greedy = true;
                for (int t = ctxlen; t < tl.size() - 1; t++) {                          // [ctxlen:-1]
                    double v = tl.get(t).asDouble();
                    sum += v;
                    double max = Double.NEGATIVE_INFINITY;
                    for (var e : top.get(t).properties()) max = Math.max(max, e.getValue().asDouble());
                    if (greedy && v != max) greedy = false;
                }
                out[chunk.get(j)] = new LL(sum, greedy);
            }
        }
        return List.of(out);
    }

    static int argmax(double[] v) {
        int b = 0;
        for (int i = 1; i < v.length; i++) if (v[i] > v[b]) b = i;
        return b;
    }

    @Test
    void loglikelihoodsAndAccuracyEqualPeft4jEval() throws Exception {
        List<Doc> docs = task();
        for (String model : new String[]{"tiny", "lora", "pt", "ia3", "prefix"}) {
            Gemma3LM lm = Models.load(f.tiny.model, model.equals("tiny") ? null : f.tiny.root.resolve(model));
            HarnessLM h = new HarnessLM(lm, TextCodec.of(f.tok), 4);
            List<HarnessLM.LLRequest> reqs = new ArrayList<>();
            List<HarnessLM.Pair> pairs = new ArrayList<>();
            for (Doc d : docs) {
                for (String c : d.choices()) {
                    reqs.add(new HarnessLM.LLRequest(d.context(), c));
                    pairs.add(h.encodePair(d.context(), c));        // lm-eval's _encode_pair, as peft4j eval does it
                }
            }
            List<HarnessLM.LL> want = h.loglikelihood(reqs, x -> {});
            List<LL> got = lmEvalLoglikelihood(model, pairs);
            int greedyTrue = 0;
            for (int i = 0; i < reqs.size(); i++) {
                assertEquals(want.get(i).logprob(), got.get(i).logprob(), 1e-4, model + " request " + i);
                assertEquals(want.get(i).greedy(), got.get(i).greedy(), model + " request " + i + " greedy");
                if (got.get(i).greedy()) greedyTrue++;
            }
            // acc and acc_norm (by characters) on the task: identical
            int accWant = 0, accGot = 0, normWant = 0, normGot = 0;
            for (int d = 0; d < docs.size(); d++) {
                double[] a = new double[4], b = new double[4], an = new double[4], bn = new double[4];
                for (int c = 0; c < 4; c++) {
                    a[c] = want.get(d * 4 + c).logprob();
                    b[c] = got.get(d * 4 + c).logprob();
                    an[c] = a[c] / docs.get(d).choices().get(c).length();
                    bn[c] = b[c] / docs.get(d).choices().get(c).length();
                }
                assertEquals(argmax(a), argmax(b), model + " doc " + d);
                assertEquals(argmax(an), argmax(bn), model + " doc " + d);
                if (argmax(a) == docs.get(d).gold()) accWant++;
                if (argmax(b) == docs.get(d).gold()) accGot++;
                if (argmax(an) == docs.get(d).gold()) normWant++;
                if (argmax(bn) == docs.get(d).gold()) normGot++;
            }
            assertEquals(accWant, accGot, model + " acc");
            assertEquals(normWant, normGot, model + " acc_norm");
        }
    }

    @Test
    void generateUntilEqualsPeft4jEval() throws Exception {
        Gemma3LM lm = Models.load(f.tiny.model, f.tiny.root.resolve("lora"));
        HarnessLM h = new HarnessLM(lm, TextCodec.of(f.tok), 1);
        List<HarnessLM.GenRequest> reqs = List.of(
                new HarnessLM.GenRequest("Question: name a fruit.\nAnswer:", List.of("\n\n", "Question:"), 24),
                new HarnessLM.GenRequest("Write a list of colors:", List.of("."), 16),
                new HarnessLM.GenRequest("Once upon a time", List.of(), 12));
        List<String> want = h.generateUntil(reqs, x -> {});
        for (int i = 0; i < reqs.size(); i++) {
            HarnessLM.GenRequest r = reqs.get(i);
            // LocalCompletionsAPI._create_payload(generate=True): prompt (tokenized), max_tokens, temperature 0, stop = until + eos, seed
            ObjectNode payload = ServerFixture.JSON.createObjectNode();
            payload.put("model", "lora");
            payload.putArray("prompt").addArray().addAll(ids(h.tokEncode(r.context())));
            payload.put("max_tokens", r.maxGenToks());
            payload.put("temperature", 0);
            ArrayNode stop = payload.putArray("stop");
            r.until().forEach(stop::add);
            stop.add(f.tok.eosToken());
            payload.put("seed", 1234);
            JsonNode resp = f.ok("/v1/completions", payload.toString());
            assertEquals(want.get(i), resp.get("choices").get(0).get("text").asText(), "request " + i);
        }
    }

    static ArrayNode ids(int[] a) {
        ArrayNode n = ServerFixture.JSON.createArrayNode();
        for (int x : a) n.add(x);
        return n;
    }
}
