package dev.peft4j.model;

import dev.peft4j.Shared;
import dev.peft4j.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** 8-bit weights on the shared tiny model: accuracy against float, the q8 checkpoint round trip, what stays float. */
class Q8ModelTest {

    static List<int[]> text(int sequences, int len, int vocab, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        List<int[]> out = new ArrayList<>();
        for (int s = 0; s < sequences; s++) {
            int[] ids = new int[len];
            ids[0] = 2;
            for (int i = 1; i < len; i++) ids[i] = 3 + r.nextInt(vocab - 3);
            out.add(ids);
        }
        return out;
    }

    @Test
    void q8AgreesWithFloatOnTop1AndHasSmallKl() {
        Path fx = Shared.require("fixtures");
        Gemma3LM f = Models.load(fx.resolve("tiny-gemma3"), null, false, Quantization.NONE);
        Gemma3LM q = Models.load(fx.resolve("tiny-gemma3"), null, false, Quantization.Q8);
        assertEquals(DType.Q8_0, q.model.weights.embed.dtype);
        assertSame(q.model.weights.embed, q.model.weights.lmHead, "tied embeddings: one q8 copy");
        for (Linear l : q.model.weights.linears()) assertEquals(DType.Q8_0, l.weight.dtype, l.name);
        // norms stay float32 and untouched
        assertArrayEquals(f.model.weights.finalNorm, q.model.weights.finalNorm);
        assertArrayEquals(f.model.weights.layers[0].qNorm, q.model.weights.layers[0].qNorm);
        // 512 positions: two sequences of the model's 256
        QuantAccuracy.Result r = QuantAccuracy.compare(f, q, text(2, 256, 1024, 5), 64);
        System.out.printf("tiny-gemma3 q8 vs f32: top-1 agreement %.4f, mean KL %.2e, max KL %.2e over %d positions; logit noise %.2e, largest flipped margin %.3g, %d decided positions agree at %.4f%n",
                r.top1Agreement(), r.meanKl(), r.maxKl(), r.positions(), r.logitNoise(), r.maxFlipMargin(), r.decided(), r.decidedAgreement());
        assertEquals(512, r.positions());
        assertTrue(r.top1Agreement() >= 0.99, "top-1 agreement " + r.top1Agreement());
        assertTrue(r.meanKl() < 1e-3, "mean KL " + r.meanKl());
        // the top-1 changes only where the float model's two best logits are closer than the quantization noise can move them
        assertTrue(r.logitNoise() > 0);
        assertTrue(r.decided() > 400, "decided positions " + r.decided());
        assertEquals(1.0, r.decidedAgreement(), "top-1 agreement where the margin is at least 4x the logit noise");
        // and q8 is not a no-op: the logits do move
        assertTrue(r.meanKl() > 0);
    }

    @Test
    void q8CheckpointLoadsToTheSameWeightsAndLogits(@TempDir Path tmp) throws Exception {
        Path fx = Shared.require("fixtures");
        Gemma3Model m = Gemma3Model.load(fx.resolve("tiny-gemma3"), Quantization.Q8);
        Path out = tmp.resolve("q8");
        CheckpointWriter.saveQ8(m, out);
        Gemma3Model back = Gemma3Model.load(out);
        assertEquals(DType.Q8_0, back.weights.embed.dtype);
        assertEquals(m.weights.weightBytes(), back.weights.weightBytes());
        for (int i = 0; i < m.weights.linears().size(); i++) {
            assertArrayEquals(m.weights.linears().get(i).weight.toFloatArray(), back.weights.linears().get(i).weight.toFloatArray());
        }
        assertTrue(java.nio.file.Files.readString(out.resolve("config.json")).contains(CheckpointWriter.Q8_METHOD));
        // --quantize q8 on a q8 checkpoint keeps it as it is
        Gemma3Model again = Gemma3Model.load(out, Quantization.Q8);
        assertArrayEquals(back.weights.embed.toFloatArray(), again.weights.embed.toFloatArray());
        int[] ids = text(1, 40, 1024, 9).get(0);
        float[] a = m.logits(m.forward(List.of(new Gemma3Model.Input(m.newCache(), null, ids)), null), new int[]{39});
        float[] b = back.logits(back.forward(List.of(new Gemma3Model.Input(back.newCache(), null, ids)), null), new int[]{39});
        assertArrayEquals(a, b);
        m.weights.close();
        back.weights.close();
        again.weights.close();
    }

    @Test
    void loraAdapterStaysFloatOverAQ8Base() {
        Path fx = Shared.require("fixtures");
        Gemma3LM q = Models.load(fx.resolve("tiny-gemma3"), fx.resolve("tiny-lora"), false, Quantization.Q8);
        int lora = 0;
        for (Linear l : q.model.weights.linears()) {
            assertEquals(DType.Q8_0, l.weight.dtype);
            if (l.lora != null) {
                lora++;
                assertTrue(l.lora.a.onHeap() && l.lora.b.onHeap(), "LoRA factors stay float32 on the heap");
            }
        }
        assertTrue(lora > 0);
    }
}
