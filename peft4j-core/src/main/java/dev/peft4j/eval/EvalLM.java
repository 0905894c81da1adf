package dev.peft4j.eval;

import java.util.List;
import java.util.function.IntConsumer;

/** lm-eval's request types (what {@link Evaluator} needs from a model); {@link HarnessLM} implements them on a CausalLM. */
public interface EvalLM {
    List<HarnessLM.LL> loglikelihood(List<HarnessLM.LLRequest> requests, IntConsumer progress);

    List<String> generateUntil(List<HarnessLM.GenRequest> requests, IntConsumer progress);
}
