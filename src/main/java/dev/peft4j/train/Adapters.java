package dev.peft4j.train;

import dev.peft4j.model.Gemma3Model;
import dev.peft4j.model.Linear;
import dev.peft4j.util.UserException;

import java.util.Collection;
import java.util.Random;

/**
 * Fresh trainable adapters initialized as PEFT does (for training from scratch and benchmarks; loading saved adapters is the
 * job of the adapter reader).
 */
public final class Adapters {
    private Adapters() {}

    /**
     * Attaches a LoRA branch to every Linear whose module name ends with one of {@code targets} (e.g. "q_proj", "v_proj"):
     * A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0, scale alpha/r (alpha/√r with rsLoRA).
     *
     * @return the number of adapted modules
     */
    public static int attachLora(Gemma3Model model, int r, double alpha, boolean rsLora, float dropout, Collection<String> targets, long seed) {
        if (r <= 0) throw new UserException("lora r must be positive, got " + r);
        Random rnd = new Random(seed);
        float scale = (float) (rsLora ? alpha / Math.sqrt(r) : alpha / r);
        int n = 0;
        for (Linear l : model.weights.linears()) {
            boolean hit = false;
            for (String t : targets) hit |= l.name.equals(t) || l.name.endsWith("." + t);
            if (!hit) continue;
            float bound = (float) (1 / Math.sqrt(l.in()));
            float[] a = new float[r * l.in()];
            for (int i = 0; i < a.length; i++) a[i] = (rnd.nextFloat() * 2 - 1) * bound;
            l.lora = new Linear.Lora(r, scale, a, new float[l.out() * r], l.in(), l.out());
            l.lora.dropout = dropout;
            n++;
        }
        if (n == 0) throw new UserException("lora target_modules " + targets + " match no module of the model");
        return n;
    }

    /** PEFT's RANDOM prompt init: n virtual tokens [n, H] drawn from N(0, 1). */
    public static float[] randomPrompt(int n, int hidden, long seed) {
        Random rnd = new Random(seed);
        float[] p = new float[n * hidden];
        for (int i = 0; i < p.length; i++) p[i] = (float) rnd.nextGaussian();
        return p;
    }

    /**
     * PEFT's TEXT prompt init: the SCALED input embeddings (embed · √hidden) of the init text's token ids (tokenized with
     * BOS), the id list repeated until it covers n and cut to n.
     */
    public static float[] textPrompt(Gemma3Model model, int[] initIds, int n) {
        if (initIds.length == 0) throw new UserException("prompt_tuning_init_text tokenizes to no tokens");
        int H = model.config.hidden();
        float[] p = new float[n * H];
        for (int t = 0; t < n; t++) {
            int id = initIds[t % initIds.length];
            if (id < 0 || id >= model.config.vocabSize()) throw new UserException("prompt init token id " + id + " is outside the vocabulary");
            model.weights.embed.rowsToFloat(id, 1, p, t * H);
            for (int i = 0; i < H; i++) p[t * H + i] *= model.embedScale();
        }
        return p;
    }
}
