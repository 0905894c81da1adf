package dev.peft4j.hub;

import dev.peft4j.util.UserException;
import me.tongfei.progressbar.ConsoleProgressBarConsumer;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * HTTP side of the Hub: file metadata ({@code HEAD /{repo}/resolve/{revision}/{file}}) and resumable blob downloads,
 * following {@code huggingface_hub.file_download} (ETag/X-Linked-Etag, X-Repo-Commit, X-Linked-Size, Location).
 */
final class HubDownloader {
    private static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
    private static final int MAX_REDIRECTS = 10;

    /** What the Hub says about one file at one revision. */
    record FileMetadata(String commit, String etag, long size, URI location) {}

    private final HubSettings settings;
    private final HttpClient http;

    HubDownloader(HubSettings settings) {
        this.settings = settings;
        this.http = HttpClient.newBuilder()
                .followRedirects(HttpClient.Redirect.NEVER)   // redirects are followed by hand (auth only to the endpoint)
                .connectTimeout(Duration.ofSeconds(10))
                .build();
    }

    /** {@code ENDPOINT/REPO/resolve/REVISION/FILE}, revision fully escaped, file escaped except '/'. */
    URI resolveUrl(String repoId, String revision, String file) {
        StringBuilder f = new StringBuilder();
        for (String part : file.split("/", -1)) {
            if (!f.isEmpty()) f.append('/');
            f.append(escape(part));
        }
        return URI.create(settings.endpoint() + "/" + repoId + "/resolve/" + escape(revision) + "/" + f);
    }

    private static String escape(String s) { return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20"); }

    /**
     * HEAD request for a file. Relative redirects (renamed repos) are followed; an absolute redirect (to a CDN) is not:
     * the Hub's headers on the redirect answer carry the metadata and its Location is where to download from.
     */
    FileMetadata metadata(String repoId, String revision, String file) throws IOException {
        URI uri = resolveUrl(repoId, revision, file);
        for (int hop = 0; ; hop++) {
            HttpRequest req = request(uri).method("HEAD", HttpRequest.BodyPublishers.noBody())
                    .header("Accept-Encoding", "identity").timeout(Duration.ofSeconds(10)).build();
            HttpResponse<Void> resp = send(req, HttpResponse.BodyHandlers.discarding());
            int code = resp.statusCode();
            HttpHeaders h = resp.headers();
            String location = h.firstValue("Location").orElse(null);
            if (code >= 300 && code < 400 && location != null && isRelative(location) && hop < MAX_REDIRECTS) {
                uri = uri.resolve(location);
                continue;
            }
            if (code >= 400) throw httpError(code, h.firstValue("X-Error-Code").orElse(null), h.firstValue("X-Error-Message").orElse(null),
                    repoId, revision, file, uri);
            String commit = h.firstValue("X-Repo-Commit").orElse(null);
            String etag = h.firstValue("X-Linked-Etag").or(() -> h.firstValue("ETag")).orElse(null);
            if (commit == null || etag == null) {
                throw new UserException(uri + " answered without " + (commit == null ? "X-Repo-Commit" : "an ETag")
                        + " header: " + settings.endpoint() + " does not look like a Hugging Face Hub (check HF_ENDPOINT and any proxy)");
            }
            long size = parseLong(h.firstValue("X-Linked-Size").or(() -> h.firstValue("Content-Length")).orElse(null));
            URI loc = location != null && code >= 300 && code < 400 ? uri.resolve(location) : uri;
            return new FileMetadata(commit, normalizeEtag(etag), size, loc);
        }
    }

    private static boolean isRelative(String location) {
        try {
            return URI.create(location).getHost() == null;
        } catch (IllegalArgumentException e) {
            throw new UserException("the Hub sent an invalid redirect location: " + location);
        }
    }

    /** huggingface_hub {@code _normalize_etag}: drop a weak-validator prefix and the quotes. */
    static String normalizeEtag(String etag) {
        String e = etag.strip();
        if (e.startsWith("W/")) e = e.substring(2);
        if (e.length() >= 2 && e.startsWith("\"") && e.endsWith("\"")) e = e.substring(1, e.length() - 1);
        return e;
    }

    /** True when the ETag is a sha256 (LFS files): the downloaded bytes are then verified against it. */
    static boolean isSha256(String etag) { return SHA256.matcher(etag).matches(); }

    /**
     * Downloads a blob to {@code dest} through {@code dest.incomplete}, resuming a partial file with a Range request,
     * verifying the size and (for sha256 ETags) the checksum, then renaming atomically.
     */
    void downloadBlob(FileMetadata meta, Path dest, String displayName) throws IOException {
        Files.createDirectories(dest.getParent());
        Path part = dest.resolveSibling(dest.getFileName() + ".incomplete");
        boolean verify = isSha256(meta.etag());
        for (int attempt = 0; attempt < 2; attempt++) {
            long have = Files.exists(part) ? Files.size(part) : 0;
            if (meta.size() >= 0 && have > meta.size()) {
                Files.delete(part);
                have = 0;
            }
            MessageDigest digest = verify ? sha256() : null;
            HttpResponse<InputStream> resp = get(meta.location(), have);
            int code = resp.statusCode();
            if (code == 416 && have > 0) {             // range not satisfiable: our partial file is complete or stale
                resp.body().close();
                if (meta.size() == have) {
                    finish(part, dest, meta, verify ? digestOf(part) : null, displayName);
                    return;
                }
                Files.delete(part);
                continue;
            }
            if (code >= 400) {
                resp.body().close();
                throw httpError(code, resp.headers().firstValue("X-Error-Code").orElse(null), null, null, null, displayName, meta.location());
            }
            boolean append = code == 206 && have > 0;
            if (!append) have = 0;                     // server ignored the range: start over
            if (append && digest != null) updateFrom(digest, part);
            long total = meta.size() >= 0 ? meta.size() : (have + contentLength(resp.headers()));
            try (InputStream in = resp.body();
                 OutputStream out = Files.newOutputStream(part, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                         append ? StandardOpenOption.APPEND : StandardOpenOption.TRUNCATE_EXISTING);
                 ProgressBar bar = progressBar(displayName, total, have)) {
                byte[] buf = new byte[1 << 16];
                long done = have;
                try {
                    for (int n; (n = in.read(buf)) > 0; ) {
                        out.write(buf, 0, n);
                        if (digest != null) digest.update(buf, 0, n);
                        done += n;
                        if (bar != null) bar.stepTo(done);
                    }
                } catch (IOException e) {
                    out.flush();
                    throw new UserException("download of " + displayName + " was interrupted after " + done
                            + (total > 0 ? " of " + total : "") + " bytes (" + e.getClass().getSimpleName()
                            + (e.getMessage() == null ? "" : ": " + e.getMessage()) + "); run the command again to resume", e);
                }
            }
            finish(part, dest, meta, digest == null ? null : HexFormat.of().formatHex(digest.digest()), displayName);
            return;
        }
        throw new UserException("could not download " + displayName + " from " + meta.location() + ": the server rejected resuming twice");
    }

    private void finish(Path part, Path dest, FileMetadata meta, String sha, String displayName) throws IOException {
        long got = Files.size(part);
        if (meta.size() >= 0 && got != meta.size()) {
            throw new UserException("download of " + displayName + " stopped at " + got + " of " + meta.size()
                    + " bytes; run the command again to resume (partial file " + part + ")");
        }
        if (sha != null && !sha.equals(meta.etag())) {
            Files.deleteIfExists(part);
            throw new UserException("checksum mismatch for " + displayName + ": expected sha256 " + meta.etag() + ", got " + sha
                    + " (the corrupt download was deleted; run the command again)");
        }
        Files.move(part, dest, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /** GET with manual redirects; Authorization is only sent to the endpoint's host. */
    private HttpResponse<InputStream> get(URI uri, long from) throws IOException {
        for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
            HttpRequest.Builder b = request(uri).GET().header("Accept-Encoding", "identity");
            if (from > 0) b.header("Range", "bytes=" + from + "-");
            HttpResponse<InputStream> resp = send(b.build(), HttpResponse.BodyHandlers.ofInputStream());
            int code = resp.statusCode();
            String location = resp.headers().firstValue("Location").orElse(null);
            if (code >= 300 && code < 400 && location != null) {
                resp.body().close();
                try {
                    uri = uri.resolve(location);
                } catch (IllegalArgumentException e) {
                    throw new UserException("invalid redirect location while downloading " + uri + ": " + location);
                }
                continue;
            }
            return resp;
        }
        throw new UserException("too many redirects while downloading " + uri);
    }

    private HttpRequest.Builder request(URI uri) {
        HttpRequest.Builder b = HttpRequest.newBuilder(uri).header("User-Agent", "peft4j/0.1.0");
        if (settings.token() != null && sameHost(uri, URI.create(settings.endpoint()))) {
            b.header("Authorization", "Bearer " + settings.token());
        }
        return b;
    }

    private static boolean sameHost(URI a, URI b) {
        return Objects.equals(a.getHost(), b.getHost()) && a.getPort() == b.getPort() && Objects.equals(a.getScheme(), b.getScheme());
    }

    private <T> HttpResponse<T> send(HttpRequest req, HttpResponse.BodyHandler<T> handler) throws IOException {
        try {
            return http.send(req, handler);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    private UserException httpError(int code, String errorCode, String errorMessage, String repoId, String revision, String file, URI uri) {
        String what = repoId == null ? file : repoId + (revision == null || revision.equals("main") ? "" : "@" + revision) + ": " + file;
        String msg;
        if ("GatedRepo".equals(errorCode) || ((code == 401 || code == 403) && !"RepoNotFound".equals(errorCode))) {
            msg = "access to " + what + " denied (HTTP " + code + "): the repo is gated or private; accept its license on "
                    + settings.endpoint() + "/" + (repoId == null ? "" : repoId) + " and set HF_TOKEN to a token of that account"
                    + (settings.token() == null ? " (HF_TOKEN is not set)" : " (the HF_TOKEN in use was refused)");
        } else if ("RepoNotFound".equals(errorCode)) {
            msg = "repository " + repoId + " not found on " + settings.endpoint() + " (HTTP " + code + "; if it is private, set HF_TOKEN)";
        } else if ("RevisionNotFound".equals(errorCode)) {
            msg = "revision '" + revision + "' not found in " + repoId + " on " + settings.endpoint();
        } else if (code == 404) {
            msg = "not found: " + what + " (HTTP 404 for " + uri + "): check the repo id, revision and file name";
        } else {
            msg = "the Hub answered HTTP " + code + " for " + uri + (errorMessage == null ? "" : ": " + errorMessage);
        }
        return new HubHttpException(msg, code, errorCode);
    }

    /** Files smaller than this download without a progress bar. */
    static final long PROGRESS_MIN_BYTES = 1L << 20;

    private ProgressBar progressBar(String name, long total, long from) {
        if (!settings.progress() || (total >= 0 && total < PROGRESS_MIN_BYTES)) return null;
        ProgressBarBuilder b = new ProgressBarBuilder().setTaskName(name.substring(name.lastIndexOf('/') + 1)).setInitialMax(total > 0 ? total : -1)
                .setStyle(ProgressBarStyle.ASCII).setUnit("MiB", 1L << 20).showSpeed()
                .setConsumer(new ConsoleProgressBarConsumer(System.err)).setUpdateIntervalMillis(250);
        if (from > 0) b.startsFrom(from, Duration.ZERO);
        return b.build();
    }

    private static long contentLength(HttpHeaders h) { long n = parseLong(h.firstValue("Content-Length").orElse(null)); return Math.max(n, 0); }

    private static long parseLong(String s) {
        if (s == null) return -1;
        try {
            return Long.parseLong(s.strip());
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    private static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void updateFrom(MessageDigest d, Path file) throws IOException {
        try (InputStream in = Files.newInputStream(file)) {
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) d.update(buf, 0, n);
        }
    }

    private static String digestOf(Path file) throws IOException {
        MessageDigest d = sha256();
        updateFrom(d, file);
        return HexFormat.of().formatHex(d.digest());
    }
}
