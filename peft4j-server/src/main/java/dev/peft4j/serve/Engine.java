package dev.peft4j.serve;

import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.KVCache;
import dev.peft4j.model.Sampler;
import dev.peft4j.tensor.Parallel;
import dev.peft4j.tokenizer.Tokenizer;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The serving engine: one scheduler thread owns the model and runs continuous batching. Each step it admits waiting requests
 * (up to {@code maxRunning} sequences and {@code maxKvTokens} positions of KV cache: a sequence holds its prompt's positions
 * when admitted and one more per generated token, as vLLM allocates as it goes; when the next step would not fit, the most
 * recently admitted sequences are preempted and later recomputed from their tokens so far, first in the queue),
 * gives prefilling sequences their next prompt chunk ({@code prefillChunk} tokens per step in all, so a long prompt never
 * stalls running streams), and advances every decoding sequence by one token, all in ONE packed forward of the base model
 * (its weights are read once per step for every sequence). Sequences of different adapters share the step: virtual tokens
 * and prefix caches are per-sequence inputs, LoRA/IA3 are applied to each sequence's rows ({@link dev.peft4j.model.SeqAdapter}).
 * The output head runs only for the rows that need a distribution. A sequence's prompt chunks do not depend on what else
 * runs, so (with row-independent kernels) a request's tokens do not depend on batching.
 *
 * <p>Use: {@link #submit} a {@link Request}, read its {@link Stream}; {@link Stream#cancel} frees the sequence at the next
 * step. No HTTP types here: the same engine serves Java callers directly.
 */
public final class Engine implements AutoCloseable {
    /** Limits of the scheduler. */
    public record Config(int maxRunning, int maxWaiting, int maxKvTokens, int prefillChunk) {
        public static Config defaults() { return new Config(16, 256, 131072, 256); }
    }

    /** Callbacks for metrics (called on the scheduler thread; must be quick). */
    public interface Listener {
        default void step(int sequences, int rows, double seconds) {}
        default void firstToken(double seconds) {}
        default void tokenLatency(double seconds) {}
        default void finished(int promptTokens, int completionTokens) {}
    }

    /**
     * One request: prompt token ids (BOS included where wanted), the adapter (null = the base), how to decode, extra EOS ids
     * (chat's {@code <end_of_turn>}).
     */
    public record Request(int[] prompt, AdapterRegistry.Entry adapter, SamplingParams params, int[] extraEos) {}

    public final Gemma3Model model;
    public final Tokenizer tokenizer;
    public final AdapterRegistry adapters;
    private final Config cfg;
    private final int[] eos;
    private final Listener listener;
    private final Thread thread;
    private final Object lock = new Object();
    private final ArrayDeque<Seq> waiting = new ArrayDeque<>();
    private final List<Seq> running = new ArrayList<>();
    private volatile boolean draining, stopped;
    private final CountDownLatch done = new CountDownLatch(1);
    private long kvUsed;
    /** The scheduler's logits block and row selection, reused by every step (decoding allocates no per-step vocabulary rows). */
    private float[] logitsBuf = new float[0];
    private int[] sel = new int[0];
    /** Per-step bookkeeping, reused: the step's inputs and sequences, their chunks, the rows that need a distribution. */
    private final List<Gemma3Model.Input> stepInputs = new ArrayList<>();
    private final List<Seq> stepWho = new ArrayList<>(), stepBatch = new ArrayList<>();
    private int[] spanStart = new int[0], spanLen = new int[0], needRow = new int[0], needSeq = new int[0], needPos = new int[0];
    private final AtomicLong steps = new AtomicLong(), cancelled = new AtomicLong(), preempted = new AtomicLong();
    /**
     * Prompt tuning / P-tuning: the virtual tokens open every sequence of an adapter, so their keys and values are the same
     * for every request. The scheduler runs them once per adapter (on first use) and each sequence starts from a copy, as
     * from a prefix-tuning cache: its prompt rows attend to the same keys and values at the same positions as in one pass,
     * and its prefill is that many rows shorter. Weak keys: an unloaded adapter's cache goes with its last sequence.
     */
    private final java.util.WeakHashMap<AdapterRegistry.Entry, KVCache> virtualKv = new java.util.WeakHashMap<>();

    public Engine(Gemma3Model model, Tokenizer tokenizer, int[] eosIds, Config cfg, Listener listener) {
        this.model = model;
        this.tokenizer = tokenizer;
        this.adapters = new AdapterRegistry(model);
        this.cfg = cfg;
        this.eos = eosIds.clone();
        this.listener = listener == null ? new Listener() {} : listener;
        this.thread = Thread.ofPlatform().name("peft4j-scheduler").daemon(true).start(this::loop);
    }

    public Config config() { return cfg; }

    private final Object tokenizerLock = new Object();

    /**
     * {@link Tokenizer#encode}, one call at a time: the native tokenizer is shared by the scheduler and every HTTP thread,
     * and a crash there would take the whole server down, so calls are serialized (they take microseconds).
     */
    public int[] encode(String text, boolean withBos) {
        synchronized (tokenizerLock) { return tokenizer.encode(text, withBos); }
    }

    /** {@link Tokenizer#decode(int[], boolean)}, serialized like {@link #encode}. */
    public String decode(int[] ids, boolean skipSpecial) {
        synchronized (tokenizerLock) { return tokenizer.decode(ids, skipSpecial); }
    }

    /** {@link Tokenizer#idOf}, serialized like {@link #encode}. */
    public int tokenId(String token) {
        synchronized (tokenizerLock) { return tokenizer.idOf(token); }
    }

    /** Longest prompt + completion (in caller tokens) a sequence with this adapter can hold. */
    public int contextLength(AdapterRegistry.Entry a) {
        int extra = a == null ? 0 : a.virtualCount(model.config.hidden()) + a.prefixLength();
        return model.config.maxPositions() - extra;
    }

    public int running() { synchronized (lock) { return running.size(); } }
    public int waiting() { synchronized (lock) { return waiting.size(); } }
    public long stepsRun() { return steps.get(); }
    /** KV-cache positions held by running sequences (0 when idle: every request gave back what it held). */
    public long kvReserved() { synchronized (lock) { return kvUsed; } }
    /** Times a running sequence was preempted (its cache dropped, recomputed later) because the KV cache was full. */
    public long preemptions() { return preempted.get(); }
    /** Sequences ended early because their caller cancelled (a client went away). */
    public long cancelledSequences() { return cancelled.get(); }
    public boolean draining() { return draining; }

    // ------------------------------------------------------------------ submission

    /**
     * Queues a request ({@code params.n()} sequences). Throws {@link ServeException} for a request that cannot run (prompt
     * too long, token ids outside the vocabulary) or cannot be queued now (queue full, shutting down).
     */
    public Stream submit(Request r) {
        SamplingParams p = r.params();
        int V = model.config.vocabSize();
        if (r.prompt().length == 0) throw new ServeException(ServeException.Kind.BAD_REQUEST, "prompt", "the prompt has no tokens");
        for (int id : r.prompt()) {
            if (id < 0 || id >= V) throw new ServeException(ServeException.Kind.BAD_REQUEST, "prompt", "token id " + id + " is outside the vocabulary (0.." + (V - 1) + ")");
        }
        int ctx = contextLength(r.adapter());
        if (r.prompt().length > ctx || (r.prompt().length == ctx && p.maxTokens() > 0)) {
            throw new ServeException(ServeException.Kind.CONTEXT_LENGTH, "prompt", "This model's maximum context length is " + ctx + " tokens. However, your prompt has "
                    + r.prompt().length + " tokens" + (p.maxTokens() > 0 ? " and at least one more is needed for the completion" : "") + ".");
        }
        // the last generated token is never fed back, so prompt + max_tokens - 1 positions must fit: cap max_tokens there
        int maxNew = Math.min(p.maxTokens(), ctx - r.prompt().length + 1);
        int extra = r.adapter() == null ? 0 : r.adapter().virtualCount(model.config.hidden()) + r.adapter().prefixLength();
        long need = (long) extra + r.prompt().length + maxNew;
        if (need * p.n() > cfg.maxKvTokens()) {
            throw new ServeException(ServeException.Kind.BAD_REQUEST, "max_tokens", "the request needs " + need * p.n() + " positions of KV cache (prompt + max_tokens, times n) but the server holds at most "
                    + cfg.maxKvTokens() + " (--max-kv-tokens)");
        }
        Stream st = new Stream(p.n(), r.prompt().length);
        synchronized (lock) {
            if (draining || stopped) throw new ServeException(ServeException.Kind.SHUTTING_DOWN, null, "the server is shutting down");
            if (waiting.size() + p.n() > cfg.maxWaiting()) {
                throw new ServeException(ServeException.Kind.OVERLOADED, null, "the server is busy (" + waiting.size() + " requests waiting); retry later");
            }
            for (int i = 0; i < p.n(); i++) {
                long seed = p.seed() == null ? System.nanoTime() + i : p.seed() + i;
                Seq s = new Seq(r, i, maxNew, (int) need, seed, st);
                st.seqs[i] = s;
                waiting.add(s);
            }
            lock.notifyAll();
        }
        return st;
    }

    // ------------------------------------------------------------------ the stream a caller reads

    /** Events of one request, read by the caller (any thread); {@code choice} is the index among the n choices. */
    public sealed interface Event permits PromptLogprobs, Token, Finished {
        int choice();
    }

    /** The prompt's log-probabilities (with echo + logprobs), the first entry without one. */
    public record PromptLogprobs(int choice, List<TokenLogprob> logprobs) implements Event {}

    /** One generated token; {@code text} is the new text it makes safe to show (may be empty: held back). */
    public record Token(int choice, int id, TokenLogprob logprob, String text) implements Event {}

    /** A choice ended: reason {@code stop} (EOS or a stop string) or {@code length}; {@code text} the whole completion. */
    public record Finished(int choice, String reason, String text, int completionTokens) implements Event {}

    /** The events of one request's choices. */
    public final class Stream {
        private final java.util.concurrent.LinkedBlockingQueue<Event> events = new java.util.concurrent.LinkedBlockingQueue<>();
        final Seq[] seqs;
        public final int promptTokens;
        private int open;

        Stream(int n, int promptTokens) {
            this.seqs = new Seq[n];
            this.promptTokens = promptTokens;
            this.open = n;
        }

        /** The next event, or null after {@code timeoutMs}. */
        public Event poll(long timeoutMs) throws InterruptedException { return events.poll(timeoutMs, TimeUnit.MILLISECONDS); }

        /** True once every choice has finished and its events were taken. */
        public boolean isDone() { synchronized (this) { return open == 0 && events.isEmpty(); } }

        /** Frees the request's sequences at the next step (a client went away). */
        public void cancel() {
            for (Seq s : seqs) s.cancelled = true;
            synchronized (lock) { lock.notifyAll(); }
        }

        void emit(Event e) {
            if (e instanceof Finished) synchronized (this) { open--; }
            events.add(e);
        }

        /** Blocks until every choice finished and returns all events in order (for Java callers and tests). */
        public List<Event> collect() throws InterruptedException {
            List<Event> all = new ArrayList<>();
            int finished = 0;
            while (finished < seqs.length) {
                Event e = events.take();
                all.add(e);
                if (e instanceof Finished) finished++;
            }
            return all;
        }
    }

    // ------------------------------------------------------------------ sequences

    final class Seq {
        final Request req;
        final int choice, maxNew, reserve;
        final Stream stream;
        final Sampler sampler;
        final int nVirtual;
        final int[] hist;
        int len;                 // prompt + generated tokens in hist
        int prefilled;           // tokens of hist already in the cache
        int target;              // tokens of hist the cache must hold before decoding: the prompt, or after a preemption all but the last
        long held;               // KV positions held (virtual tokens and prefix included)
        int generated;
        /** The token fed back at the next decode step (reused: decoding allocates no per-token input arrays). */
        final int[] last = new int[1];
        KVCache cache;
        volatile boolean cancelled;
        final long arrived = System.nanoTime();
        long admitted, lastToken;
        List<TokenLogprob> promptLps;
        boolean promptLpsSent;
        String shown = "";       // text already handed out
        final TextCheck text;

        Seq(Request req, int choice, int maxNew, int reserve, long seed, Stream stream) {
            this.req = req;
            this.choice = choice;
            this.maxNew = maxNew;
            this.reserve = reserve;
            this.stream = stream;
            SamplingParams p = req.params();
            this.sampler = new Sampler(new Sampler.Options(p.temperature(), p.topK(), p.topP(), p.minP(), p.repetitionPenalty(), seed));
            this.nVirtual = req.adapter() == null ? 0 : req.adapter().virtualCount(model.config.hidden());
            this.hist = Arrays.copyOf(req.prompt(), req.prompt().length + Math.max(0, maxNew));
            this.len = req.prompt().length;
            this.target = len;
            this.text = new TextCheck(tokenizer == null ? null : ids -> decode(ids, true), p.stop());
            if (p.promptLogprobs()) {
                promptLps = new ArrayList<>();
                promptLps.add(new TokenLogprob(req.prompt()[0], Float.NaN, new int[0], new float[0]));
            }
        }

        int promptLen() { return req.prompt().length; }
        boolean decoding() { return prefilled == target; }
        int extra() { return req.adapter() == null ? 0 : nVirtual + req.adapter().prefixLength(); }
    }

    // ------------------------------------------------------------------ the scheduler thread

    private void loop() {
        try {
            while (true) {
                List<Seq> batch;
                synchronized (lock) {
                    dropCancelled();
                    admit();
                    while (running.isEmpty() && !stopped) {
                        if (draining && waiting.isEmpty()) { stopped = true; break; }
                        try { lock.wait(200); } catch (InterruptedException e) { stopped = true; }
                        dropCancelled();
                        admit();
                    }
                    if (stopped && running.isEmpty()) break;
                    preemptIfFull();
                    for (Seq s : running) if (s.decoding()) { s.held++; kvUsed++; }   // the position its next token takes
                    batch = stepBatch;
                    batch.clear();
                    batch.addAll(running);
                }
                try {
                    step(batch);
                } catch (RuntimeException | OutOfMemoryError e) {
                    // this step's sequences fail (their clients get an error) and release what they held; the rest goes on
                    System.err.println("peft4j serve: a step failed (" + e + "); its " + batch.size() + " sequences end with an error");
                    synchronized (lock) {
                        for (Seq s : batch) finish(s, "error: " + e, false);
                    }
                }
            }
        } catch (Throwable t) {
            // a bug: fail every open request rather than hang their clients
            synchronized (lock) {
                for (Seq s : new ArrayList<>(running)) finish(s, "error: " + t, false);
                for (Seq s : waiting) s.stream.emit(new Finished(s.choice, "error: " + t, "", 0));
                running.clear();
                waiting.clear();
                stopped = true;
            }
            t.printStackTrace();
        } finally {
            done.countDown();
        }
    }

    private void dropCancelled() {
        for (Iterator<Seq> it = waiting.iterator(); it.hasNext(); ) {
            Seq s = it.next();
            if (s.cancelled) { it.remove(); cancelled.incrementAndGet(); s.stream.emit(new Finished(s.choice, "cancelled", "", 0)); }
        }
        for (Iterator<Seq> it = running.iterator(); it.hasNext(); ) {
            Seq s = it.next();
            if (s.cancelled) { it.remove(); release(s); cancelled.incrementAndGet(); s.stream.emit(new Finished(s.choice, "cancelled", "", s.generated)); }
        }
    }

    private void release(Seq s) {
        kvUsed -= s.held;
        s.held = 0;
        s.cache = null;
    }

    /**
     * Frees the running sequences admitted last until every decoding sequence can take its next position (vLLM's
     * recompute preemption): each goes back to the front of the queue and, readmitted, rebuilds its cache from its prompt and
     * the tokens it generated (already sent), then goes on. The first sequence is never preempted (the request check at
     * submission guarantees it fits alone).
     */
    private void preemptIfFull() {
        while (running.size() > 1) {
            long grow = 0;
            for (Seq s : running) if (s.decoding()) grow++;
            if (kvUsed + grow <= cfg.maxKvTokens()) return;
            Seq s = running.removeLast();
            release(s);
            s.prefilled = 0;
            s.target = s.generated == 0 ? s.promptLen() : s.len - 1;
            if (s.promptLps != null && !s.promptLpsSent) s.promptLps.subList(1, s.promptLps.size()).clear();
            waiting.addFirst(s);
            preempted.incrementAndGet();
        }
    }

    private void admit() {
        while (!waiting.isEmpty() && running.size() < cfg.maxRunning()) {
            Seq s = waiting.peek();
            // its prompt (or tokens so far), plus room for every running sequence's next token
            long need = s.extra() + s.target, grow = running.size() + 1;
            if (!running.isEmpty() && kvUsed + need + grow > cfg.maxKvTokens()) break;
            waiting.poll();
            AdapterRegistry.Entry a = s.req.adapter();
            if (s.nVirtual > 0) {
                s.cache = virtualKv.computeIfAbsent(a, e -> {
                    KVCache c = model.newCache();
                    model.forward(List.of(new Gemma3Model.Input(c, e.virtualTokens(), new int[0])), null);
                    return c;
                }).copy();
            } else {
                s.cache = a != null && a.prefix() != null ? a.prefix().copy() : model.newCache();
            }
            if (s.admitted == 0) s.admitted = System.nanoTime();
            s.held = need;
            kvUsed += need;
            running.add(s);
        }
    }

    /** One packed forward: prompt chunks of prefilling sequences, one token of every decoding one. */
    private void step(List<Seq> batch) {
        long t0 = System.nanoTime();
        final int H = model.config.hidden(), V = model.config.vocabSize();
        List<Gemma3Model.Input> inputs = stepInputs;
        List<Seq> who = stepWho;
        inputs.clear();
        who.clear();
        if (spanStart.length < batch.size()) { spanStart = new int[batch.size()]; spanLen = new int[batch.size()]; }
        int prefillUsed = 0, rows = 0;
        for (Seq s : batch) {
            AdapterRegistry.Entry a = s.req.adapter();
            var per = a == null ? null : a.perSequence();
            int k = who.size();
            if (s.decoding()) {
                s.last[0] = s.hist[s.len - 1];
                inputs.add(new Gemma3Model.Input(s.cache, null, s.last, per));
                spanStart[k] = -1;                        // [first prompt index of the chunk, tokens] (decode: [-1, 1])
                spanLen[k] = 1;
                rows += 1;
            } else {
                // fixed chunk boundaries (multiples of prefillChunk), whatever else runs: a sequence gets its whole next
                // chunk or waits for the next step (the first prefill of a step always goes)
                int n = Math.min(cfg.prefillChunk(), s.target - s.prefilled);
                if (prefillUsed > 0 && prefillUsed + n > cfg.prefillChunk()) continue;
                prefillUsed += n;
                int[] src = s.prefilled + n <= s.promptLen() ? s.req.prompt() : s.hist;   // hist: prompt + generated (recompute)
                // (prompt tuning's virtual tokens are already in the cache the sequence started from)
                inputs.add(new Gemma3Model.Input(s.cache, null, Arrays.copyOfRange(src, s.prefilled, s.prefilled + n), per));
                spanStart[k] = s.prefilled;
                spanLen[k] = n;
                rows += n;
            }
            who.add(s);
        }
        if (inputs.isEmpty()) return;
        float[] hidden = model.forward(inputs, null);
        steps.incrementAndGet();
        // rows that need a distribution: the last row of a chunk that ends the prompt, a decode row; every prompt row of
        // a request that asked for prompt log-probabilities
        int nNeed = 0;
        int base = 0;
        for (int i = 0; i < who.size(); i++) {
            Seq s = who.get(i);
            if (spanStart[i] < 0) {
                nNeed = need(nNeed, base, i, -1);
            } else {
                boolean ends = spanStart[i] + spanLen[i] == s.target;
                boolean lps = s.promptLps != null && !s.promptLpsSent, first = s.generated == 0 && s.maxNew > 0;
                for (int t = 0; t < spanLen[i]; t++) {
                    int p = spanStart[i] + t;             // prompt index of this row; it predicts token p + 1
                    boolean last = p == s.promptLen() - 1;
                    if ((lps && p < s.promptLen() - 1) || (last && ends && first)) nNeed = need(nNeed, base + t, i, p);
                }
            }
            base += spanLen[i];
        }
        final int BLOCK = Math.max(1, (1 << 24) / V);     // at most 64 MB of logits at a time
        for (int b = 0; b < nNeed; b += BLOCK) {
            int e = Math.min(nNeed, b + BLOCK);
            if (sel.length != e - b) sel = new int[e - b];
            System.arraycopy(needRow, b, sel, 0, e - b);
            if (logitsBuf.length < sel.length * V) logitsBuf = new float[sel.length * V];
            float[] lg = model.logits(hidden, sel, logitsBuf);
            greedyPicks(lg, b, e, V, who);
            Parallel.rest();   // the rest of the step is serial: the kernel threads' cores go to the HTTP threads meanwhile
            for (int j = b; j < e; j++) {
                Seq s = who.get(needSeq[j]);
                int off = (j - b) * V, p = needPos[j];
                if (p >= 0 && p < s.promptLen() - 1) {
                    s.promptLps.add(logprob(lg, off, V, s.req.prompt()[p + 1], s.req.params().logprobs()));
                } else {
                    next(s, lg, off, V, pick[j - b]);
                }
            }
        }
        long now = System.nanoTime();
        synchronized (lock) {
            for (int i = 0; i < who.size(); i++) {
                Seq s = who.get(i);
                if (spanStart[i] >= 0) {
                    s.prefilled += spanLen[i];
                    if (s.decoding()) {
                        sendPromptLogprobs(s);
                        if (s.maxNew == 0) finish(s, "length", true);
                    }
                }
            }
        }
        listener.step(who.size(), rows, (now - t0) / 1e9);
    }

    /** Per row of the current logits block: its greedy token when {@link #greedyPicks} found it, else −1. */
    private int[] pick = new int[0];

    /**
     * The argmax of every row of the logits block [b, e) whose sequence decodes greedily with nothing else to compute from
     * the row (no repetition penalty, no log-probabilities), over the kernel threads: the same token as the sampler's.
     */
    private void greedyPicks(float[] lg, int b, int e, int V, List<Seq> who) {
        if (pick.length < e - b) pick = new int[e - b];
        Arrays.fill(pick, 0, e - b, -1);
        int plain = 0;
        for (int j = b; j < e; j++) {
            Seq s = who.get(needSeq[j]);
            SamplingParams p = s.req.params();
            int pos = needPos[j];
            boolean promptRow = pos >= 0 && pos < s.promptLen() - 1;
            if (!promptRow && p.temperature() <= 0f && p.repetitionPenalty() == 1f && p.logprobs() == null) {
                pick[j - b] = -2;
                plain++;
            }
        }
        if (plain < 2) {                                  // one row: the sampler's own argmax is as fast
            for (int j = 0; j < e - b; j++) if (pick[j] == -2) pick[j] = -1;
            return;
        }
        final int[] pk = pick;
        Parallel.forChunks(e - b, 1, (from, to) -> {
            for (int j = from; j < to; j++) if (pk[j] == -2) pk[j] = Sampler.argmax(lg, j * V, V);
        });
    }

    /** Appends a row that needs a distribution: its row in the step's hidden states, its sequence in the step, its prompt index (−1: decode). */
    private int need(int n, int row, int seq, int pos) {
        if (n == needRow.length) {
            int c = Math.max(16, 2 * n);
            needRow = Arrays.copyOf(needRow, c);
            needSeq = Arrays.copyOf(needSeq, c);
            needPos = Arrays.copyOf(needPos, c);
        }
        needRow[n] = row;
        needSeq[n] = seq;
        needPos[n] = pos;
        return n + 1;
    }

    private static void sendPromptLogprobs(Seq s) {
        if (s.promptLps == null || s.promptLpsSent) return;
        s.promptLpsSent = true;
        s.stream.emit(new PromptLogprobs(s.choice, List.copyOf(s.promptLps)));
    }

    /**
     * Samples the next token of {@code s} from its logits row (V values at {@code off} of the step's logits block, used in
     * place) and hands it out; finishes the sequence when due.
     */
    private void next(Seq s, float[] lg, int off, int V, int picked) {
        SamplingParams p = s.req.params();
        sendPromptLogprobs(s);
        TokenLogprob lp = null;
        float[] raw = p.logprobs() != null ? Arrays.copyOfRange(lg, off, off + V) : null;
        int tok = picked >= 0 ? picked : s.sampler.next(lg, off, V, s.hist, s.len);
        if (raw != null) lp = logprob(raw, 0, V, tok, p.logprobs());
        s.hist[s.len++] = tok;
        s.generated++;
        long now = System.nanoTime();
        if (s.generated == 1) listener.firstToken((now - s.arrived) / 1e9);
        else listener.tokenLatency((now - s.lastToken) / 1e9);
        s.lastToken = now;
        boolean isEos = !p.ignoreEos() && (contains(eos, tok) || contains(s.req.extraEos(), tok));
        String reason = null;
        String delta;
        if (isEos) {
            reason = "stop";
            delta = "";
        } else {
            TextCheck.Result r = s.text.add(Arrays.copyOfRange(s.hist, s.promptLen(), s.len));
            delta = r.safe().length() > s.shown.length() ? r.safe().substring(s.shown.length()) : "";
            s.shown = s.shown + delta;
            if (r.stopped()) reason = "stop";
        }
        s.stream.emit(new Token(s.choice, tok, lp, delta));
        if (reason == null && s.generated >= s.maxNew) reason = "length";
        if (reason != null) {
            synchronized (lock) { finish(s, reason, true); }
        }
    }

    private void finish(Seq s, String reason, boolean ok) {
        if (!running.remove(s)) return;
        release(s);
        String full = s.text.finalText();
        s.stream.emit(new Finished(s.choice, reason, full, s.generated));
        if (ok && s.choice == 0) listener.finished(s.promptLen(), s.generated);
    }

    private static boolean contains(int[] a, int v) {
        if (a == null) return false;
        for (int x : a) if (x == v) return true;
        return false;
    }

    /** log-softmax of {@code row} at {@code token}, and the {@code top} best (ties: lower id first). */
    static TokenLogprob logprob(float[] row, int token, Integer top) {
        return logprob(row, 0, row.length, token, top);
    }

    /** {@link #logprob(float[], int, Integer)} of the row of V values at {@code off} of {@code lg}. */
    static TokenLogprob logprob(float[] lg, int off, int V, int token, Integer top) {
        double lse = dev.peft4j.eval.HarnessLM.logSumExp(lg, off, V);     // the same numbers as peft4j eval
        int k = top == null ? 0 : Math.min(top, V);
        int[] ids = new int[k];
        float[] lps = new float[k];
        if (k > 0) {
            int filled = 0;
            for (int i = 0; i < V; i++) {
                float x = lg[off + i];
                if (filled == k && x <= lg[off + ids[k - 1]]) continue;
                int at = filled < k ? filled++ : k - 1;
                while (at > 0 && lg[off + ids[at - 1]] < x) { ids[at] = ids[at - 1]; at--; }
                ids[at] = i;
            }
            for (int i = 0; i < k; i++) lps[i] = (float) (lg[off + ids[i]] - lse);
        }
        return new TokenLogprob(token, (float) (lg[off + token] - lse), ids, lps);
    }

    // ------------------------------------------------------------------ shutdown

    /** Stops admitting (new requests get SHUTTING_DOWN), lets queued and running requests finish, then the thread ends. */
    public boolean drain(long timeoutMs) throws InterruptedException {
        draining = true;
        synchronized (lock) { lock.notifyAll(); }
        return done.await(timeoutMs, TimeUnit.MILLISECONDS);
    }

    @Override
    public void close() {
        synchronized (lock) {
            for (Seq s : waiting) s.cancelled = true;
            for (Seq s : running) s.cancelled = true;
            stopped = true;
            lock.notifyAll();
        }
        // the scheduler ends after its current step (it may still use the model and tokenizer until then)
        try { done.await(); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        synchronized (lock) {
            dropCancelled();
        }
    }
}
