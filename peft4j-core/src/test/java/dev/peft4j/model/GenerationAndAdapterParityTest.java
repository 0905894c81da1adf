package dev.peft4j.model;

import dev.peft4j.Shared;
import dev.peft4j.io.SafeTensors;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Greedy generation and PEFT adapters at inference, against transformers + PEFT outputs. */
class GenerationAndAdapterParityTest {

    private static float maxDiff(float[] a, float[] b) {
        assertEquals(a.length, b.length);
        float m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
    }

    private static List<int[]> rows(int[] flat, int b, int t) {
        List<int[]> r = new ArrayList<>();
        for (int i = 0; i < b; i++) r.add(java.util.Arrays.copyOfRange(flat, i * t, (i + 1) * t));
        return r;
    }

    @Test
    void greedyTokensMatchTransformersGenerate() {
        Path fx = Shared.require("fixtures");
        Gemma3LM lm = Models.load(fx.resolve("tiny-gemma3"), null);
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-gemma3-reference.safetensors"))) {
            int[] prompt = ref.get("greedy_prompt").toInts();
            int[] expected = ref.get("greedy_tokens").toInts();
            Generator.Result r = new Generator(lm).generate(prompt, expected.length, new Sampler(Sampler.Options.greedy()),
                    new int[0], null, null, null);
            assertArrayEquals(expected, r.tokens());
            assertArrayEquals(expected, ref.get("generate_tokens").toInts());
        }
    }

    @Test
    void promptTuningAdapterReproducesPeftLogits() {
        Path fx = Shared.require("fixtures");
        Gemma3LM lm = Models.load(fx.resolve("tiny-gemma3"), fx.resolve("tiny-prompt-tuning"));
        assertEquals(5, lm.virtualTokens());
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-prompt-tuning-reference.safetensors"))) {
            List<int[]> seqs = rows(ref.get("input_ids").toInts(), 3, 20);
            float[] expected = ref.get("logits").toFloats(); // [3, 25, 1024]: virtual rows first
            List<Gemma3Model.Input> in = new ArrayList<>();
            for (int[] s : seqs) in.add(new Gemma3Model.Input(lm.model.newCache(), lm.virtualVectors(), s));
            float[] h = lm.model.forward(in, null);
            int[] all = new int[75];
            for (int i = 0; i < 75; i++) all[i] = i;
            float d = maxDiff(lm.model.logits(h, all), expected);
            assertTrue(d < 1e-4, "prompt-tuning logits differ by " + d);
            // the CausalLM view hides the virtual rows
            List<float[]> viaLm = lm.logits(seqs, new int[]{0, 0, 0});
            float[] row = viaLm.get(2);
            float m = 0;
            for (int i = 0; i < 20 * 1024; i++) m = Math.max(m, Math.abs(row[i] - expected[(2 * 25 + 5) * 1024 + i]));
            assertTrue(m < 1e-4, "CausalLM.logits with virtual tokens differs by " + m);
        }
    }

    @Test
    void loraAdapterUnmergedMergedAndUnmerged() {
        Path fx = Shared.require("fixtures");
        try (SafeTensors ref = SafeTensors.open(fx.resolve("tiny-lora-reference.safetensors"))) {
            List<int[]> seqs = rows(ref.get("input_ids").toInts(), 3, 20);
            int[] from = {0, 0, 0};
            Gemma3LM lm = Models.load(fx.resolve("tiny-gemma3"), fx.resolve("tiny-lora"));
            float[] got = concat(lm.logits(seqs, from));
            float d = maxDiff(got, ref.get("logits").toFloats());
            assertTrue(d < 1e-4, "LoRA logits differ by " + d);

            Gemma3LM merged = Models.load(fx.resolve("tiny-gemma3"), fx.resolve("tiny-lora"), true);
            float dm = maxDiff(concat(merged.logits(seqs, from)), ref.get("merged_logits").toFloats());
            assertTrue(dm < 1e-4, "merged LoRA logits differ by " + dm);

            // merge then unmerge in place: the merged model gives merged_logits, unmerging returns to the unmerged result
            for (Linear l : lm.model.weights.linears()) l.merge();
            float dmi = maxDiff(concat(lm.logits(seqs, from)), ref.get("merged_logits").toFloats());
            assertTrue(dmi < 1e-4, "in-place merge differs by " + dmi);
            for (Linear l : lm.model.weights.linears()) l.unmerge();
            float du = maxDiff(concat(lm.logits(seqs, from)), ref.get("logits").toFloats());
            assertTrue(du < 1e-4, "unmerged logits differ by " + du);

            // base model without adapter must differ clearly (the adapter is not a no-op)
            Gemma3LM base = Models.load(fx.resolve("tiny-gemma3"), null);
            assertTrue(maxDiff(concat(base.logits(seqs, from)), ref.get("logits").toFloats()) > 1e-2);
        }
    }

    private static float[] concat(List<float[]> parts) {
        int n = 0;
        for (float[] p : parts) n += p.length;
        float[] out = new float[n];
        int at = 0;
        for (float[] p : parts) { System.arraycopy(p, 0, out, at, p.length); at += p.length; }
        return out;
    }
}
