package dev.peft4j.peft;

import dev.peft4j.model.Gemma3Model;

import java.util.SplittableRandom;

/**
 * PEFT's prompt-tuning initialisations (PromptEmbedding.__init__). The vectors live in the post-scaling space: TEXT and
 * SAMPLE_VOCAB copy the model's SCALED input embeddings (Gemma multiplies by sqrt(hidden)); RANDOM is N(0, 1) as
 * nn.Embedding's default init.
 */
public final class PromptInit {
    private PromptInit() {}

    /** TEXT: ids of the init text as the tokenizer gives them (with BOS for Gemma), repeated then cut to n. */
    public static float[] text(Gemma3Model m, int[] textIds, int n) {
        if (textIds.length == 0) throw new IllegalArgumentException("empty init text");
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = textIds[i % textIds.length];
        return scaledEmbeddings(m, ids);
    }

    /** SAMPLE_VOCAB: n token ids drawn uniformly from the vocabulary. */
    public static float[] sampleVocab(Gemma3Model m, int n, SplittableRandom rng) {
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = rng.nextInt(m.config.vocabSize());
        return scaledEmbeddings(m, ids);
    }

    /** RANDOM: N(0, 1) entries. */
    public static float[] random(int n, int hidden, SplittableRandom rng) {
        float[] v = new float[n * hidden];
        for (int i = 0; i < v.length; i++) v[i] = (float) gaussian(rng);
        return v;
    }

    public static float[] scaledEmbeddings(Gemma3Model m, int[] ids) {
        int H = m.config.hidden();
        float[] out = new float[ids.length * H];
        for (int i = 0; i < ids.length; i++) {
            m.weights.embed.rowsToFloat(ids[i], 1, out, i * H);
            for (int j = 0; j < H; j++) out[i * H + j] *= m.embedScale();
        }
        return out;
    }

    static double gaussian(SplittableRandom r) {
        double u1 = Math.max(r.nextDouble(), 1e-300), u2 = r.nextDouble();
        return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }
}
