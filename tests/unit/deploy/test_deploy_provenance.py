"""mrm.deploy.provenance: training data ids, source commits and actors, against real git."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from mrm.deploy import provenance
from mrm.deploy.errors import DeployError
from mrm.deploy.provenance import (
    CI_COMMIT_VARIABLES,
    Actor,
    Lineage,
    SourceCommit,
    actor,
    source_commit,
    training_data_id,
)

SHA = "3f2a9c1e" * 5


def _refused(call: Callable[..., object], *args: object) -> str:
    with pytest.raises(DeployError) as caught:
        call(*args)
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.exit_code == 2
    return message


# --- training_data_id


@pytest.mark.parametrize("dataset_id", ["credit-2024-q3", "s3://bucket/data@v7", "x" * 256, "é"])
def test_a_given_dataset_id_is_recorded_as_given(dataset_id: str) -> None:
    assert training_data_id(dataset_id, None) == Lineage(dataset_id, "given", {})


@pytest.mark.parametrize(
    ("dataset_id", "why"),
    [
        ("", "is empty"),
        ("x" * 257, "257 characters, over the 256 limit"),
        ("two words", "space or control character at position 3"),
        ("tab\there", "position 3"),
        ("nul\x00", "position 3"),
        ("zero\u200bwidth", "position 4"),
        ("sha256:abc", "not 64 hex digits"),
    ],
)
def test_bad_dataset_ids_are_refused(dataset_id: str, why: str) -> None:
    assert why in _refused(training_data_id, dataset_id, None)


def test_neither_says_what_to_pass() -> None:
    message = _refused(training_data_id, None, None)
    assert "--dataset-id" in message
    assert "--training-data" in message


def test_a_file_is_its_sha256(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_bytes(b"age,income\n31,52000\n")
    lineage = training_data_id(None, data)
    assert lineage.training_data_id == "sha256:" + hashlib.sha256(data.read_bytes()).hexdigest()
    assert lineage.method == "sha256-file"
    assert lineage.detail == {"path": data.as_posix(), "bytes": 20}


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root


FILES = {
    "part-1.csv": b"a,b\n1,2\n",
    "nested/deeper/part-2.csv": b"a,b\n3,4\n",
    ".hidden": b"counted too",
    "with space.csv": b"",
    "été/données.csv": "ünïcode".encode(),
    "B.csv": b"upper case sorts first",
}


def _manifest_by_hand(root: Path) -> str:
    """The docstring's format, recomputed independently."""
    lines = []
    for rel in sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()):
        content = (root / rel).read_bytes()
        lines.append(f"{hashlib.sha256(content).hexdigest()} {len(content)} {rel}\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def test_a_directory_is_the_sha256_of_its_documented_manifest(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", FILES)
    lineage = training_data_id(None, root)
    assert lineage.method == "sha256-manifest"
    assert lineage.training_data_id == _manifest_by_hand(root)
    total = sum(len(c) for c in FILES.values())
    assert lineage.detail == {"path": root.as_posix(), "files": len(FILES), "bytes": total}


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("bash", "find", "sort", "sha256sum", "stat", "cut")),
    reason="the documented recipe uses GNU tools",
)
def test_the_docstring_recipe_recomputes_the_manifest_hash(tmp_path: Path) -> None:
    doc = training_data_id.__doc__ or ""
    recipe = textwrap.dedent(doc.split("GNU tools:\n", 1)[1].split("\n\n", 1)[0])
    root = _tree(tmp_path / "data", FILES)
    script = recipe.replace("cd DIR", f"cd {shlex.quote(str(root))}")
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, env={**os.environ}
    ).stdout
    assert training_data_id(None, root).training_data_id == "sha256:" + out[:64]


def test_the_manifest_ignores_creation_order_but_not_names_or_content(tmp_path: Path) -> None:
    one = _tree(tmp_path / "one", FILES)
    two = _tree(tmp_path / "two", dict(reversed(FILES.items())))
    assert training_data_id(None, one) == Lineage(
        training_data_id(None, two).training_data_id,
        "sha256-manifest",
        {"path": one.as_posix(), "files": len(FILES), "bytes": sum(map(len, FILES.values()))},
    )
    ids = {training_data_id(None, one).training_data_id}
    (one / "part-1.csv").write_bytes(b"a,b\n1,3\n")
    ids.add(training_data_id(None, one).training_data_id)
    (one / "part-1.csv").rename(one / "nested" / "part-1.csv")
    ids.add(training_data_id(None, one).training_data_id)
    (one / "empty").write_bytes(b"")
    ids.add(training_data_id(None, one).training_data_id)
    assert len(ids) == 4


@pytest.mark.parametrize("target", ["file", "directory"])
def test_symlinks_inside_the_directory_are_refused(tmp_path: Path, target: str) -> None:
    root = _tree(tmp_path / "data", {"part-1.csv": b"x"})
    outside = _tree(tmp_path / "elsewhere", {"secret.csv": b"y"})
    (root / "link").symlink_to(outside / "secret.csv" if target == "file" else outside)
    assert "'link' is a symlink" in _refused(training_data_id, None, root)


def test_the_path_given_may_itself_be_a_symlink(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", FILES)
    (tmp_path / "current").symlink_to(root)
    assert training_data_id(None, tmp_path / "current").training_data_id == _manifest_by_hand(root)


def test_special_files_are_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", {"part-1.csv": b"x"})
    os.mkfifo(root / "pipe")
    assert "'pipe' is not a regular file" in _refused(training_data_id, None, root)


@pytest.mark.parametrize("name", ["new\nline.csv", "bell\a.csv", os.fsdecode(b"latin1-\xe9.csv")])
def test_names_that_would_make_the_manifest_ambiguous_are_refused(
    tmp_path: Path, name: str
) -> None:
    root = _tree(tmp_path / "data", {"part-1.csv": b"x"})
    (root / name).write_bytes(b"y")
    assert "control character or is not UTF-8" in _refused(training_data_id, None, root)


def test_a_directory_without_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data" / "only" / "dirs").mkdir(parents=True)
    assert "has no files to hash" in _refused(training_data_id, None, tmp_path / "data")


def test_missing_training_data(tmp_path: Path) -> None:
    message = _refused(training_data_id, None, tmp_path / "nope.csv")
    assert message == f"--training-data {tmp_path / 'nope.csv'}: no such file or directory"


def test_both_given_records_the_id_and_the_computed_hash(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_bytes(b"a\n1\n")
    computed = training_data_id(None, data).training_data_id
    lineage = training_data_id("credit-v7", data)
    assert lineage == Lineage(
        "credit-v7",
        "given",
        {
            "computed_id": computed,
            "computed_method": "sha256-file",
            "path": data.as_posix(),
            "bytes": 4,
        },
    )
    assert training_data_id(computed.upper().replace("SHA256", "sha256"), data).method == "given"


def test_both_given_and_disagreeing_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_bytes(b"a\n1\n")
    message = _refused(training_data_id, "sha256:" + "0" * 64, data)
    assert "does not match --training-data" in message


# --- source_commit


@pytest.fixture
def git_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git that reads no machine-wide or user config, and never finds a repo above tmp_path."""
    for name in [n for n in os.environ if n.startswith("GIT_")]:
        monkeypatch.delenv(name)
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "home" / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, git_home: None) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _git(repo, "config", "user.name", "Ada Lovelace")
    _git(repo, "config", "user.email", "ada@example.com")
    (repo / "train.py").write_text("print('train')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_the_flag_wins(repo: Path) -> None:
    got = source_commit(SHA.upper(), {"GITHUB_SHA": "a" * 40}, repo)
    assert got == SourceCommit(SHA, None, "flag")


@pytest.mark.parametrize("value", ["main", "abc123", "g" * 40, "a" * 65, ""])
def test_a_flag_that_is_not_a_sha_is_refused(repo: Path, value: str) -> None:
    assert "is not a commit SHA (want 7 to 64 hex digits)" in _refused(
        source_commit, value, {}, repo
    )


@pytest.mark.parametrize("variable", CI_COMMIT_VARIABLES)
def test_each_ci_variable_is_read(tmp_path: Path, variable: str) -> None:
    assert source_commit(None, {variable: SHA}, tmp_path) == SourceCommit(
        SHA, None, f"env:{variable}"
    )


def test_github_sha_comes_before_jenkins_git_commit(tmp_path: Path) -> None:
    env = {"GIT_COMMIT": "b" * 40, "GITHUB_SHA": SHA}
    assert source_commit(None, env, tmp_path).source == "env:GITHUB_SHA"


def test_a_ci_variable_that_is_not_a_sha_is_refused(tmp_path: Path) -> None:
    assert "CIRCLE_SHA1 'pending' is not a commit SHA" in _refused(
        source_commit, None, {"CIRCLE_SHA1": "pending"}, tmp_path
    )


def test_buildkite_head_falls_back_to_git(repo: Path) -> None:
    got = source_commit(None, {"BUILDKITE_COMMIT": "HEAD"}, repo)
    assert got == SourceCommit(_git(repo, "rev-parse", "HEAD"), False, "git")


def test_git_head_of_a_clean_checkout(repo: Path) -> None:
    assert source_commit(None, {}, repo) == SourceCommit(
        _git(repo, "rev-parse", "HEAD"), False, "git"
    )


def test_untracked_files_do_not_make_it_dirty(repo: Path) -> None:
    (repo / "model.pkl").write_bytes(b"the CI just trained this")
    assert source_commit(None, {}, repo).dirty is False


def test_a_changed_tracked_file_makes_it_dirty(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    assert source_commit(None, {}, repo).dirty is True


def test_a_subdirectory_of_the_checkout_works(repo: Path) -> None:
    (repo / "models").mkdir()
    assert source_commit(None, {}, repo / "models").sha == _git(repo, "rev-parse", "HEAD")


def test_outside_a_checkout_it_says_what_to_pass(tmp_path: Path, git_home: None) -> None:
    (tmp_path / "plain").mkdir()
    message = _refused(source_commit, None, {}, tmp_path / "plain")
    assert message.startswith("cannot tell which commit built this model: pass --source-commit")
    assert "not a git repository" in message


def test_a_repository_without_commits(tmp_path: Path, git_home: None) -> None:
    (tmp_path / "empty").mkdir()
    _git(tmp_path / "empty", "init", "-q")
    assert "pass --source-commit" in _refused(source_commit, None, {}, tmp_path / "empty")


def test_without_git_installed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(repo / "no-bin-here"))
    assert "git is not installed" in _refused(source_commit, None, {}, repo)


def test_a_git_that_hangs_is_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_home: None
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 30\n")
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(provenance, "GIT_TIMEOUT_S", 0.3)
    assert "git rev-parse did not finish in 0.3s" in _refused(source_commit, None, {}, tmp_path)
    assert actor({}, tmp_path) == Actor(None, None, None, None)


# --- actor


@pytest.mark.parametrize(
    ("env", "system", "who"),
    [
        ({"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octocat"}, "github-actions", "octocat"),
        (
            {"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octocat", "GITHUB_TRIGGERING_ACTOR": "re"},
            "github-actions",
            "re",
        ),
        ({"GITLAB_CI": "true", "GITLAB_USER_LOGIN": "ada"}, "gitlab", "ada"),
        ({"BUILDKITE": "true", "BUILDKITE_BUILD_CREATOR": "Ada L"}, "buildkite", "Ada L"),
        ({"CIRCLECI": "true", "CIRCLE_USERNAME": "ada"}, "circleci", "ada"),
        (
            {"BITBUCKET_BUILD_NUMBER": "7", "BITBUCKET_STEP_TRIGGERER_UUID": "{u-1}"},
            "bitbucket",
            "{u-1}",
        ),
        ({"TF_BUILD": "True", "BUILD_REQUESTEDFOR": "Ada L"}, "azure-pipelines", "Ada L"),
        ({"CODEBUILD_BUILD_ID": "b:1", "CODEBUILD_INITIATOR": "ada"}, "aws-codebuild", "ada"),
        ({"DRONE": "true", "DRONE_BUILD_TRIGGER": "ada"}, "drone", "ada"),
        ({"JENKINS_URL": "https://ci", "BUILD_USER_ID": "ada"}, "jenkins", "ada"),
        ({"JENKINS_URL": "https://ci"}, "jenkins", None),
        ({"TRAVIS": "true"}, "travis", None),
        ({"GITHUB_ACTOR": "octocat"}, "github-actions", "octocat"),
        ({"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "  "}, "github-actions", None),
        ({}, None, None),
    ],
)
def test_the_ci_actor(
    tmp_path: Path, git_home: None, env: dict[str, str], system: str | None, who: str | None
) -> None:
    assert actor(env, tmp_path) == Actor(who, system, None, None)


def test_the_git_user(repo: Path) -> None:
    got = actor({"GITLAB_CI": "true", "GITLAB_USER_LOGIN": "ada"}, repo)
    assert got == Actor("ada", "gitlab", "Ada Lovelace", "ada@example.com")
