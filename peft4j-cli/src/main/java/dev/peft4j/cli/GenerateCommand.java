package dev.peft4j.cli;

import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Generator;
import dev.peft4j.model.Models;
import dev.peft4j.model.Quantization;
import dev.peft4j.model.Sampler;
import dev.peft4j.tokenizer.Tokenizer;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;

@Command(name = "generate", mixinStandardHelpOptions = true, description = "Generate text with a KV cache, printing tokens as they come.")
public final class GenerateCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "model directory (Hugging Face layout) or Hub repo id") Path model;
    @Option(names = "--adapter", description = "PEFT adapter directory (prompt tuning, P-tuning, prefix tuning, LoRA or IA3)") Path adapter;
    @Option(names = "--quantize", description = "quantize the weights at load: q8 (8-bit blocks of 32, as llama.cpp's Q8_0)") String quantize;
    @Option(names = "--merge", description = "merge a LoRA or IA3 adapter into the weights at load") boolean merge;
    @Option(names = "--tokenizer", description = "tokenizer directory (default: the model directory)") Path tokenizerDir;
    @Option(names = "--prompt", description = "prompt text") String prompt;
    @Option(names = "--prompt-ids", split = ",", description = "prompt as token ids, e.g. 2,17,9 (no BOS added)") int[] promptIds;
    @Option(names = "--chat", description = "wrap the prompt in Gemma's chat template") boolean chat;
    @Option(names = "--no-bos", description = "do not prepend BOS to --prompt") boolean noBos;
    @Option(names = "--max-new-tokens", defaultValue = "128", description = "most tokens to generate (default ${DEFAULT-VALUE})") int maxNew;
    @Option(names = "--temperature", defaultValue = "0", description = "sampling temperature; 0 = greedy (default ${DEFAULT-VALUE})") float temperature;
    @Option(names = "--top-k", defaultValue = "0", description = "keep the K most likely tokens; 0 = off (default ${DEFAULT-VALUE})") int topK;
    @Option(names = "--top-p", defaultValue = "1.0", description = "nucleus sampling: keep the most likely tokens up to this probability mass; 1 = off (default ${DEFAULT-VALUE})") float topP;
    @Option(names = "--min-p", defaultValue = "0", description = "drop tokens less likely than this times the top token's probability; 0 = off (default ${DEFAULT-VALUE})") float minP;
    @Option(names = "--repetition-penalty", defaultValue = "1.0", description = "penalty on tokens already in the prompt or output (transformers' rule); 1 = off (default ${DEFAULT-VALUE})") float repetitionPenalty;
    @Option(names = "--seed", defaultValue = "0", description = "sampling seed (default ${DEFAULT-VALUE})") long seed;
    @Option(names = "--stop", description = "stop string (repeatable)") List<String> stops = new ArrayList<>();
    @Option(names = "--print-ids", description = "print the generated token ids at the end") boolean printIds;
    @Option(names = "--prompt-lookup", defaultValue = "0", description = "greedy only: check up to N draft tokens per step, copied from where the last tokens occurred earlier in the text (transformers' prompt_lookup_num_tokens; at most 14 per step, 7 fills the 8-row kernel tile); the same tokens, faster where the output repeats earlier text; 0 = off (default ${DEFAULT-VALUE})") int promptLookup;

    @Override
    public Integer call() {
        if ((prompt == null) == (promptIds == null)) throw new UserException("give exactly one of --prompt TEXT or --prompt-ids 2,17,9");
        if (maxNew < 0) throw new UserException("--max-new-tokens: expected a number >= 0, got " + maxNew);
        if (temperature < 0) throw new UserException("--temperature: expected >= 0, got " + temperature);
        if (topK < 0) throw new UserException("--top-k: expected >= 0 (0 = off), got " + topK);
        if (topP <= 0 || topP > 1) throw new UserException("--top-p: expected a value in (0, 1], got " + topP);
        if (minP < 0 || minP > 1) throw new UserException("--min-p: expected a value in [0, 1], got " + minP);
        if (repetitionPenalty <= 0) throw new UserException("--repetition-penalty: expected > 0, got " + repetitionPenalty);
        if (promptLookup < 0) throw new UserException("--prompt-lookup: expected >= 0 (0 = off), got " + promptLookup);
        if (promptLookup > 0 && temperature > 0) throw new UserException("--prompt-lookup: needs greedy decoding (--temperature 0), got --temperature " + temperature);
        model = Models.resolve(model, "model");
        Gemma3LM lm = Models.load(model, adapter, merge, Quantization.parse(quantize));
        Path tdir = tokenizerDir != null ? tokenizerDir : model;
        try (Tokenizer tok = Files.isRegularFile(tdir.resolve("tokenizer.json")) ? Tokenizer.load(tdir) : null) {
            return generate(lm, tok, tdir);
        }
    }

    private int generate(Gemma3LM lm, Tokenizer tok, Path tdir) {
        int[] ids;
        if (promptIds != null) {
            ids = promptIds;
            if (chat) throw new UserException("--chat needs --prompt text, not --prompt-ids");
            if (!stops.isEmpty() && tok == null) {
                throw new UserException("--stop: " + tdir.resolve("tokenizer.json") + " not found; stop strings need a tokenizer to decode the output");
            }
        } else {
            if (tok == null) throw new UserException(tdir.resolve("tokenizer.json") + ": not found; --prompt needs a tokenizer (or use --prompt-ids)");
            String text = chat ? Tokenizer.chatPrompt(prompt) : prompt;
            ids = tok.encode(text, !noBos);
        }
        if (ids.length == 0) throw new UserException("--prompt: the prompt has no tokens (an empty text with --no-bos)");
        int V = lm.vocabSize();
        String what = promptIds != null ? "--prompt-ids" : "--prompt: the tokenizer in " + tdir + " gives";
        for (int id : ids) if (id < 0 || id >= V) throw new UserException(what + " token id " + id + " is outside the model's vocabulary (0.." + (V - 1) + ")");
        if (ids.length >= lm.maxPositions()) {
            throw new UserException("prompt: " + ids.length + " tokens do not fit max_position_embeddings " + lm.maxPositions());
        }
        int[] eos = lm.model.config.generationEos(model);
        if (chat && tok != null) {
            int eot = tok.idOf("<end_of_turn>");
            if (eot >= 0) { eos = Arrays.copyOf(eos, eos.length + 1); eos[eos.length - 1] = eot; }
        }
        Sampler sampler = new Sampler(new Sampler.Options(temperature, topK, topP, minP, repetitionPenalty, seed));
        List<Integer> out = new ArrayList<>();
        final Tokenizer t = tok;
        final String[] printed = {""};
        long t0 = System.nanoTime();
        Generator.Result r = new Generator(lm).generate(ids, maxNew, sampler, eos, stops.toArray(new String[0]),
                t == null ? null : x -> t.decode(x, true),
                id -> {
                    out.add(id);
                    if (t != null) {
                        String s = t.decode(out.stream().mapToInt(Integer::intValue).toArray(), true);
                        String more = unprinted(printed[0], s, false);
                        if (more != null) {
                            System.out.print(more);
                            printed[0] = s;
                        }
                    } else {
                        System.out.print(id + " ");
                    }
                    System.out.flush();
                }, promptLookup);
        double secs = (System.nanoTime() - t0) / 1e9;
        if (t != null) System.out.print(unprinted(printed[0], t.decode(r.tokens(), true), true));   // a held-back tail
        System.out.println();
        if (printIds) System.out.println("ids: " + Arrays.toString(r.tokens()));
        System.err.printf("[%d tokens, %.2f tok/s, stop: %s%s]%n", r.tokens().length, r.tokens().length / secs, r.stopReason(),
                promptLookup > 0 ? String.format(", prompt lookup: %d of %d draft tokens confirmed", r.acceptedTokens(), r.draftTokens()) : "");
        return 0;
    }

    /**
     * What to print when the decoding of all tokens so far is {@code text} and {@code printed} is out already: the text
     * after their common start, or null (wait) while {@code text} ends in U+FFFD, i.e. inside a character whose UTF-8 bytes
     * come as several byte tokens (an emoji, most CJK text), unless {@code last}.
     */
    static String unprinted(String printed, String text, boolean last) {
        if (!last && text.endsWith("\uFFFD")) return null;
        int common = 0;
        while (common < printed.length() && common < text.length() && printed.charAt(common) == text.charAt(common)) common++;
        return text.substring(common);
    }
}
