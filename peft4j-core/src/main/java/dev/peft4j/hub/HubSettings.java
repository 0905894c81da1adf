package dev.peft4j.hub;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/**
 * Where the Hugging Face Hub cache lives and how to reach the Hub, read from the same environment variables as
 * {@code huggingface_hub} ({@code HF_HUB_CACHE}, {@code HF_HOME}, {@code XDG_CACHE_HOME}, {@code HF_ENDPOINT},
 * {@code HF_TOKEN}, {@code HF_HUB_OFFLINE}).
 *
 * @param endpoint base URL of the Hub, no trailing slash (default {@code https://huggingface.co})
 * @param cacheDir the hub cache folder holding {@code models--owner--name/} entries
 * @param token    bearer token or null
 * @param offline  true: never touch the network, use the cache only
 * @param progress true: draw a progress bar on stderr while downloading
 */
public record HubSettings(String endpoint, Path cacheDir, String token, boolean offline, boolean progress) {

    public static final String DEFAULT_ENDPOINT = "https://huggingface.co";
    private static final Set<String> TRUE = Set.of("1", "ON", "YES", "TRUE");

    /** Settings from the process environment. */
    public static HubSettings fromEnv() {
        return fromEnv(System.getenv(), Path.of(System.getProperty("user.home")));
    }

    /** Settings from the given environment (testable). Same precedence as {@code huggingface_hub.constants}. */
    public static HubSettings fromEnv(Map<String, String> env, Path home) {
        Path hfHome = nonEmpty(env.get("HF_HOME")) != null ? expand(env.get("HF_HOME"), home)
                : (nonEmpty(env.get("XDG_CACHE_HOME")) != null ? expand(env.get("XDG_CACHE_HOME"), home)
                        : home.resolve(".cache")).resolve("huggingface");
        Path cache;
        if (nonEmpty(env.get("HF_HUB_CACHE")) != null) cache = expand(env.get("HF_HUB_CACHE"), home);
        else if (nonEmpty(env.get("HUGGINGFACE_HUB_CACHE")) != null) cache = expand(env.get("HUGGINGFACE_HUB_CACHE"), home);
        else cache = hfHome.resolve("hub");
        String endpoint = nonEmpty(env.get("HF_ENDPOINT")) != null ? env.get("HF_ENDPOINT") : DEFAULT_ENDPOINT;
        endpoint = stripSlash(endpoint);
        String token = nonEmpty(env.get("HF_TOKEN"));
        if (token == null) token = nonEmpty(env.get("HUGGING_FACE_HUB_TOKEN"));
        if (token == null) {
            Path tokenFile = nonEmpty(env.get("HF_TOKEN_PATH")) != null ? expand(env.get("HF_TOKEN_PATH"), home) : hfHome.resolve("token");
            try {
                if (Files.isRegularFile(tokenFile)) token = nonEmpty(Files.readString(tokenFile, StandardCharsets.UTF_8).strip());
            } catch (IOException ignored) {
                // unreadable token file: behave as if there were none
            }
        }
        String off = nonEmpty(env.get("HF_HUB_OFFLINE"));
        if (off == null) off = nonEmpty(env.get("TRANSFORMERS_OFFLINE"));
        boolean offline = off != null && TRUE.contains(off.strip().toUpperCase(Locale.ROOT));
        return new HubSettings(endpoint, cache.toAbsolutePath().normalize(), token, offline, true);
    }

    public HubSettings withCacheDir(Path dir) { return new HubSettings(endpoint, dir.toAbsolutePath().normalize(), token, offline, progress); }
    public HubSettings withEndpoint(String url) { return new HubSettings(stripSlash(url), cacheDir, token, offline, progress); }
    public HubSettings withToken(String t) { return new HubSettings(endpoint, cacheDir, t, offline, progress); }
    public HubSettings withOffline(boolean o) { return new HubSettings(endpoint, cacheDir, token, o, progress); }
    public HubSettings withProgress(boolean p) { return new HubSettings(endpoint, cacheDir, token, offline, p); }

    @Override public String toString() {
        return "HubSettings[endpoint=" + endpoint + ", cacheDir=" + cacheDir + ", token=" + (token == null ? "none" : "set")
                + ", offline=" + offline + "]";
    }

    private static String stripSlash(String s) {
        while (s.endsWith("/")) s = s.substring(0, s.length() - 1);
        return s;
    }

    private static String nonEmpty(String s) { return s == null || s.isBlank() ? null : s; }

    private static Path expand(String p, Path home) {
        if (p.equals("~")) return home;
        if (p.startsWith("~/")) return home.resolve(p.substring(2));
        return Path.of(p);
    }
}
