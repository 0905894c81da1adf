package dev.peft4j.api;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.peft4j.eval.Evaluator;
import dev.peft4j.eval.HarnessLM;
import dev.peft4j.eval.Tasks;
import dev.peft4j.eval.TextCodec;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Generator;
import dev.peft4j.model.Linear;
import dev.peft4j.model.Models;
import dev.peft4j.model.Sampler;
import dev.peft4j.tensor.Matrix;
import dev.peft4j.tokenizer.ChatTemplate;
import dev.peft4j.tokenizer.Tokenizer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A loaded Gemma 3 model with its tokenizer and an optional PEFT adapter: generate, chat, score and evaluate. Weights stay
 * memory-mapped until {@link #close()} (use try-with-resources). Calls are serialized: one thread at a time runs the model,
 * and the kernels use all the threads of the pool.
 *
 * <pre>{@code
 * try (Model m = Peft4j.load("google/gemma-3-270m-it")) {
 *     System.out.println(m.chat(List.of(ChatMessage.user("Write a haiku about the JVM")), GenerationOptions.defaults()).text());
 * }
 * }</pre>
 */
public final class Model implements AutoCloseable {
    private final Gemma3LM lm;
    private final Tokenizer tok;
    private final Path dir;
    private final String adapter;
    private final int[] eos;
    private final int endOfTurn;
    private boolean closed;

    private Model(Gemma3LM lm, Tokenizer tok, Path dir, String adapter) {
        this.lm = lm;
        this.tok = tok;
        this.dir = dir;
        this.adapter = adapter;
        this.eos = lm.model.config.generationEos(dir);
        this.endOfTurn = tok.idOf("<end_of_turn>");
    }

    static Model load(String model, LoadOptions o) {
        if (model == null || model.isBlank()) throw new Peft4jException("model: expected a model directory or a Hub repo id, got nothing");
        return Guard.call(() -> {
            if (o.quantization() == Quantization.Q8 && o.dtype() == WeightDtype.F32) {
                throw new Peft4jException("quantization Q8 with weight dtype F32: choose one (Q8 keeps 8-bit weights off the heap)");
            }
            Guard.threads(o.threads());
            Path dir = Models.resolve(Path.of(model), "model");
            Path tdir = o.tokenizer() != null ? o.tokenizer() : dir;
            if (!Files.isRegularFile(tdir.resolve("tokenizer.json"))) {
                throw new Peft4jException(tdir.resolve("tokenizer.json") + ": not found; the model needs a tokenizer"
                        + " (put tokenizer.json in the model directory or set LoadOptions.tokenizer)");
            }
            Gemma3LM lm = Models.load(dir, o.adapter() == null ? null : Path.of(o.adapter()), o.merge(),
                    o.quantization() == Quantization.Q8 ? dev.peft4j.model.Quantization.Q8 : dev.peft4j.model.Quantization.NONE);
            try {
                if (o.dtype() == WeightDtype.F32) toF32(lm);
                return new Model(lm, Tokenizer.load(tdir), dir, o.adapter());
            } catch (RuntimeException e) {
                lm.model.weights.close();
                throw e;
            }
        });
    }

    /** Float32 heap copies of every mapped weight matrix (the embedding, the head, the linear layers). */
    private static void toF32(Gemma3LM lm) {
        var w = lm.model.weights;
        boolean tied = w.lmHead == w.embed;
        w.embed = heap(w.embed);
        w.lmHead = tied ? w.embed : heap(w.lmHead);
        for (Linear l : w.linears()) l.weight = heap(l.weight);
    }

    private static Matrix heap(Matrix m) { return m.onHeap() ? m : Matrix.heap(m.rows, m.cols, m.toFloatArray()); }

    // ------------------------------------------------------------------ generation

    /**
     * Generates a continuation of a text prompt (BOS first unless {@link GenerationOptions#addBos()} is false).
     *
     * @param prompt the text to continue
     * @param opts   sampling options and stop conditions
     * @return the generated text, tokens and finish reason
     */
    public Generation generate(String prompt, GenerationOptions opts) { return generate(prompt, opts, null); }

    /**
     * Generates a continuation of a text prompt, streaming the text to {@code listener} as it is produced.
     *
     * @param prompt   the text to continue
     * @param opts     sampling options and stop conditions
     * @param listener receives the text piece by piece (may be null)
     * @return the generated text, tokens and finish reason
     */
    public synchronized Generation generate(String prompt, GenerationOptions opts, TokenListener listener) {
        check();
        int[] ids = Guard.call(() -> tok.encode(prompt, opts.addBos()));
        return run(ids, opts, listener, eos);
    }

    /**
     * Generates after a prompt given as token ids (no BOS is added).
     *
     * @param promptIds the prompt's token ids
     * @param opts      sampling options and stop conditions
     * @param listener  receives the text piece by piece (may be null)
     * @return the generated text, tokens and finish reason
     */
    public synchronized Generation generate(int[] promptIds, GenerationOptions opts, TokenListener listener) {
        check();
        return run(promptIds.clone(), opts, listener, eos);
    }

    /**
     * Answers a conversation through Gemma's chat template: the messages are rendered as {@link #chatPrompt} does, and
     * generation also stops at {@code <end_of_turn>}.
     *
     * @param messages an optional system message, then user/assistant turns ending with a user turn
     * @param opts     sampling options and stop conditions
     * @return the model's answer
     */
    public Generation chat(List<ChatMessage> messages, GenerationOptions opts) { return chat(messages, opts, null); }

    /**
     * As {@link #chat(List, GenerationOptions)}, streaming the answer to {@code listener}.
     *
     * @param messages an optional system message, then user/assistant turns ending with a user turn
     * @param opts     sampling options and stop conditions
     * @param listener receives the text piece by piece (may be null)
     * @return the model's answer
     */
    public synchronized Generation chat(List<ChatMessage> messages, GenerationOptions opts, TokenListener listener) {
        check();
        int[] ids = Guard.call(() -> tok.encode(chatPrompt(messages), true));
        int[] stopIds = eos;
        if (endOfTurn >= 0) {
            stopIds = Arrays.copyOf(eos, eos.length + 1);
            stopIds[eos.length] = endOfTurn;
        }
        return run(ids, opts, listener, stopIds);
    }

    /**
     * Renders a conversation with Gemma's chat template, ending with the generation prompt {@code <start_of_turn>model\n}
     * (BOS not included).
     *
     * @param messages an optional system message, then alternating user/assistant turns
     * @return the prompt text
     * @throws Peft4jException when the roles do not alternate
     */
    public String chatPrompt(List<ChatMessage> messages) {
        if (messages.isEmpty()) throw new Peft4jException("chat: no messages");
        List<ChatTemplate.Message> ms = new ArrayList<>();
        for (ChatMessage m : messages) {
            ms.add(new ChatTemplate.Message(switch (m.role()) {
                case SYSTEM -> "system";
                case USER -> "user";
                case ASSISTANT -> "assistant";
            }, m.content()));
        }
        if (messages.getLast().role() != ChatMessage.Role.USER) {
            throw new Peft4jException("chat: the last message must be the user's (got " + messages.getLast().role() + ")");
        }
        for (int i = 1; i < messages.size(); i++) {
            if (messages.get(i).role() == ChatMessage.Role.SYSTEM) throw new Peft4jException("chat: a system message must come first (message " + i + ")");
        }
        return Guard.call(() -> ChatTemplate.render(ms, true));
    }

    private Generation run(int[] ids, GenerationOptions o, TokenListener listener, int[] stopIds) {
        if (ids.length == 0) throw new Peft4jException("prompt: no tokens (an empty text without BOS)");
        int V = lm.vocabSize();
        for (int id : ids) if (id < 0 || id >= V) throw new Peft4jException("prompt: token id " + id + " is outside the vocabulary (0.." + (V - 1) + ")");
        if (ids.length >= lm.maxPositions()) {
            throw new Peft4jException("prompt: " + ids.length + " tokens do not fit the context window of " + lm.maxPositions());
        }
        String[] stops = o.stop().toArray(new String[0]);
        Sampler sampler = new Sampler(new Sampler.Options(o.temperature(), o.topK(), o.topP(), o.minP(), o.repetitionPenalty(), o.seed()));
        Stream stream = new Stream(listener, stops);
        Generator.Result r = Guard.call(() -> new Generator(lm).generate(ids, o.maxNewTokens(), sampler, o.stopAtEos() ? stopIds : new int[0],
                stops, x -> tok.decode(x, true), stream::token, o.promptLookup()));
        String text = cut(tok.decode(r.tokens(), true), stops);
        stream.finish(text);
        FinishReason why = switch (r.stopReason()) {
            case "eos" -> FinishReason.EOS;
            case "stop" -> FinishReason.STOP;
            default -> FinishReason.LENGTH;
        };
        return new Generation(text, r.tokens(), ids.length, why);
    }

    /** The text before the first stop string it contains (all of it when none). */
    static String cut(String text, String[] stops) {
        int at = text.length();
        for (String s : stops) {
            int i = text.indexOf(s);
            if (i >= 0) at = Math.min(at, i);
        }
        return text.substring(0, at);
    }

    /** Streams the visible text: holds back a possible stop-string start and an incomplete character (U+FFFD at the end). */
    private final class Stream {
        private final TokenListener listener;
        private final String[] stops;
        private final List<Integer> ids = new ArrayList<>();
        private String sent = "";

        Stream(TokenListener listener, String[] stops) {
            this.listener = listener;
            this.stops = stops;
        }

        void token(int id) {
            if (listener == null) return;
            ids.add(id);
            String all = tok.decode(ids.stream().mapToInt(Integer::intValue).toArray(), true);
            String safe = cut(all, stops);
            if (safe.length() == all.length()) safe = all.substring(0, all.length() - heldBack(all));
            if (safe.endsWith("\uFFFD")) safe = safe.substring(0, safe.length() - 1);
            String more = "";
            if (safe.startsWith(sent) && safe.length() > sent.length()) {
                more = safe.substring(sent.length());
                sent = safe;
            }
            listener.onToken(id, more);
        }

        /** Length of the longest end of {@code text} that is a proper start of a stop string. */
        private int heldBack(String text) {
            int best = 0;
            for (String s : stops) {
                for (int k = Math.min(s.length() - 1, text.length()); k > best; k--) {
                    if (text.endsWith(s.substring(0, k))) { best = k; break; }
                }
            }
            return best;
        }

        void finish(String text) {
            if (listener == null) return;
            if (text.startsWith(sent) && text.length() > sent.length()) listener.onToken(-1, text.substring(sent.length()));
        }
    }

    // ------------------------------------------------------------------ scoring and evaluation

    /**
     * The log-likelihood of {@code continuation} after {@code context}, exactly as lm-evaluation-harness scores a
     * multiple-choice answer (see {@link LogLikelihood}).
     *
     * @param context      the text before (BOS is added)
     * @param continuation the text to score (must have at least one token of its own)
     * @return the summed log-probability and whether it is the greedy continuation
     */
    public LogLikelihood logLikelihood(String context, String continuation) {
        return logLikelihoods(List.of(new LogLikelihood.Request(context, continuation))).getFirst();
    }

    /**
     * Scores many pairs at once (batched, sharing the computation of common contexts).
     *
     * @param requests (context, continuation) pairs
     * @return one result per request, in order
     */
    public synchronized List<LogLikelihood> logLikelihoods(List<LogLikelihood.Request> requests) {
        check();
        return Guard.call(() -> {
            HarnessLM h = new HarnessLM(lm, TextCodec.of(tok), 8);
            List<HarnessLM.LLRequest> rs = requests.stream().map(r -> new HarnessLM.LLRequest(r.context(), r.continuation())).toList();
            int[] lens = new int[rs.size()];
            for (int i = 0; i < rs.size(); i++) lens[i] = h.encodePair(rs.get(i).context(), rs.get(i).continuation()).continuation().length;
            List<HarnessLM.LL> lls = h.loglikelihood(rs, n -> { });
            List<LogLikelihood> out = new ArrayList<>();
            for (int i = 0; i < lls.size(); i++) out.add(new LogLikelihood(lls.get(i).logprob(), lls.get(i).greedy(), lens[i]));
            return out;
        });
    }

    /**
     * Evaluates on lm-evaluation-harness tasks (prompts, few-shot sampling, scoring and metrics as lm-eval 0.4 computes them).
     *
     * @param opts tasks, data directory, limit, few-shot count, batch size
     * @return the metrics as objects and as lm-eval's results JSON
     * @throws Peft4jException for an unknown task, a missing data file, or an option out of range
     */
    public synchronized EvalResults evaluate(EvalOptions opts) {
        check();
        return Guard.call(() -> {
            Tasks.Selection sel = Tasks.resolve(opts.tasks());
            if (!Files.isDirectory(opts.dataDir())) throw new Peft4jException("dataDir: " + opts.dataDir().toAbsolutePath() + " is not a directory");
            String modelArgs = "pretrained=" + dir + (adapter != null ? ",peft=" + adapter : "");
            Evaluator.Options eo = new Evaluator.Options(opts.numFewshot(), opts.limit(), opts.batchSize(), modelArgs,
                    opts.progress() == null ? Evaluator.ProgressFactory.NONE : (name, total) -> {
                        long[] done = {0};
                        return n -> {
                            if (n >= 0) opts.progress().onProgress(name, done[0] += n, total);
                        };
                    });
            Evaluator.Output out = Evaluator.run(new HarnessLM(lm, TextCodec.of(tok), opts.batchSize()), Evaluator.prepare(sel, opts.dataDir(), eo));
            ObjectNode res = out.results();
            res.put("model_name", dir.toString());
            if (adapter != null) res.put("adapter", adapter);
            res.put("max_length", lm.maxPositions());
            res.set("tokenizer_bos_token", res.arrayNode().add(tok.bosToken()).add(tok.bosId()));
            res.set("tokenizer_eos_token", res.arrayNode().add(tok.eosToken()).add(tok.eosId()));
            return new EvalResults(res);
        });
    }

    // ------------------------------------------------------------------ tokens and facts

    /**
     * Tokenizes text with the model's tokenizer.
     *
     * @param text    any text
     * @param withBos whether to put BOS first
     * @return the token ids (no other special tokens are added)
     */
    public int[] encode(String text, boolean withBos) {
        check();
        return tok.encode(text, withBos);
    }

    /**
     * Their text, special tokens left out.
     *
     * @param ids token ids
     * @return their text, special tokens left out
     */
    public String decode(int[] ids) {
        check();
        return tok.decode(ids, true);
    }

    /**
     * The vocabulary size.
     *
     * @return the vocabulary size
     */
    public int vocabSize() { return lm.vocabSize(); }

    /**
     * The longest sequence in tokens (prompt + output) the model takes, less any virtual tokens of the adapter.
     *
     * @return the longest sequence in tokens (prompt + output) the model takes, less any virtual tokens of the adapter
     */
    public int contextLength() { return lm.maxPositions(); }

    /**
     * The model directory (a Hub repo id is resolved to its snapshot in the Hugging Face cache).
     *
     * @return the model directory (a Hub repo id is resolved to its snapshot in the Hugging Face cache)
     */
    public Path directory() { return dir; }

    /**
     * The adapter as given in the {@link LoadOptions}, or null.
     *
     * @return the adapter as given in the {@link LoadOptions}, or null
     */
    public String adapter() { return adapter; }

    private void check() {
        if (closed) throw new IllegalStateException("the model is closed");
    }

    /** Releases the memory-mapped weight files and the tokenizer; the model cannot be used afterwards. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        lm.model.weights.close();
        tok.close();
    }
}
