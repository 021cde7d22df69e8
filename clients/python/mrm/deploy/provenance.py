"""Where a model came from: its training data, the commit that built it, and who deployed it.

Everything here runs in the user's CI and only describes it. Nothing is
authenticated: CI variables and git settings are claims that the DATA_LINEAGE
record carries as such, next to the principal the registry authenticates.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mrm.deploy.errors import DeployError

MAX_DATASET_ID_CHARS = 256
GIT_TIMEOUT_S = 10.0
_SHA256_ID = re.compile(r"sha256:[0-9a-f]{64}")
_COMMIT_SHA = re.compile(r"[0-9a-f]{7,64}")
_CHUNK = 1 << 20

# Checked in this order; the first one set wins. Woodpecker also sets CI_COMMIT_SHA.
CI_COMMIT_VARIABLES = (
    "GITHUB_SHA",  # GitHub Actions (on pull_request events: the test merge commit)
    "CI_COMMIT_SHA",  # GitLab CI, Woodpecker
    "BUILDKITE_COMMIT",  # Buildkite (may be the symbolic "HEAD": then git decides)
    "CIRCLE_SHA1",  # CircleCI
    "BITBUCKET_COMMIT",  # Bitbucket Pipelines
    "TRAVIS_COMMIT",  # Travis CI
    "DRONE_COMMIT_SHA",  # Drone
    "BUILD_SOURCEVERSION",  # Azure Pipelines
    "CODEBUILD_RESOLVED_SOURCE_VERSION",  # AWS CodeBuild
    "SEMAPHORE_GIT_SHA",  # Semaphore
    "BUILD_VCS_NUMBER",  # TeamCity
    "GIT_COMMIT",  # Jenkins git plugin (also set by others, so last)
)

# (system, variables that show it is running, variables naming who started it, best first)
_CI_SYSTEMS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("github-actions", ("GITHUB_ACTIONS",), ("GITHUB_TRIGGERING_ACTOR", "GITHUB_ACTOR")),
    ("gitlab", ("GITLAB_CI",), ("GITLAB_USER_LOGIN",)),
    ("buildkite", ("BUILDKITE",), ("BUILDKITE_BUILD_CREATOR",)),
    ("circleci", ("CIRCLECI",), ("CIRCLE_USERNAME",)),
    ("bitbucket", ("BITBUCKET_BUILD_NUMBER",), ("BITBUCKET_STEP_TRIGGERER_UUID",)),
    ("azure-pipelines", ("TF_BUILD",), ("BUILD_REQUESTEDFOR",)),
    ("aws-codebuild", ("CODEBUILD_BUILD_ID",), ("CODEBUILD_INITIATOR",)),
    ("drone", ("DRONE",), ("DRONE_BUILD_TRIGGER",)),
    ("travis", ("TRAVIS",), ()),
    ("teamcity", ("TEAMCITY_VERSION",), ()),
    ("jenkins", ("JENKINS_URL",), ("BUILD_USER_ID",)),  # BUILD_USER_ID: build-user-vars plugin
)


@dataclass(frozen=True)
class Lineage:
    """The training data's id and how it was obtained (the DATA_LINEAGE record's facts)."""

    training_data_id: str
    method: Literal["given", "sha256-file", "sha256-manifest"]
    detail: dict[str, str | int] = field(default_factory=dict)
    """For hashed data: "path", "bytes" and, for a directory, "files"; when an id was
    given along with the data, also "computed_id" and "computed_method"."""


@dataclass(frozen=True)
class SourceCommit:
    sha: str
    """Lowercase hex, 7 to 64 digits (SHA-1, SHA-256 or an abbreviation)."""
    dirty: bool | None
    """Tracked files differ from the commit; None when not asked of git."""
    source: str
    """"flag", "env:<VARIABLE>" or "git"."""


@dataclass(frozen=True)
class Actor:
    """Who ran the deploy, as the CI and git describe it (unauthenticated)."""

    ci_actor: str | None
    ci_system: str | None
    git_user: str | None
    git_email: str | None


def training_data_id(dataset_id: str | None, training_data: Path | None) -> Lineage:
    """`--dataset-id` as given, else a hash of `--training-data`.

    A file's id is "sha256:" and the hex sha256 of its bytes. A directory's id is
    "sha256:" and the hex sha256 of its manifest: one line per regular file
    below it, at any depth and hidden or not, sorted by relative POSIX path
    (code point order, which is `LC_ALL=C sort` order for UTF-8), each line
    "<sha256 hex> <size in bytes> <relative path>\\n" in UTF-8. An auditor can
    recompute it with GNU tools:

        cd DIR && find . -type f -printf '%P\\n' | LC_ALL=C sort |
          while IFS= read -r p; do
            printf '%s %s %s\\n' "$(sha256sum < "$p" | cut -c1-64)" "$(stat -c %s "$p")" "$p"
          done | sha256sum

    Symlinks and special files inside the directory are refused rather than
    followed or skipped, and so are names with control characters or that are
    not UTF-8: each would make the manifest ambiguous. `training_data` itself
    may be a symlink. With both arguments the given id is recorded, the computed
    one goes into `detail`, and a given "sha256:..." id that differs is refused.
    """
    if dataset_id is None:
        if training_data is None:
            raise DeployError(
                "no training data lineage: pass --dataset-id ID, or --training-data PATH "
                "to record the sha256 of that file or directory"
            )
        return _hash_training_data(training_data)
    _validate_dataset_id(dataset_id)
    if training_data is None:
        return Lineage(dataset_id, "given")
    computed = _hash_training_data(training_data)
    claimed = dataset_id.lower()
    if claimed.startswith("sha256:") and claimed != computed.training_data_id:
        raise DeployError(
            f"--dataset-id {dataset_id} does not match --training-data {training_data} "
            f"({computed.training_data_id}); pass one of them, or the data it names"
        )
    detail: dict[str, str | int] = {
        "computed_id": computed.training_data_id,
        "computed_method": computed.method,
        **computed.detail,
    }
    return Lineage(dataset_id, "given", detail)


def _validate_dataset_id(dataset_id: str) -> None:
    if not dataset_id:
        raise DeployError("--dataset-id is empty")
    if len(dataset_id) > MAX_DATASET_ID_CHARS:
        raise DeployError(
            f"--dataset-id is {len(dataset_id)} characters, over the {MAX_DATASET_ID_CHARS} limit"
        )
    for i, ch in enumerate(dataset_id):
        if ch.isspace() or unicodedata.category(ch).startswith("C"):
            raise DeployError(
                f"--dataset-id {dataset_id!r} has a space or control character at "
                f"position {i}; a dataset id is one printable token"
            )
    lowered = dataset_id.lower()
    if lowered.startswith("sha256:") and not _SHA256_ID.fullmatch(lowered):
        raise DeployError(
            f"--dataset-id {dataset_id} starts with sha256: but is not 64 hex digits after it"
        )


def _hash_training_data(path: Path) -> Lineage:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DeployError(f"--training-data {path}: no such file or directory") from None
    except OSError as e:
        raise DeployError(f"--training-data {path}: {e.strerror}") from None
    if stat.S_ISREG(info.st_mode):
        digest, size = _sha256_file(path, path)
        detail: dict[str, str | int] = {"path": path.as_posix(), "bytes": size}
        return Lineage(f"sha256:{digest}", "sha256-file", detail)
    if not stat.S_ISDIR(info.st_mode):
        raise DeployError(f"--training-data {path}: not a regular file or a directory")
    manifest = hashlib.sha256()
    files = total = 0
    for rel, file in _manifest_files(path):
        digest, size = _sha256_file(file, path)
        manifest.update(f"{digest} {size} {rel}\n".encode())
        files, total = files + 1, total + size
    if files == 0:
        raise DeployError(f"--training-data {path}: the directory has no files to hash")
    detail = {"path": path.as_posix(), "files": files, "bytes": total}
    return Lineage(f"sha256:{manifest.hexdigest()}", "sha256-manifest", detail)


def _manifest_files(root: Path) -> list[tuple[str, Path]]:
    """(relative POSIX path, path) of each regular file below `root`, sorted; or a refusal.

    The whole tree is checked before anything is hashed, so a refusal comes fast.
    """

    def refuse(where: str, why: str) -> DeployError:
        return DeployError(f"--training-data {root}: {where} {why}")

    def walk_error(e: OSError) -> None:
        raise refuse(str(e.filename), f"cannot be read: {e.strerror}")

    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
        for name in dirnames + filenames:
            entry = Path(dirpath, name)
            rel = entry.relative_to(root).as_posix()
            # Undecodable bytes come back as surrogates (category "Cs"): refused here too.
            if any(unicodedata.category(ch).startswith("C") for ch in rel):
                raise refuse(repr(rel), "has a control character or is not UTF-8; rename it")
            try:
                mode = entry.lstat().st_mode
            except OSError as e:
                raise refuse(repr(rel), f"cannot be read: {e.strerror}") from None
            if stat.S_ISLNK(mode):
                raise refuse(repr(rel), "is a symlink; copy in what it points to, or hash that")
            if stat.S_ISREG(mode):
                found.append((rel, entry))
            elif not stat.S_ISDIR(mode):
                raise refuse(repr(rel), "is not a regular file")
    return sorted(found)


def _sha256_file(file: Path, shown: Path) -> tuple[str, int]:
    """(hex sha256, size) of the bytes read, which may differ from an earlier stat."""
    digest, size = hashlib.sha256(), 0
    try:
        with file.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as e:
        raise DeployError(f"--training-data {shown}: cannot read {file}: {e.strerror}") from None
    return digest.hexdigest(), size


def source_commit(explicit: str | None, env: Mapping[str, str], cwd: Path) -> SourceCommit:
    """`--source-commit`, else the CI's commit variable, else `git rev-parse HEAD` in `cwd`.

    Only the git source has a dirty flag: it is True when tracked files differ
    from HEAD. Untracked files do not count, since CI typically writes the model
    file itself into the checkout. On GitHub pull_request events GITHUB_SHA is
    the test merge commit; pass --source-commit with the head SHA to record that.
    """
    if explicit is not None:
        return SourceCommit(_valid_sha(explicit, "--source-commit"), None, "flag")
    for name in CI_COMMIT_VARIABLES:
        value = env.get(name, "").strip()
        if value and value != "HEAD":
            return SourceCommit(_valid_sha(value, name), None, f"env:{name}")
    head, why = _git(cwd, "rev-parse", "--verify", "HEAD")
    if head is None:
        raise DeployError(
            "cannot tell which commit built this model: pass --source-commit SHA, or run in "
            f"a git checkout (no CI commit variable such as GITHUB_SHA is set; git: {why})"
        )
    status, _ = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return SourceCommit(
        _valid_sha(head, "git rev-parse HEAD"), None if status is None else status != "", "git"
    )


def _valid_sha(value: str, where: str) -> str:
    sha = value.strip().lower()
    if not _COMMIT_SHA.fullmatch(sha):
        raise DeployError(f"{where} {value!r} is not a commit SHA (want 7 to 64 hex digits)")
    return sha


def actor(env: Mapping[str, str], cwd: Path) -> Actor:
    """The CI system and the user it says started the run, and git's user.name/user.email."""
    ci_system = ci_actor = None
    for system, markers, actor_vars in _CI_SYSTEMS:
        if any(env.get(v) for v in markers + actor_vars):
            ci_system = system
            ci_actor = next((env[v].strip() for v in actor_vars if env.get(v, "").strip()), None)
            break
    git_user, _ = _git(cwd, "config", "user.name")
    git_email, _ = _git(cwd, "config", "user.email")
    return Actor(ci_actor, ci_system, git_user or None, git_email or None)


def _git(cwd: Path, *args: str) -> tuple[str | None, str]:
    """(stripped stdout, "") when `git args` succeeds in `cwd`, else (None, why) in one line."""
    git = shutil.which("git")
    if git is None:
        return None, "git is not installed"
    # GIT_OPTIONAL_LOCKS=0: `git status` must not rewrite the index of the user's checkout.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        # Fixed argument lists, no shell: nothing from the user is interpreted.
        done = subprocess.run(  # noqa: S603
            [git, *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, f"git {args[0]} did not finish in {GIT_TIMEOUT_S:g}s"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"git {args[0]} could not run: {e}"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return None, lines[0] if lines else f"git {args[0]} exited with {done.returncode}"
    return done.stdout.strip(), ""
