package dev.peft4j.server;

import com.fasterxml.jackson.databind.JsonNode;
import dev.peft4j.serve.SamplingParams;
import dev.peft4j.tokenizer.ChatTemplate;

import java.util.ArrayList;
import java.util.List;

/** Reading and checking request fields; every mistake is a 400 naming the field. */
final class Req {
    private Req() {}

    static boolean bool(JsonNode b, String f, boolean dflt) {
        JsonNode n = b.get(f);
        if (n == null || n.isNull()) return dflt;
        if (!n.isBoolean()) throw ApiError.bad(f, f + " must be true or false, got " + n);
        return n.asBoolean();
    }

    static String string(JsonNode b, String f, boolean required) {
        JsonNode n = b.get(f);
        if (n == null || n.isNull()) {
            if (required) throw ApiError.bad(f, f + " is required");
            return null;
        }
        if (!n.isTextual()) throw ApiError.bad(f, f + " must be a string, got " + n.getNodeType().toString().toLowerCase());
        return n.asText();
    }

    static Integer integer(JsonNode b, String f, Integer dflt, long min, long max) {
        JsonNode n = b.get(f);
        if (n == null || n.isNull()) return dflt;
        if (!n.isIntegralNumber() && !(n.isNumber() && n.asDouble() == Math.rint(n.asDouble()))) {
            throw ApiError.bad(f, f + " must be an integer, got " + n);
        }
        long v = n.asLong();
        if (v < min || v > max) throw ApiError.bad(f, f + " must be in [" + min + ", " + max + "], got " + v);
        return (int) v;
    }

    static float number(JsonNode b, String f, float dflt, double min, double max) {
        JsonNode n = b.get(f);
        if (n == null || n.isNull()) return dflt;
        if (!n.isNumber()) throw ApiError.bad(f, f + " must be a number, got " + n);
        double v = n.asDouble();
        if (!(v >= min && v <= max)) throw ApiError.bad(f, f + " must be in [" + min + ", " + max + "], got " + v);
        return (float) v;
    }

    static int[] tokenIds(JsonNode n, String f, int vocab) {
        if (n == null || !n.isArray()) throw ApiError.bad(f, f + " must be a list of token ids");
        int[] ids = new int[n.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode x = n.get(i);
            if (!x.isIntegralNumber()) throw ApiError.bad(f, f + "[" + i + "] must be an integer token id, got " + x);
            long v = x.asLong();
            if (v < 0 || v >= vocab) throw ApiError.bad(f, "token id " + v + " is outside the vocabulary (0.." + (vocab - 1) + ")");
            ids[i] = (int) v;
        }
        return ids;
    }

    static List<ChatTemplate.Message> messages(JsonNode b) {
        JsonNode m = b.get("messages");
        if (m == null || m.isNull()) throw ApiError.bad("messages", "messages is required");
        if (!m.isArray() || m.isEmpty()) throw ApiError.bad("messages", "messages must be a non-empty list of {\"role\", \"content\"}");
        List<ChatTemplate.Message> out = new ArrayList<>();
        for (int i = 0; i < m.size(); i++) {
            JsonNode x = m.get(i);
            if (!x.isObject()) throw ApiError.bad("messages", "messages[" + i + "] must be an object");
            String role = x.path("role").asText(null);
            if (role == null || !x.get("role").isTextual()) throw ApiError.bad("messages", "messages[" + i + "].role must be a string");
            if (role.equals("developer")) role = "system";
            if (!List.of("system", "user", "assistant").contains(role)) {
                throw ApiError.bad("messages", "messages[" + i + "].role must be system, user or assistant, got " + role);
            }
            if (role.equals("system") && i > 0) throw ApiError.bad("messages", "messages[" + i + "]: a system message may only come first");
            JsonNode c = x.get("content");
            String text;
            if (c == null || c.isNull()) text = "";
            else if (c.isTextual()) text = c.asText();
            else if (c.isArray()) {
                StringBuilder sb = new StringBuilder();
                for (JsonNode part : c) {
                    if (!"text".equals(part.path("type").asText()) || !part.path("text").isTextual()) {
                        throw ApiError.bad("messages", "messages[" + i + "].content: only text parts are supported");
                    }
                    sb.append(part.get("text").asText());
                }
                text = sb.toString();
            } else throw ApiError.bad("messages", "messages[" + i + "].content must be a string or a list of text parts");
            out.add(new ChatTemplate.Message(role, text));
        }
        return out;
    }

    /** Sampling fields of /v1/completions or /v1/chat/completions. */
    static SamplingParams sampling(JsonNode b, boolean chat, boolean echo, int maxN, int maxLogprobs, int context) {
        Integer maxTokens = integer(b, "max_tokens", null, Integer.MIN_VALUE, Integer.MAX_VALUE);
        if (chat) {
            Integer mct = integer(b, "max_completion_tokens", null, Integer.MIN_VALUE, Integer.MAX_VALUE);
            if (mct != null) maxTokens = mct;
        }
        String mtField = chat && b.hasNonNull("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        if (maxTokens == null) maxTokens = chat ? context : 16;
        if (maxTokens < 0) throw ApiError.bad(mtField, mtField + " must be >= 0, got " + maxTokens);
        if (maxTokens == 0 && !echo) throw ApiError.bad(mtField, mtField + " must be at least 1 (0 only with echo)");
        float temperature = number(b, "temperature", 1f, 0, 2);
        float topP = number(b, "top_p", 1f, Double.MIN_VALUE, 1);
        Integer topK = integer(b, "top_k", -1, -1, Integer.MAX_VALUE);
        float minP = number(b, "min_p", 0f, 0, 1);
        float rep = number(b, "repetition_penalty", 1f, Double.MIN_VALUE, 100);
        for (String f : new String[]{"presence_penalty", "frequency_penalty"}) {
            if (number(b, f, 0f, -2, 2) != 0f) throw ApiError.bad(f, f + " is not supported (use repetition_penalty)");
        }
        JsonNode seedNode = b.get("seed");
        Long seed = null;
        if (seedNode != null && !seedNode.isNull()) {
            if (!seedNode.isIntegralNumber()) throw ApiError.bad("seed", "seed must be an integer, got " + seedNode);
            seed = seedNode.asLong();
        }
        List<String> stop = new ArrayList<>();
        JsonNode s = b.get("stop");
        if (s != null && !s.isNull()) {
            if (s.isTextual()) stop.add(s.asText());
            else if (s.isArray()) {
                for (JsonNode x : s) {
                    if (!x.isTextual()) throw ApiError.bad("stop", "stop must be a string or a list of strings");
                    stop.add(x.asText());
                }
            } else throw ApiError.bad("stop", "stop must be a string or a list of strings");
        }
        int n = integer(b, "n", 1, 1, maxN);
        if (b.hasNonNull("best_of") && integer(b, "best_of", 1, 1, maxN) != n) throw ApiError.bad("best_of", "best_of other than n is not supported");
        boolean ignoreEos = bool(b, "ignore_eos", false);
        Integer logprobs;
        if (chat) {
            boolean want = bool(b, "logprobs", false);
            Integer top = integer(b, "top_logprobs", null, 0, maxLogprobs);
            if (top != null && !want) throw ApiError.bad("top_logprobs", "top_logprobs needs logprobs: true");
            logprobs = want ? (top == null ? 0 : top) : null;
        } else {
            logprobs = integer(b, "logprobs", null, 0, maxLogprobs);
        }
        return new SamplingParams(maxTokens, temperature, topP, topK < 0 ? 0 : topK, minP, rep, seed, stop, ignoreEos, logprobs, echo, n);
    }
}
