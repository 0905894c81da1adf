package dev.peft4j.hub;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashSet;
import java.util.Set;

/**
 * The on-disk layout of the Hugging Face Hub cache, exactly as {@code huggingface_hub} writes it:
 * <pre>
 * CACHE/models--owner--name/
 *   refs/main                       text file holding the commit hash of branch/tag "main"
 *   blobs/ETAG                      file contents, named by the (normalized) ETag; ETAG.incomplete while downloading
 *   snapshots/COMMIT/FILE           relative symlink ../../blobs/ETAG
 *   .no_exist/COMMIT/FILE           empty marker: FILE does not exist at COMMIT
 * </pre>
 */
public final class HubCache {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path root;

    public HubCache(Path root) { this.root = root; }

    public Path root() { return root; }

    /** {@code models--owner--name} (huggingface_hub {@code repo_folder_name}). */
    public static String repoFolderName(String repoId) { return "models--" + repoId.replace("/", "--"); }

    public Path repoDir(String repoId) { return root.resolve(repoFolderName(repoId)); }

    public Path refFile(String repoId, String revision) { return repoDir(repoId).resolve("refs").resolve(revision); }

    public Path snapshotDir(String repoId, String commit) { return repoDir(repoId).resolve("snapshots").resolve(commit); }

    public Path blobsDir(String repoId) { return repoDir(repoId).resolve("blobs"); }

    public Path blob(String repoId, String etag) { return blobsDir(repoId).resolve(etag); }

    public Path noExistMarker(String repoId, String commit, String file) {
        return repoDir(repoId).resolve(".no_exist").resolve(commit).resolve(file);
    }

    /** The commit a revision points to in the cache: the revision itself if it is a commit hash, else refs/REVISION; null if unknown. */
    public String commitFor(RepoRef ref) {
        if (ref.isCommit()) return ref.revision();
        Path f = refFile(ref.repoId(), ref.revision());
        try {
            if (Files.isRegularFile(f)) {
                String c = Files.readString(f, StandardCharsets.UTF_8).strip();
                return c.isEmpty() ? null : c;
            }
        } catch (IOException ignored) {
            // unreadable ref: treat as not cached
        }
        return null;
    }

    /** The cached snapshot folder of a revision, or null when the revision is unknown or the folder is missing. */
    public Path snapshot(RepoRef ref) {
        String commit = commitFor(ref);
        if (commit == null) return null;
        Path dir = snapshotDir(ref.repoId(), commit);
        return Files.isDirectory(dir) ? dir : null;
    }

    /**
     * True when a folder holds a usable model (config.json + model.safetensors, or config.json + the index and every shard)
     * or adapter (adapter_config.json + adapter_model.safetensors or .bin). Symlinks must point at existing blobs.
     */
    public static boolean isComplete(Path dir) {
        if (dir == null || !Files.isDirectory(dir)) return false;
        if (Files.isRegularFile(dir.resolve("adapter_config.json"))) {
            return Files.isRegularFile(dir.resolve("adapter_model.safetensors")) || Files.isRegularFile(dir.resolve("adapter_model.bin"));
        }
        if (!Files.isRegularFile(dir.resolve("config.json"))) return false;
        if (Files.isRegularFile(dir.resolve("model.safetensors"))) return true;
        Path index = dir.resolve("model.safetensors.index.json");
        if (!Files.isRegularFile(index)) return false;
        try {
            for (String shard : shardsOf(index)) if (!Files.isRegularFile(dir.resolve(shard))) return false;
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** The distinct shard file names listed in a {@code model.safetensors.index.json} ({@code weight_map} values), in order. */
    public static Set<String> shardsOf(Path indexFile) throws IOException {
        JsonNode root = JSON.readTree(indexFile.toFile());
        JsonNode map = root == null ? null : root.get("weight_map");
        if (map == null || !map.isObject()) throw new IOException(indexFile + ": no \"weight_map\" object");
        Set<String> shards = new LinkedHashSet<>();
        for (JsonNode v : map) {
            if (!v.isTextual()) throw new IOException(indexFile + ": \"weight_map\" values must be file names");
            shards.add(v.asText());
        }
        return shards;
    }
}
