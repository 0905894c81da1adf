package dev.peft4j.eval;

import dev.peft4j.model.CausalLM;
import dev.peft4j.model.LogitRows;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.IntConsumer;

/**
 * lm-eval's {@code HFLM} request types on top of a {@link CausalLM}: {@code loglikelihood} (REFERENCE 3.4) and
 * {@code generate_until} (REFERENCE 3.6).
 *
 * <p>Requests are grouped by their context tokens, longest first, {@code batchSize} contexts per model call. A context whose
 * continuations are all one token long is scored from one logits row (every choice reads it); for the others each choice
 * is scored as context + continuation[:-1], and the model ({@link CausalLM#logitRows}) computes the shared context once and
 * each choice's own tokens from its cache, running the output head only for the rows scored. Rows are read in place and
 * scored on every core.
 */
public final class HarnessLM implements EvalLM {
    public record LLRequest(String context, String continuation) {}

    /** Summed log-probability of the continuation and whether greedy decoding would have produced it. */
    public record LL(double logprob, boolean greedy) {}

    public record GenRequest(String context, List<String> until, int maxGenToks) {}

    /** Token ids of a request after lm-eval's {@code _encode_pair}. */
    public record Pair(int[] context, int[] continuation) {}

    private final CausalLM lm;
    private final TextCodec tok;
    private final int batchSize;
    private final int maxLength;
    private final Map<String, int[]> contextCache = new HashMap<>();

    public HarnessLM(CausalLM lm, TextCodec tok, int batchSize) {
        this.lm = lm;
        this.tok = tok;
        this.batchSize = Math.max(1, batchSize);
        this.maxLength = lm.maxPositions();
        this.maxLogitRows = (int) Math.max(16, Math.min(4096, Runtime.getRuntime().maxMemory() / 5 / (4L * Math.max(1, lm.vocabSize()))));
    }

    /** Most logits rows one scoring call returns (a fifth of the heap; at least 16): batches respect the heap. */
    private final int maxLogitRows;

    /** {@code tok_encode}: Gemma's tokenizer adds BOS, unless the text already starts with the BOS string. */
    public int[] tokEncode(String text) {
        return tok.encode(text, !text.startsWith(tok.bosToken()));
    }

    /** {@code _encode_pair}: trailing context whitespace moves to the continuation; continuation = whole[len(context):]. */
    public Pair encodePair(String context, String continuation) {
        if (context.isEmpty()) return new Pair(new int[]{tok.bosId()}, tok.encode(continuation, false));
        String stripped = Py.rstrip(context);
        int nSpaces = context.length() - stripped.length();
        if (nSpaces > 0) {
            continuation = context.substring(stripped.length()) + continuation;
            context = stripped;
        }
        int[] whole = tokEncode(context + continuation);
        int[] ctx = contextCache.computeIfAbsent(context, this::tokEncode);
        int[] cont = Arrays.copyOfRange(whole, Math.min(ctx.length, whole.length), whole.length);
        if (cont.length == 0) {
            throw new dev.peft4j.util.UserException("continuation '" + continuation + "' has no tokens of its own after context '"
                    + tail(context) + "' (the tokenizer merged it into the context)");
        }
        return new Pair(ctx, cont);
    }

    private static String tail(String s) { return s.length() <= 60 ? s : "..." + s.substring(s.length() - 60); }

    private record Key(int[] ids) {
        @Override public boolean equals(Object o) { return o instanceof Key k && Arrays.equals(ids, k.ids); }
        @Override public int hashCode() { return Arrays.hashCode(ids); }
    }

    /** Scores every request; {@code progress} receives the number of requests finished by each step. */
    @Override
    public List<LL> loglikelihood(List<LLRequest> requests, IntConsumer progress) {
        LL[] out = new LL[requests.size()];
        int[][] conts = new int[requests.size()][];
        Map<Key, List<Integer>> groups = new LinkedHashMap<>();
        List<Integer> overlong = new ArrayList<>();
        List<int[]> ctxOf = new ArrayList<>();
        for (int i = 0; i < requests.size(); i++) {
            Pair p = encodePair(requests.get(i).context(), requests.get(i).continuation());
            conts[i] = p.continuation();
            ctxOf.add(p.context());
            if (p.context().length + p.continuation().length - 1 > maxLength) overlong.add(i);
            else groups.computeIfAbsent(new Key(p.context()), k -> new ArrayList<>()).add(i);
        }
        contextCache.clear();

        // Longest first, as lm-eval orders its batches.
        List<Map.Entry<Key, List<Integer>>> single = new ArrayList<>(), multi = new ArrayList<>();
        for (var e : groups.entrySet()) {
            boolean allSingle = e.getValue().stream().allMatch(i -> conts[i].length == 1);
            (allSingle ? single : multi).add(e);
        }
        Comparator<Map.Entry<Key, List<Integer>>> longestFirst = Comparator.comparingInt(e -> -e.getKey().ids().length);
        single.sort(longestFirst);
        multi.sort(longestFirst);

        for (int b = 0; b < single.size(); b += batchSize) {
            List<Map.Entry<Key, List<Integer>>> batch = single.subList(b, Math.min(single.size(), b + batchSize));
            List<int[]> seqs = batch.stream().map(e -> e.getKey().ids()).toList();
            int[] from = seqs.stream().mapToInt(s -> s.length - 1).toArray();
            LogitRows rows = lm.logitRows(seqs, from);
            int done = 0;
            List<int[]> jobs = new ArrayList<>();
            for (int j = 0; j < batch.size(); j++) {
                for (int i : batch.get(j).getValue()) { jobs.add(new int[]{i, j}); done++; }
            }
            scoreAll(rows, jobs, conts, out);
            progress.accept(done);
        }

        // Multi-token continuations: each choice is scored as context + continuation[:-1] in one batched call per group of
        // contexts; the model computes each shared context once (its choices are consecutive), then only their own tokens.
        // A call returns vocab floats per continuation token (1 MB for Gemma 3): a batch also stops at the heap's row budget.
        for (int b = 0; b < multi.size(); ) {
            int e0 = b, rowsHeld = 0;
            while (e0 < multi.size() && e0 - b < batchSize) {
                int r = 0;
                for (int i : multi.get(e0).getValue()) r += conts[i].length;
                if (e0 > b && rowsHeld + r > maxLogitRows) break;
                rowsHeld += r;
                e0++;
            }
            List<Map.Entry<Key, List<Integer>>> batch = multi.subList(b, e0);
            b = e0;
            List<int[]> seqs = new ArrayList<>();
            List<Integer> who = new ArrayList<>();
            List<Integer> fromList = new ArrayList<>();
            for (var e : batch) {
                int[] ctx = e.getKey().ids();
                for (int i : e.getValue()) {
                    int[] c = conts[i];
                    int[] seq = Arrays.copyOf(ctx, ctx.length + c.length - 1);
                    System.arraycopy(c, 0, seq, ctx.length, c.length - 1);
                    seqs.add(seq);
                    who.add(i);
                    fromList.add(ctx.length - 1);
                }
            }
            LogitRows rows = lm.logitRows(seqs, fromList.stream().mapToInt(Integer::intValue).toArray());
            List<int[]> jobs = new ArrayList<>();
            for (int k = 0; k < seqs.size(); k++) jobs.add(new int[]{who.get(k), k});
            scoreAll(rows, jobs, conts, out);
            progress.accept(seqs.size());
        }

        for (int i : overlong) {
            int[] ctx = ctxOf.get(i), cont = conts[i];
            int[] joined = new int[ctx.length + cont.length];
            System.arraycopy(ctx, 0, joined, 0, ctx.length);
            System.arraycopy(cont, 0, joined, ctx.length, cont.length);
            // (context + continuation)[-(max_length + 1):][:-1]
            int start = Math.max(0, joined.length - (maxLength + 1));
            int[] inp = Arrays.copyOfRange(joined, start, joined.length - 1);
            int contLen = Math.min(cont.length, inp.length);
            LogitRows rows = lm.logitRows(List.of(inp), new int[]{inp.length - contLen});
            out[i] = score(rows, 0, Arrays.copyOfRange(cont, cont.length - contLen, cont.length));
            progress.accept(1);
        }
        return Arrays.asList(out);
    }

    /** Sum of log-softmax(row_k)[cont_k] over rows starting at {@code off}, and whether each token is the row's argmax. */
    static LL score(float[] rows, int off, int vocab, int[] cont) {
        double sum = 0;
        boolean greedy = true;
        for (int k = 0; k < cont.length; k++) {
            int base = off + k * vocab;
            sum += rows[base + cont[k]] - logSumExp(rows, base, vocab);
            if (greedy && !isArgmax(rows, base, vocab, cont[k])) greedy = false;
        }
        return new LL(sum, greedy);
    }

    /** {@link #score(float[], int, int, int[])} over the rows of sequence {@code seq}, read in place. */
    static LL score(LogitRows rows, int seq, int[] cont) {
        double sum = 0;
        boolean greedy = true;
        int vocab = rows.vocab();
        for (int k = 0; k < cont.length; k++) {
            float[] a = rows.array(seq, k);
            int base = rows.offset(seq, k);
            float max = max(a, base, vocab);
            sum += a[base + cont[k]] - logSumExp(a, base, vocab, max);
            if (greedy && !isArgmax(a, base, cont[k], max)) greedy = false;
        }
        return new LL(sum, greedy);
    }

    /** out[job[0]] = the score of continuation conts[job[0]] on sequence job[1] of {@code rows}, the jobs spread over the cores. */
    private static void scoreAll(LogitRows rows, List<int[]> jobs, int[][] conts, LL[] out) {
        dev.peft4j.tensor.Parallel.forRange(jobs.size(), 1, (a, b) -> {
            for (int q = a; q < b; q++) out[jobs.get(q)[0]] = score(rows, jobs.get(q)[1], conts[jobs.get(q)[0]]);
        });
    }

    /** The largest of a[off..off+n) as {@link #logSumExp(float[], int, int)} finds it (vector maximum, then the tail). */
    static float max(float[] a, int off, int n) {
        var sp = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;
        int L = sp.length(), i = 0;
        var mv = jdk.incubator.vector.FloatVector.broadcast(sp, Float.NEGATIVE_INFINITY);
        for (; i + L <= n; i += L) mv = mv.max(jdk.incubator.vector.FloatVector.fromArray(sp, a, off + i));
        float max = mv.reduceLanes(jdk.incubator.vector.VectorOperators.MAX);
        for (; i < n; i++) max = Math.max(max, a[off + i]);
        return max;
    }

    /** {@link #isArgmax(float[], int, int, int)} given the row's {@link #max}. */
    private static boolean isArgmax(float[] a, int off, int t, float max) {
        float v = a[off + t];
        if (!(v >= max)) return false;
        for (int j = 0; j < t; j++) if (a[off + j] >= v) return false;
        return true;
    }

    /**
     * Whether {@code t} is the row's argmax (the first index of the largest value, as {@link #argmax}): a vectorized check
     * that nothing is larger, then (only when t ties the maximum) that no earlier index ties it.
     */
    static boolean isArgmax(float[] a, int off, int n, int t) {
        float v = a[off + t];
        var sp = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;
        int L = sp.length(), i = 0;
        var mv = jdk.incubator.vector.FloatVector.broadcast(sp, Float.NEGATIVE_INFINITY);
        for (; i + L <= n; i += L) mv = mv.max(jdk.incubator.vector.FloatVector.fromArray(sp, a, off + i));
        float max = mv.reduceLanes(jdk.incubator.vector.VectorOperators.MAX);
        for (; i < n; i++) max = Math.max(max, a[off + i]);
        if (!(v >= max)) return false;
        for (int j = 0; j < t; j++) if (a[off + j] >= v) return false;
        return true;
    }

    /** log Σ exp(a[off..off+n)), vectorized (the vocabulary is 262,144 wide, scored for every continuation token); {@code peft4j serve} uses it too, so its log-probabilities are the same numbers. */
    public static double logSumExp(float[] a, int off, int n) {
        return logSumExp(a, off, n, max(a, off, n));
    }

    /** {@link #logSumExp(float[], int, int)} given the row's {@link #max}. */
    static double logSumExp(float[] a, int off, int n, float max) {
        var sp = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;
        int L = sp.length(), i = 0;
        var acc = jdk.incubator.vector.FloatVector.zero(sp);
        double s = 0;
        for (; i + L <= n; i += L) {
            acc = acc.add(dev.peft4j.tensor.Ops.exp(jdk.incubator.vector.FloatVector.fromArray(sp, a, off + i).sub(max)));
            if ((i / L) % 256 == 255) { s += dev.peft4j.tensor.Ops.hsum(acc); acc = jdk.incubator.vector.FloatVector.zero(sp); }
        }
        s += dev.peft4j.tensor.Ops.hsum(acc);
        for (; i < n; i++) s += Math.exp(a[off + i] - max);
        return max + Math.log(s);
    }

    static int argmax(float[] a, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) if (a[off + i] > a[off + best]) best = i;
        return best;
    }

    private static boolean containsAny(String text, List<String> stops) {
        for (String x : stops) if (!x.isEmpty() && text.contains(x)) return true;
        return false;
    }

    /** Greedy generation until a stop string or EOS, cut at the first occurrence of each stop string in turn. */
    @Override
    public List<String> generateUntil(List<GenRequest> requests, IntConsumer progress) {
        List<String> out = new ArrayList<>(requests.size());
        int vocab = lm.vocabSize();
        for (GenRequest r : requests) {
            List<String> stops = new ArrayList<>(r.until());
            if (!stops.contains(tok.eosToken())) stops.add(tok.eosToken());
            int[] ctx = tokEncode(r.context());
            int maxCtx = Math.max(1, maxLength - r.maxGenToks());
            if (ctx.length > maxCtx) ctx = Arrays.copyOfRange(ctx, ctx.length - maxCtx, ctx.length);
            CausalLM.Session s = lm.newSession();
            float[] row = s.append(ctx);
            List<Integer> gen = new ArrayList<>();
            String text = "";
            for (int step = 0; step < r.maxGenToks(); step++) {
                int t = argmax(row, 0, vocab);
                if (t == tok.eosId()) break;
                gen.add(t);
                text = tok.decode(gen.stream().mapToInt(Integer::intValue).toArray());
                if (containsAny(text, stops)) break;
                if (step + 1 == r.maxGenToks() || s.length() >= lm.maxPositions()) break;
                row = s.append(new int[]{t});
            }
            for (String term : stops) {
                if (term.isEmpty()) continue;
                int k = text.indexOf(term);
                if (k >= 0) text = text.substring(0, k);
            }
            out.add(text);
            progress.accept(1);
        }
        return out;
    }
}
