package dev.peft4j.hub;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A fake Hugging Face Hub on 127.0.0.1 (ephemeral ports): {@code /{repo}/resolve/{rev}/{file}} answers like the Hub
 * (X-Repo-Commit, ETag = git sha1 for small files; X-Linked-Etag = sha256 + X-Linked-Size + 302 to a CDN for LFS files,
 * X-Error-Code on errors) and a second server plays the CDN (Range requests supported).
 */
final class FakeHub implements AutoCloseable {
    record Repo(String commit, Map<String, byte[]> files, boolean gated) {}

    final HttpServer hub;
    final HttpServer cdn;
    final Map<String, Repo> repos = new ConcurrentHashMap<>();
    final Map<String, byte[]> blobs = new ConcurrentHashMap<>();
    final List<String> log = new CopyOnWriteArrayList<>();
    final List<String> cdnAuth = new CopyOnWriteArrayList<>();
    final List<String> ranges = new CopyOnWriteArrayList<>();
    final Map<String, String> wrongSha = new ConcurrentHashMap<>();
    volatile long failAfterBytes = -1;   // CDN: cut the connection after this many body bytes (once)
    static final String TOKEN = "hf_secret";

    FakeHub() throws IOException {
        InetAddress lo = InetAddress.getByName("127.0.0.1");
        hub = HttpServer.create(new InetSocketAddress(lo, 0), 0);
        cdn = HttpServer.create(new InetSocketAddress(lo, 0), 0);
        hub.createContext("/", this::handleHub);
        cdn.createContext("/", this::handleCdn);
        hub.start();
        cdn.start();
    }

    String endpoint() { return "http://127.0.0.1:" + hub.getAddress().getPort(); }

    void add(String repoId, String commit, boolean gated, Map<String, byte[]> files) { repos.put(repoId, new Repo(commit, files, gated)); }

    static boolean isLfs(String file) { return file.endsWith(".safetensors"); }

    static String sha256(byte[] b) {
        try { return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b)); }
        catch (Exception e) { throw new IllegalStateException(e); }
    }

    static String gitSha1(byte[] b) {
        try {
            MessageDigest d = MessageDigest.getInstance("SHA-1");
            d.update(("blob " + b.length + "\0").getBytes(StandardCharsets.US_ASCII));
            return HexFormat.of().formatHex(d.digest(b));
        } catch (Exception e) { throw new IllegalStateException(e); }
    }

    private void handleHub(HttpExchange ex) throws IOException {
        String path = URLDecoder.decode(ex.getRequestURI().getRawPath(), StandardCharsets.UTF_8);
        log.add(ex.getRequestMethod() + " " + path);
        int r = path.indexOf("/resolve/");
        if (r < 0) { send(ex, 404, null, new byte[0]); return; }
        String repoId = path.substring(1, r);
        String rest = path.substring(r + "/resolve/".length());
        Repo repo = repos.get(repoId);
        if (repo == null) { send(ex, 401, "RepoNotFound", new byte[0]); return; }
        if (repo.gated && !("Bearer " + TOKEN).equals(ex.getRequestHeaders().getFirst("Authorization"))) {
            send(ex, 401, "GatedRepo", new byte[0]); return;
        }
        int slash = rest.indexOf('/');
        String rev = rest.substring(0, slash), file = rest.substring(slash + 1);
        if (!rev.equals("main") && !rev.equals(repo.commit)) { send(ex, 404, "RevisionNotFound", new byte[0]); return; }
        byte[] data = repo.files.get(file);
        if (data == null) { send(ex, 404, "EntryNotFound", new byte[0]); return; }
        ex.getResponseHeaders().add("X-Repo-Commit", repo.commit);
        if (isLfs(file)) {
            String sha = wrongSha.getOrDefault(file, sha256(data));
            blobs.put(sha256(data), data);
            ex.getResponseHeaders().add("ETag", "\"" + gitSha1(data) + "\"");   // git pointer etag; X-Linked-Etag wins
            ex.getResponseHeaders().add("X-Linked-Etag", "\"" + sha + "\"");
            ex.getResponseHeaders().add("X-Linked-Size", Long.toString(data.length));
            ex.getResponseHeaders().add("Location", "http://127.0.0.1:" + cdn.getAddress().getPort() + "/blob/" + sha256(data) + "?sig=x");
            ex.sendResponseHeaders(302, -1);
            ex.close();
            return;
        }
        ex.getResponseHeaders().add("ETag", "\"" + gitSha1(data) + "\"");
        send(ex, 200, null, data);
    }

    private void handleCdn(HttpExchange ex) throws IOException {
        String path = ex.getRequestURI().getPath();
        log.add("CDN " + ex.getRequestMethod() + " " + path);
        String auth = ex.getRequestHeaders().getFirst("Authorization");
        if (auth != null) cdnAuth.add(auth);
        byte[] data = blobs.get(path.substring(path.lastIndexOf('/') + 1));
        if (data == null) { send(ex, 404, null, new byte[0]); return; }
        String range = ex.getRequestHeaders().getFirst("Range");
        int from = 0;
        int code = 200;
        if (range != null) {
            ranges.add(range);
            from = Integer.parseInt(range.substring("bytes=".length(), range.indexOf('-')));
            if (from >= data.length) { send(ex, 416, null, new byte[0]); return; }
            code = 206;
            ex.getResponseHeaders().add("Content-Range", "bytes " + from + "-" + (data.length - 1) + "/" + data.length);
        }
        byte[] body = java.util.Arrays.copyOfRange(data, from, data.length);
        long cut = failAfterBytes;
        if (cut >= 0 && cut < body.length) {
            failAfterBytes = -1;
            ex.sendResponseHeaders(code, body.length);
            OutputStream os = ex.getResponseBody();
            os.write(body, 0, (int) cut);
            os.flush();
            // end the exchange mid-body: the server drops the connection and the client sees a premature EOF
            try { ex.close(); } catch (RuntimeException ignored) { }
            return;
        }
        send(ex, code, null, body);
    }

    private static void send(HttpExchange ex, int code, String errorCode, byte[] body) throws IOException {
        if (errorCode != null) ex.getResponseHeaders().add("X-Error-Code", errorCode);
        boolean head = ex.getRequestMethod().equals("HEAD");
        if (head) ex.getResponseHeaders().add("Content-Length", Integer.toString(body.length));
        ex.sendResponseHeaders(code, head || body.length == 0 ? -1 : body.length);
        if (!head && body.length > 0) try (OutputStream os = ex.getResponseBody()) { os.write(body); }
        ex.close();
    }

    @Override public void close() { hub.stop(0); cdn.stop(0); }
}
