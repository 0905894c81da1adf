/**
 * <b>The public API of peft4j</b>: the only package whose types are meant for applications and kept compatible. Every other
 * package of peft4j-core ({@code dev.peft4j.tensor}, {@code io}, {@code model}, {@code train}, {@code peft}, {@code tokenizer},
 * {@code data}, {@code eval}, {@code hub}, {@code util}) is internal and may change in any release.
 *
 * <h2>Ten-minute tour</h2>
 * <pre>{@code
 * // 1. load: a directory or a Hub repo id, optionally with a PEFT adapter (LoRA, prompt tuning, ...)
 * try (Model m = Peft4j.load("google/gemma-3-270m", LoadOptions.builder().adapter("runs/gemma-pt").build())) {
 *
 *     // 2. generate (blocking, or streaming with a TokenListener)
 *     GenerationOptions o = GenerationOptions.builder().maxNewTokens(64).temperature(0.7f).topP(0.95f).seed(1).build();
 *     Generation g = m.generate("The capital of France is", o);
 *     m.generate("Once upon a time", o, (id, text) -> System.out.print(text));
 *
 *     // 3. chat through Gemma's chat template
 *     Generation a = m.chat(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Why is the sky blue?")), o);
 *
 *     // 4. score a continuation as lm-evaluation-harness does
 *     double lp = m.logLikelihood("Paris is the capital of", " France").logprob();
 *
 *     // 5. evaluate on lm-eval tasks; results as objects and as lm-eval's JSON
 *     EvalResults r = m.evaluate(EvalOptions.builder().tasks("arc_easy").dataDir(Path.of("data")).limit(100).build());
 *     double acc = r.task("arc_easy").metric("acc");
 *     r.write(Path.of("results.json"));
 * }
 *
 * // 6. fine-tune (the options of `peft4j train`), with progress and cancellation
 * Training t = Training.builder().model("google/gemma-3-270m").data(Path.of("dolly.jsonl")).output(Path.of("runs/pt"))
 *         .method(Training.Method.PROMPT_TUNING).maxSteps(100).listener(p -> System.out.println(p.step() + " " + p.loss()))
 *         .build();
 * TrainingResult res = t.run();   // t.cancel() stops after a checkpoint; resume(true) continues it
 * }</pre>
 *
 * <p>Mistakes in the input (a missing file, an unknown task, an option out of range) throw {@link dev.peft4j.api.Peft4jException}
 * with a one-line message naming the file, field or argument. The JVM needs
 * {@code --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED} (see README, "Use from Java").
 */
package dev.peft4j.api;
