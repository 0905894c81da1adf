package dev.peft4j.hub;

import dev.peft4j.util.UserException;

import java.util.regex.Pattern;

/**
 * A Hugging Face model repository and revision, parsed from {@code owner/name} or {@code owner/name@revision}
 * (revision: a branch, tag or commit hash; default {@code main}).
 */
public record RepoRef(String repoId, String revision) {

    public static final String DEFAULT_REVISION = "main";
    private static final Pattern PART = Pattern.compile("[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?");
    private static final Pattern COMMIT = Pattern.compile("[0-9a-f]{40}");

    public RepoRef {
        if (!isValidRepoId(repoId)) {
            throw new UserException("invalid Hugging Face repo id '" + repoId + "': expected 'owner/name' such as google/gemma-3-270m");
        }
        if (revision == null || revision.isBlank()) revision = DEFAULT_REVISION;
        if (revision.contains("..") || revision.startsWith("/") || revision.contains("\\")) {
            throw new UserException("invalid revision '" + revision + "' for " + repoId);
        }
    }

    /** Parses {@code owner/name[@revision]}. */
    public static RepoRef parse(String ref) {
        int at = ref.lastIndexOf('@');
        if (at > 0) return new RepoRef(ref.substring(0, at), ref.substring(at + 1));
        return new RepoRef(ref, DEFAULT_REVISION);
    }

    /** Like huggingface_hub's {@code validate_repo_id}: one or two parts of letters, digits, '_', '-', '.', no '--' or '..'. */
    public static boolean isValidRepoId(String id) {
        if (id == null || id.isEmpty() || id.contains("--") || id.contains("..") || id.endsWith(".git")) return false;
        String[] parts = id.split("/", -1);
        if (parts.length > 2) return false;
        for (String p : parts) if (!PART.matcher(p).matches()) return false;
        return true;
    }

    /** True when the revision is a full 40-hex commit hash. */
    public boolean isCommit() { return COMMIT.matcher(revision).matches(); }

    @Override public String toString() { return DEFAULT_REVISION.equals(revision) ? repoId : repoId + "@" + revision; }
}
