package dev.peft4j.cli;

import dev.peft4j.hub.HubResolver;
import dev.peft4j.hub.HubSettings;
import dev.peft4j.hub.RepoRef;
import dev.peft4j.util.UserException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/** {@code peft4j download REPO}: fetch a model (or adapter) from the Hugging Face Hub into the cache and print its folder. */
@Command(name = "download", mixinStandardHelpOptions = true,
        description = {"Download a model or adapter from the Hugging Face Hub into the local cache (huggingface_hub layout) "
                + "and print the snapshot folder. Uses HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE/HF_HOME and HF_HUB_OFFLINE."})
public final class DownloadCommand implements Callable<Integer> {

    @Spec CommandSpec spec;

    @Parameters(index = "0", paramLabel = "REPO", description = "repo id such as google/gemma-3-270m (optionally @revision)")
    String repo;

    @Option(names = "--revision", paramLabel = "R", description = "branch, tag or commit hash (default: main)")
    String revision;

    @Option(names = "--cache-dir", paramLabel = "DIR", description = "Hub cache folder (default: $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)")
    Path cacheDir;

    @Option(names = "--quiet", description = "no progress bar")
    boolean quiet;

    @Override
    public Integer call() {
        RepoRef ref = RepoRef.parse(repo);
        if (revision != null) {
            if (repo.lastIndexOf('@') > 0 && !ref.revision().equals(revision)) {
                throw new UserException("REPO " + repo + " names revision " + ref.revision() + " but --revision is " + revision);
            }
            ref = new RepoRef(ref.repoId(), revision);
        }
        HubSettings settings = HubSettings.fromEnv().withProgress(!quiet);
        if (cacheDir != null) settings = settings.withCacheDir(cacheDir);
        Path dir = HubResolver.resolve(ref, settings);
        spec.commandLine().getOut().println(dir);
        spec.commandLine().getOut().flush();
        return 0;
    }
}
