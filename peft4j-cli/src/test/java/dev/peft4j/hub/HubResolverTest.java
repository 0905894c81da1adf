package dev.peft4j.hub;

import dev.peft4j.cli.Main;
import dev.peft4j.util.UserException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class HubResolverTest {
    static final String COMMIT = "0123456789abcdef0123456789abcdef01234567";
    static final String COMMIT2 = "fedcba9876543210fedcba9876543210fedcba98";

    @TempDir Path tmp;
    FakeHub hub;
    HubSettings settings;
    byte[] weights;

    @BeforeEach
    void start() throws IOException {
        hub = new FakeHub();
        settings = new HubSettings(hub.endpoint(), tmp.resolve("cache"), null, false, false);
        weights = new byte[300_000];
        new Random(7).nextBytes(weights);
        Map<String, byte[]> files = new LinkedHashMap<>();
        files.put("config.json", bytes("{\"model_type\":\"gemma3_text\"}"));
        files.put("tokenizer.json", bytes("{\"version\":\"1.0\"}"));
        files.put("tokenizer_config.json", bytes("{}"));
        files.put("model.safetensors", weights);
        hub.add("google/gemma-3-270m", COMMIT, false, files);   // no generation_config.json: optional
    }

    @AfterEach
    void stop() { hub.close(); }

    static byte[] bytes(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    @Test
    void fullDownloadHasHuggingfaceHubLayout() throws IOException {
        Path snap = HubResolver.resolve("google/gemma-3-270m", settings);
        Path repoDir = tmp.resolve("cache/models--google--gemma-3-270m");
        assertEquals(repoDir.resolve("snapshots/" + COMMIT), snap);
        assertEquals(COMMIT, Files.readString(repoDir.resolve("refs/main")));
        // LFS file: blob named by its sha256, pointer is a relative symlink ../../blobs/<sha256>
        String sha = FakeHub.sha256(weights);
        Path pointer = snap.resolve("model.safetensors");
        assertTrue(Files.isSymbolicLink(pointer));
        assertEquals(Path.of("../../blobs/" + sha), Files.readSymbolicLink(pointer));
        assertArrayEquals(weights, Files.readAllBytes(pointer));
        // small file: blob named by its git etag
        byte[] config = bytes("{\"model_type\":\"gemma3_text\"}");
        assertEquals(Path.of("../../blobs/" + FakeHub.gitSha1(config)), Files.readSymbolicLink(snap.resolve("config.json")));
        assertArrayEquals(config, Files.readAllBytes(snap.resolve("config.json")));
        assertTrue(Files.isRegularFile(snap.resolve("tokenizer.json")));
        assertTrue(Files.isRegularFile(snap.resolve("tokenizer_config.json")));
        // missing optional file: .no_exist marker, like huggingface_hub
        assertTrue(Files.exists(repoDir.resolve(".no_exist/" + COMMIT + "/generation_config.json")));
        assertFalse(Files.exists(snap.resolve("generation_config.json")));
        try (var s = Files.list(repoDir.resolve("blobs"))) {
            assertTrue(s.noneMatch(p -> p.toString().endsWith(".incomplete")));
        }
        // Authorization never reaches the CDN host (none set here anyway), files after the first are fetched by commit
        assertTrue(hub.log.contains("HEAD /google/gemma-3-270m/resolve/" + COMMIT + "/model.safetensors"), hub.log.toString());

        // second call: served from the cache, no request at all
        int before = hub.log.size();
        assertEquals(snap, HubResolver.resolve("google/gemma-3-270m", settings));
        assertEquals(before, hub.log.size());
    }

    @Test
    void offlineUsesCacheAndFailsClearlyWithoutIt() {
        UserException e = assertThrows(UserException.class,
                () -> HubResolver.resolve("google/gemma-3-270m", settings.withOffline(true)));
        assertTrue(e.getMessage().contains("offline"), e.getMessage());
        assertTrue(e.getMessage().contains(tmp.resolve("cache/models--google--gemma-3-270m").toString()), e.getMessage());
        assertTrue(hub.log.isEmpty(), "offline mode must not touch the network");

        Path snap = HubResolver.resolve("google/gemma-3-270m", settings);
        int before = hub.log.size();
        assertEquals(snap, HubResolver.resolve("google/gemma-3-270m", settings.withOffline(true)));
        assertEquals(snap, HubResolver.resolve("google/gemma-3-270m@" + COMMIT, settings.withOffline(true)));
        assertEquals(before, hub.log.size());
    }

    @Test
    void resumesAnInterruptedDownloadWithARangeRequest() throws IOException {
        hub.failAfterBytes = 100_000;
        UserException e = assertThrows(UserException.class, () -> HubResolver.resolve("google/gemma-3-270m", settings));
        assertTrue(e.getMessage().contains("run the command again to resume"), e.getMessage());
        Path partial = tmp.resolve("cache/models--google--gemma-3-270m/blobs/" + FakeHub.sha256(weights) + ".incomplete");
        assertTrue(Files.exists(partial));
        long have = Files.size(partial);
        assertTrue(have > 0 && have < weights.length, "partial size " + have);

        Path snap = HubResolver.resolve("google/gemma-3-270m", settings);
        assertEquals("bytes=" + have + "-", hub.ranges.getLast());
        assertArrayEquals(weights, Files.readAllBytes(snap.resolve("model.safetensors")));
        assertFalse(Files.exists(partial));
    }

    @Test
    void resumesFromAPartialFileLeftByAnotherTool() throws IOException {
        Path blobs = tmp.resolve("cache/models--google--gemma-3-270m/blobs");
        Files.createDirectories(blobs);
        Files.write(blobs.resolve(FakeHub.sha256(weights) + ".incomplete"), Arrays.copyOf(weights, 12345));
        Path snap = HubResolver.resolve("google/gemma-3-270m", settings);
        assertEquals("bytes=12345-", hub.ranges.getLast());
        assertArrayEquals(weights, Files.readAllBytes(snap.resolve("model.safetensors")));
    }

    @Test
    void sha256MismatchIsRejectedAndDeleted() throws IOException {
        hub.wrongSha.put("model.safetensors", "a".repeat(64));
        UserException e = assertThrows(UserException.class, () -> HubResolver.resolve("google/gemma-3-270m", settings));
        assertTrue(e.getMessage().startsWith("checksum mismatch for google/gemma-3-270m/model.safetensors"), e.getMessage());
        Path blobs = tmp.resolve("cache/models--google--gemma-3-270m/blobs");
        assertFalse(Files.exists(blobs.resolve("a".repeat(64))));
        assertFalse(Files.exists(blobs.resolve("a".repeat(64) + ".incomplete")));
    }

    @Test
    void shardedModelDownloadsIndexAndShards() throws IOException {
        byte[] s1 = new byte[5000], s2 = new byte[7000];
        new Random(1).nextBytes(s1);
        new Random(2).nextBytes(s2);
        Map<String, byte[]> files = new LinkedHashMap<>();
        files.put("config.json", bytes("{}"));
        files.put("generation_config.json", bytes("{}"));
        files.put("model.safetensors.index.json", bytes("{\"metadata\":{},\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                + "\"b\":\"model-00002-of-00002.safetensors\",\"c\":\"model-00001-of-00002.safetensors\"}}"));
        files.put("model-00001-of-00002.safetensors", s1);
        files.put("model-00002-of-00002.safetensors", s2);
        hub.add("org/big", COMMIT2, false, files);
        Path snap = HubResolver.resolve("org/big", settings);
        assertArrayEquals(s1, Files.readAllBytes(snap.resolve("model-00001-of-00002.safetensors")));
        assertArrayEquals(s2, Files.readAllBytes(snap.resolve("model-00002-of-00002.safetensors")));
        assertTrue(Files.isRegularFile(snap.resolve("generation_config.json")));
        assertTrue(HubCache.isComplete(snap));
    }

    @Test
    void adapterRepoAndRevision() throws IOException {
        byte[] ad = new byte[1000];
        Map<String, byte[]> files = new LinkedHashMap<>();
        files.put("adapter_config.json", bytes("{\"peft_type\":\"LORA\"}"));
        files.put("adapter_model.safetensors", ad);
        hub.add("me/my-lora", COMMIT2, false, files);
        Path snap = HubResolver.resolve("me/my-lora@" + COMMIT2, settings);
        assertEquals(tmp.resolve("cache/models--me--my-lora/snapshots/" + COMMIT2), snap);
        assertTrue(Files.isRegularFile(snap.resolve("adapter_model.safetensors")));
        assertFalse(Files.exists(tmp.resolve("cache/models--me--my-lora/refs/" + COMMIT2)), "no ref file for a commit revision");
    }

    @Test
    void gatedRepoNeedsToken() throws IOException {
        hub.add("google/gated", COMMIT2, true, Map.of("config.json", bytes("{}"), "model.safetensors", new byte[10]));
        UserException e = assertThrows(UserException.class, () -> HubResolver.resolve("google/gated", settings));
        assertTrue(e.getMessage().contains("HF_TOKEN") && e.getMessage().contains("license") && e.getMessage().contains("401"), e.getMessage());
        Path snap = HubResolver.resolve("google/gated", settings.withToken(FakeHub.TOKEN));
        assertTrue(HubCache.isComplete(snap));
        assertTrue(hub.cdnAuth.isEmpty(), "the token must not be sent to another host: " + hub.cdnAuth);
    }

    @Test
    void notFoundErrors() {
        UserException e = assertThrows(UserException.class, () -> HubResolver.resolve("nobody/nothing", settings));
        assertTrue(e.getMessage().contains("repository nobody/nothing not found"), e.getMessage());
        e = assertThrows(UserException.class, () -> HubResolver.resolve("google/gemma-3-270m@v9", settings));
        assertTrue(e.getMessage().contains("revision 'v9' not found"), e.getMessage());
        hub.add("org/empty", COMMIT2, false, Map.of("README.md", bytes("hi")));
        e = assertThrows(UserException.class, () -> HubResolver.resolve("org/empty", settings));
        assertTrue(e.getMessage().startsWith("not found: org/empty has neither config.json nor adapter_config.json"), e.getMessage());
        hub.add("org/noweights", COMMIT2, false, Map.of("config.json", bytes("{}")));
        e = assertThrows(UserException.class, () -> HubResolver.resolve("org/noweights", settings));
        assertTrue(e.getMessage().contains("neither model.safetensors nor model.safetensors.index.json"), e.getMessage());
    }

    @Test
    void unreachableEndpointSaysOfflineAndWhereTheCacheWas() throws IOException {
        int port;
        try (var s = new java.net.ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            port = s.getLocalPort();
        }   // nothing listens there any more
        UserException e = assertThrows(UserException.class,
                () -> HubResolver.resolve("google/gemma-3-270m", settings.withEndpoint("http://127.0.0.1:" + port)));
        assertTrue(e.getMessage().startsWith("cannot reach http://127.0.0.1:" + port), e.getMessage());
        assertTrue(e.getMessage().contains("offline") && e.getMessage().contains("models--google--gemma-3-270m"), e.getMessage());
    }

    @Test
    void localDirectoriesAndBadReferences() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("my-model"));
        assertEquals(dir, HubResolver.resolve(dir.toString(), settings));
        UserException e = assertThrows(UserException.class, () -> HubResolver.resolve(tmp.resolve("missing").toString(), settings));
        assertTrue(e.getMessage().startsWith("model directory " + tmp.resolve("missing") + " does not exist"), e.getMessage());
        e = assertThrows(UserException.class, () -> HubResolver.resolve("bad--name/x", settings));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
        assertTrue(hub.log.isEmpty());
    }

    @Test
    void progressBarDoesNotBreakDownloads() throws IOException {
        PrintStream old = System.err;
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        byte[] big = new byte[3 << 20];
        new Random(3).nextBytes(big);
        hub.add("org/big-file", COMMIT2, false, Map.of("config.json", bytes("{}"), "model.safetensors", big));
        try {
            Path snap = HubResolver.resolve("org/big-file", settings.withProgress(true));
            assertArrayEquals(big, Files.readAllBytes(snap.resolve("model.safetensors")));
        } finally {
            System.setErr(old);
        }
        String shown = err.toString(StandardCharsets.UTF_8);
        assertTrue(shown.contains("model.safetensors") && shown.contains("MiB"), shown);
        assertFalse(shown.contains("config.json"), "no progress bar for small files: " + shown);
    }

    @Test
    void downloadCommandPrintsSnapshotFromCache() {
        Path snap = HubResolver.resolve("google/gemma-3-270m", settings);
        StringWriter out = new StringWriter(), err = new StringWriter();
        var cl = Main.commandLine();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int rc = cl.execute("download", "google/gemma-3-270m", "--cache-dir", settings.cacheDir().toString(), "--quiet");
        assertEquals(0, rc, err.toString());
        assertEquals(snap.toString(), out.toString().strip());

        err.getBuffer().setLength(0);
        rc = cl.execute("download", "google/gemma-3-270m@v1", "--revision", "v2", "--cache-dir", settings.cacheDir().toString());
        assertEquals(2, rc);
        assertEquals("error: REPO google/gemma-3-270m@v1 names revision v1 but --revision is v2", err.toString().strip());

        err.getBuffer().setLength(0);
        rc = cl.execute("download", "not a repo", "--cache-dir", settings.cacheDir().toString());
        assertEquals(2, rc);
        assertTrue(err.toString().startsWith("error: invalid Hugging Face repo id 'not a repo'"), err.toString());
    }

    @Test
    void settingsFromEnvironment() {
        Path home = Path.of("/home/u");
        HubSettings s = HubSettings.fromEnv(Map.of(), home);
        assertEquals(Path.of("/home/u/.cache/huggingface/hub"), s.cacheDir());
        assertEquals("https://huggingface.co", s.endpoint());
        assertFalse(s.offline());
        assertNull(s.token());
        s = HubSettings.fromEnv(Map.of("HF_HOME", "/data/hf", "HF_ENDPOINT", "http://127.0.0.1:9/", "HF_HUB_OFFLINE", "1", "HF_TOKEN", "t"), home);
        assertEquals(Path.of("/data/hf/hub"), s.cacheDir());
        assertEquals("http://127.0.0.1:9", s.endpoint());
        assertTrue(s.offline());
        assertEquals("t", s.token());
        s = HubSettings.fromEnv(Map.of("HF_HUB_CACHE", "~/c", "HF_HOME", "/x", "XDG_CACHE_HOME", "/y", "HF_HUB_OFFLINE", "0"), home);
        assertEquals(Path.of("/home/u/c"), s.cacheDir());
        assertFalse(s.offline());
        assertEquals(Path.of("/y/huggingface/hub"), HubSettings.fromEnv(Map.of("XDG_CACHE_HOME", "/y"), home).cacheDir());
    }

    @Test
    void repoRefParsing() {
        assertEquals(new RepoRef("google/gemma-3-270m", "main"), RepoRef.parse("google/gemma-3-270m"));
        assertEquals(new RepoRef("google/gemma-3-270m", "v1.0"), RepoRef.parse("google/gemma-3-270m@v1.0"));
        assertTrue(RepoRef.parse("a/b@" + COMMIT).isCommit());
        assertEquals("models--google--gemma-3-270m", HubCache.repoFolderName("google/gemma-3-270m"));
        assertFalse(RepoRef.isValidRepoId("a/b/c"));
        assertFalse(RepoRef.isValidRepoId("a/-b"));
        assertFalse(RepoRef.isValidRepoId("a/b..c"));
        assertTrue(RepoRef.isValidRepoId("gpt2"));
        assertEquals("abc", HubDownloader.normalizeEtag("W/\"abc\""));
    }
}
