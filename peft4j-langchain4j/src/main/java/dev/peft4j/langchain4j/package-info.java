/**
 * LangChain4j integration: {@link dev.peft4j.langchain4j.Peft4jChatModel}, {@link dev.peft4j.langchain4j.Peft4jStreamingChatModel}
 * and {@link dev.peft4j.langchain4j.Peft4jLanguageModel} run a Gemma 3 model (with an optional PEFT adapter) in process, for
 * LangChain4j's {@code AiServices}, chains and memory. Public API, like {@code dev.peft4j.api}.
 */
package dev.peft4j.langchain4j;
