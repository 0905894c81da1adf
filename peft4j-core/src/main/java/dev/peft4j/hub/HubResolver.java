package dev.peft4j.hub;

import dev.peft4j.util.UserException;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;

/**
 * Turns a model reference into a local folder: an existing directory is returned as is; a Hugging Face repo id
 * ({@code google/gemma-3-270m}, optionally {@code @revision}) is looked up in the Hub cache and, unless offline
 * ({@code HF_HUB_OFFLINE=1}), downloaded into it with the same layout as {@code huggingface_hub}. The returned
 * folder is then {@code CACHE/models--owner--name/snapshots/COMMIT}.
 *
 * <p>Files fetched for a model repo: config.json, generation_config.json, tokenizer.json, tokenizer_config.json and
 * model.safetensors (or model.safetensors.index.json plus its shards); for an adapter repo (no config.json but an
 * adapter_config.json): adapter_config.json, adapter_model.safetensors and the tokenizer files if present.
 */
public final class HubResolver {

    static final List<String> MODEL_OPTIONAL = List.of("generation_config.json", "tokenizer.json", "tokenizer_config.json");
    static final List<String> ADAPTER_OPTIONAL = List.of("tokenizer.json", "tokenizer_config.json");

    private final HubSettings settings;
    private final HubCache cache;
    private final HubDownloader downloader;

    private HubResolver(HubSettings settings) {
        this.settings = settings;
        this.cache = new HubCache(settings.cacheDir());
        this.downloader = new HubDownloader(settings);
    }

    /** Resolves with settings from the environment (HF_HUB_CACHE/HF_HOME, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE). */
    public static Path resolve(String modelRef) { return resolve(modelRef, HubSettings.fromEnv()); }

    /** Resolves a local directory or a {@code owner/name[@revision]} repo id to a local folder. */
    public static Path resolve(String modelRef, HubSettings settings) {
        if (modelRef == null || modelRef.isBlank()) throw new UserException("empty model reference: give a directory or a repo id such as google/gemma-3-270m");
        Path local = localPath(modelRef);
        if (local != null && Files.isDirectory(local)) return local.toAbsolutePath().normalize();
        if (local != null && Files.exists(local)) throw new UserException(modelRef + " is a file; expected a model directory or a repo id such as google/gemma-3-270m");
        if (looksLikePath(modelRef) || !RepoRef.isValidRepoId(stripRevision(modelRef))) {
            throw new UserException("model directory " + modelRef + " does not exist (and it is not a Hugging Face repo id like google/gemma-3-270m)");
        }
        return new HubResolver(settings).resolveRepo(RepoRef.parse(modelRef));
    }

    /** Resolves a repo at a revision (used by {@code peft4j download}). */
    public static Path resolve(RepoRef ref, HubSettings settings) { return new HubResolver(settings).resolveRepo(ref); }

    private static Path localPath(String ref) {
        try {
            String p = ref.startsWith("~/") ? System.getProperty("user.home") + ref.substring(1) : ref;
            return Path.of(p);
        } catch (RuntimeException e) {
            return null;
        }
    }

    private static boolean looksLikePath(String ref) {
        return ref.startsWith("/") || ref.startsWith(".") || ref.startsWith("~") || ref.contains("\\") || ref.endsWith("/")
                || ref.chars().filter(c -> c == '/').count() > 1 && !ref.contains("@");
    }

    private static String stripRevision(String ref) {
        int at = ref.lastIndexOf('@');
        return at > 0 ? ref.substring(0, at) : ref;
    }

    Path resolveRepo(RepoRef ref) {
        Path snap = cache.snapshot(ref);
        if (HubCache.isComplete(snap)) return snap;
        if (settings.offline()) {
            throw new UserException("offline (HF_HUB_OFFLINE is set) and " + ref + " is not " + (snap == null ? "" : "completely ")
                    + "in the Hugging Face cache (looked in " + cache.repoDir(ref.repoId()) + "); download it once with network, "
                    + "or point HF_HUB_CACHE/HF_HOME at a cache that has it");
        }
        try {
            return download(ref);
        } catch (IOException e) {
            throw new UserException("cannot reach " + settings.endpoint() + " (" + describe(e) + "); you may be offline, and " + ref
                    + " is not " + (snap == null ? "" : "completely ") + "in the Hugging Face cache (looked in " + cache.repoDir(ref.repoId())
                    + "); retry with network, or set HF_HUB_CACHE/HF_HOME to a cache that has it", e);
        }
    }

    private static String describe(IOException e) {
        String m = e.getMessage();
        Throwable c = e;
        while ((m == null || m.isBlank()) && c.getCause() != null) { c = c.getCause(); m = c.getMessage(); }
        return c.getClass().getSimpleName() + (m == null || m.isBlank() ? "" : ": " + m);
    }

    private Path download(RepoRef ref) throws IOException {
        String repo = ref.repoId();
        boolean adapter = false;
        HubDownloader.FileMetadata config = optionalMetadata(repo, ref.revision(), "config.json");
        if (config == null) {
            config = optionalMetadata(repo, ref.revision(), "adapter_config.json");
            adapter = true;
            if (config == null) {
                throw new UserException("not found: " + ref + " has neither config.json nor adapter_config.json on " + settings.endpoint()
                        + " (is it a model repo?)");
            }
        }
        String commit = config.commit();
        if (!ref.revision().equals(commit)) writeRef(repo, ref.revision(), commit);
        Path snap = cache.snapshotDir(repo, commit);
        Files.createDirectories(snap);
        fetch(repo, adapter ? "adapter_config.json" : "config.json", config, snap);

        List<String> required = new ArrayList<>();
        for (String f : adapter ? ADAPTER_OPTIONAL : MODEL_OPTIONAL) fetchOptional(repo, commit, f, snap);
        if (adapter) {
            if (!fetchOptional(repo, commit, "adapter_model.safetensors", snap)) required.add("adapter_model.safetensors");
        } else if (!fetchOptional(repo, commit, "model.safetensors", snap)) {
            if (!fetchOptional(repo, commit, "model.safetensors.index.json", snap)) {
                throw new UserException("not found: " + ref + " has neither model.safetensors nor model.safetensors.index.json on "
                        + settings.endpoint() + " (peft4j reads safetensors weights only)");
            }
            required.addAll(HubCache.shardsOf(snap.resolve("model.safetensors.index.json")));
        }
        for (String f : required) {
            checkFileName(f, snap.resolve("model.safetensors.index.json"));
            if (Files.isRegularFile(snap.resolve(f))) continue;
            fetch(repo, f, downloader.metadata(repo, commit, f), snap);
        }
        if (!HubCache.isComplete(snap)) throw new UserException("download of " + ref + " is incomplete in " + snap + "; run the command again");
        return snap;
    }

    private static void checkFileName(String f, Path index) {
        if (f.isEmpty() || f.startsWith("/") || f.contains("\\") || List.of(f.split("/")).contains("..")) {
            throw new UserException(index + ": invalid shard file name '" + f + "' in \"weight_map\"");
        }
    }

    /** Metadata, or null when the file does not exist in the repo at that revision. */
    private HubDownloader.FileMetadata optionalMetadata(String repo, String revision, String file) throws IOException {
        try {
            return downloader.metadata(repo, revision, file);
        } catch (HubHttpException e) {
            if (e.isEntryNotFound()) return null;
            throw e;
        }
    }

    /** Fetches a file if the repo has it; records a .no_exist marker and returns false otherwise. */
    private boolean fetchOptional(String repo, String commit, String file, Path snap) throws IOException {
        if (Files.isRegularFile(snap.resolve(file))) return true;
        if (Files.exists(cache.noExistMarker(repo, commit, file))) return false;
        HubDownloader.FileMetadata meta = optionalMetadata(repo, commit, file);
        if (meta == null) {
            Path marker = cache.noExistMarker(repo, commit, file);
            Files.createDirectories(marker.getParent());
            if (!Files.exists(marker)) Files.createFile(marker);
            return false;
        }
        fetch(repo, file, meta, snap);
        return true;
    }

    /** Downloads the blob (unless present) and links {@code snapshots/COMMIT/FILE -> ../../blobs/ETAG}. */
    private void fetch(String repo, String file, HubDownloader.FileMetadata meta, Path snap) throws IOException {
        Path pointer = snap.resolve(file);
        if (Files.isRegularFile(pointer)) return;
        Path blob = cache.blob(repo, meta.etag());
        if (!Files.isRegularFile(blob)) {
            // one writer per blob across processes, as huggingface_hub does with .locks/models--owner--name/ETAG.lock
            Path lock = cache.root().resolve(".locks").resolve(HubCache.repoFolderName(repo)).resolve(meta.etag() + ".lock");
            Files.createDirectories(lock.getParent());
            try (FileChannel ch = FileChannel.open(lock, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
                 FileLock ignored = ch.lock()) {
                if (!Files.isRegularFile(blob)) downloader.downloadBlob(meta, blob, repo + "/" + file);
            } catch (OverlappingFileLockException e) {
                throw new UserException("another download of " + repo + "/" + file + " is running in this process");
            }
        }
        link(blob, pointer);
    }

    /** Relative symlink created under a temporary name and renamed (atomic); a copy where symlinks are unsupported. */
    private static void link(Path blob, Path pointer) throws IOException {
        Files.createDirectories(pointer.getParent());
        Path tmp = pointer.resolveSibling(pointer.getFileName() + ".tmp-link");
        Files.deleteIfExists(tmp);
        try {
            Files.createSymbolicLink(tmp, pointer.getParent().relativize(blob));
        } catch (UnsupportedOperationException | FileAlreadyExistsException | SecurityException e) {
            Files.copy(blob, tmp, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            Files.copy(blob, tmp, StandardCopyOption.REPLACE_EXISTING);   // e.g. Windows without the symlink privilege
        }
        Files.move(tmp, pointer, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    private void writeRef(String repo, String revision, String commit) throws IOException {
        Path f = cache.refFile(repo, revision);
        Files.createDirectories(f.getParent());
        Path tmp = f.resolveSibling(f.getFileName() + ".tmp");
        Files.writeString(tmp, commit, StandardCharsets.UTF_8);
        Files.move(tmp, f, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }
}
