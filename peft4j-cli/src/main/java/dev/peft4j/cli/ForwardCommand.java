package dev.peft4j.cli;

import dev.peft4j.io.SafeTensors;
import dev.peft4j.model.Gemma3LM;
import dev.peft4j.model.Models;
import dev.peft4j.model.Quantization;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

@Command(name = "forward", mixinStandardHelpOptions = true,
        description = "Parity tool: read input_ids [B,T] (I32/I64, optional attention_mask) from a safetensors file, write logits [B,T,V] (F32).")
public final class ForwardCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "model directory (Hugging Face layout) or Hub repo id") Path model;
    @Option(names = "--adapter", description = "PEFT adapter directory (prompt tuning, P-tuning, prefix tuning, LoRA or IA3)") Path adapter;
    @Option(names = "--quantize", description = "quantize the weights at load: q8 (8-bit blocks of 32, as llama.cpp's Q8_0)") String quantize;
    @Option(names = "--merge", description = "merge a LoRA or IA3 adapter at load") boolean merge;
    @Option(names = "--input-ids", required = true, description = "safetensors file with input_ids [B,T]") Path input;
    @Option(names = "--output", required = true, description = "safetensors file to write logits [B,T,V] to") Path output;

    @Override
    public Integer call() throws Exception {
        if (Files.isDirectory(input)) throw new UserException("--input-ids: " + input + " is a directory, expected a safetensors file");
        if (!Files.isRegularFile(input)) throw new UserException(input + ": input file not found");
        if (Files.isDirectory(output)) throw new UserException("--output: " + output + " is a directory, expected a safetensors file name");
        int B, T;
        int[] ids, mask = null;
        try (SafeTensors st = SafeTensors.open(input)) {
            SafeTensors.Tensor t = st.get("input_ids");
            if (t.shape().length != 2) throw new UserException(input + ": tensor input_ids has shape " + t.shapeString() + ", expected [B, T]");
            B = (int) t.shape()[0];
            T = (int) t.shape()[1];
            ids = t.toInts();
            if (st.has("attention_mask")) {
                SafeTensors.Tensor m = st.get("attention_mask");
                if (m.numel() != (long) B * T) throw new UserException(input + ": attention_mask has shape " + m.shapeString() + ", expected [" + B + ", " + T + "]");
                mask = m.toInts();
            }
        }
        Gemma3LM lm = Models.load(model, adapter, merge, Quantization.parse(quantize));
        int V = lm.vocabSize();
        // Padding (mask 0) is dropped: each sequence runs as if alone; padded positions get zero logits.
        List<int[]> seqs = new ArrayList<>();
        List<int[]> where = new ArrayList<>();
        for (int b = 0; b < B; b++) {
            List<Integer> s = new ArrayList<>(), w = new ArrayList<>();
            for (int t = 0; t < T; t++) {
                if (mask != null && mask[b * T + t] == 0) continue;
                int id = ids[b * T + t];
                if (id < 0 || id >= V) throw new UserException(input + ": input_ids[" + b + "][" + t + "] = " + id + " is outside the vocabulary (0.." + (V - 1) + ")");
                s.add(id);
                w.add(t);
            }
            if (s.size() > lm.maxPositions()) throw new UserException(input + ": sequence " + b + " has " + s.size() + " tokens, more than max_position_embeddings " + lm.maxPositions());
            seqs.add(s.stream().mapToInt(Integer::intValue).toArray());
            where.add(w.stream().mapToInt(Integer::intValue).toArray());
        }
        long total = (long) B * T * V;
        if (total > Integer.MAX_VALUE) throw new UserException(input + ": B*T*V = " + total + " logits do not fit one output tensor; split the batch");
        float[] out = new float[(int) total];
        List<Integer> nonEmpty = new ArrayList<>();
        for (int b = 0; b < B; b++) if (seqs.get(b).length > 0) nonEmpty.add(b);
        List<float[]> all = lm.logits(nonEmpty.stream().map(seqs::get).toList(), new int[nonEmpty.size()]);
        for (int k = 0; k < nonEmpty.size(); k++) {
            int b = nonEmpty.get(k);
            float[] lg = all.get(k);
            int[] w = where.get(b);
            for (int i = 0; i < w.length; i++) System.arraycopy(lg, i * V, out, (b * T + w[i]) * V, V);
        }
        Map<String, SafeTensors.Entry> e = new LinkedHashMap<>();
        e.put("logits", SafeTensors.Entry.f32(out, B, T, V));
        SafeTensors.write(output, e, null);
        System.out.printf("wrote logits [%d, %d, %d] to %s%n", B, T, V, output);
        return 0;
    }
}
