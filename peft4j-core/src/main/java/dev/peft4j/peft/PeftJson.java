package dev.peft4j.peft;

import com.fasterxml.jackson.databind.JsonNode;

import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Writes JSON exactly like Python's {@code json.dumps(obj, indent=2, sort_keys=True)} (what PEFT uses for
 * adapter_config.json): two-space indent, {@code ": "} after keys, sorted keys, {@code ensure_ascii} escapes,
 * Python float repr ({@code 0.0}, {@code 1e-05}), empty containers as {@code {}} / {@code []}, no trailing newline.
 */
public final class PeftJson {
    private PeftJson() {}

    public static String dumps(JsonNode node) {
        StringBuilder sb = new StringBuilder();
        write(node, sb, 0);
        return sb.toString();
    }

    private static void write(JsonNode n, StringBuilder sb, int depth) {
        if (n == null || n.isNull() || n.isMissingNode()) sb.append("null");
        else if (n.isBoolean()) sb.append(n.booleanValue() ? "true" : "false");
        else if (n.isIntegralNumber()) sb.append(n.bigIntegerValue());
        else if (n.isNumber()) sb.append(pyFloat(n.doubleValue()));
        else if (n.isTextual()) quote(n.textValue(), sb);
        else if (n.isArray()) {
            if (n.isEmpty()) { sb.append("[]"); return; }
            sb.append("[");
            boolean first = true;
            for (JsonNode e : n) {
                sb.append(first ? "\n" : ",\n");
                first = false;
                indent(sb, depth + 1);
                write(e, sb, depth + 1);
            }
            sb.append("\n");
            indent(sb, depth);
            sb.append("]");
        } else if (n.isObject()) {
            if (n.isEmpty()) { sb.append("{}"); return; }
            List<String> keys = new ArrayList<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = n.fields(); it.hasNext(); ) keys.add(it.next().getKey());
            keys.sort(PeftJson::compareCodePoints);
            sb.append("{");
            boolean first = true;
            for (String k : keys) {
                sb.append(first ? "\n" : ",\n");
                first = false;
                indent(sb, depth + 1);
                quote(k, sb);
                sb.append(": ");
                write(n.get(k), sb, depth + 1);
            }
            sb.append("\n");
            indent(sb, depth);
            sb.append("}");
        } else {
            throw new IllegalArgumentException("cannot write JSON node " + n.getNodeType());
        }
    }

    /** Python sorts str keys by code point. */
    private static int compareCodePoints(String a, String b) {
        int i = 0, j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i), cb = b.codePointAt(j);
            if (ca != cb) return Integer.compare(ca, cb);
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }

    private static void indent(StringBuilder sb, int depth) { sb.append("  ".repeat(depth)); }

    private static void quote(String s, StringBuilder sb) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                case '\b' -> sb.append("\\b");
                case '\f' -> sb.append("\\f");
                default -> {
                    if (c < 0x20 || c > 0x7e) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
                }
            }
        }
        sb.append('"');
    }

    /** Python {@code repr(float)}: shortest round-trip digits; scientific when the exponent is < -4 or >= 16. */
    static String pyFloat(double d) {
        if (Double.isNaN(d)) return "NaN";
        if (Double.isInfinite(d)) return d > 0 ? "Infinity" : "-Infinity";
        String sign = (d < 0 || (d == 0 && 1 / d < 0)) ? "-" : "";
        double a = Math.abs(d);
        if (a == 0) return sign + "0.0";
        BigDecimal bd = new BigDecimal(Double.toString(a)).stripTrailingZeros();
        String digits = bd.unscaledValue().toString();
        int decpt = digits.length() - bd.scale();       // value = 0.DIGITS * 10^decpt
        if (decpt > -4 && decpt <= 16) {
            if (decpt <= 0) return sign + "0." + "0".repeat(-decpt) + digits;
            if (decpt >= digits.length()) return sign + digits + "0".repeat(decpt - digits.length()) + ".0";
            return sign + digits.substring(0, decpt) + "." + digits.substring(decpt);
        }
        int exp = decpt - 1;
        String mant = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        return sign + mant + "e" + (exp < 0 ? "-" : "+") + String.format("%02d", Math.abs(exp));
    }
}
