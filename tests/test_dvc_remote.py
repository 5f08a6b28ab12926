"""DVC remote round trip on the tiny MNIST chain: push to a local-folder remote, wipe, pull, compare hashes.

Outputs with `cache: false` in dvc.yaml (losses.csv, metrics.json, registration.json) never enter
the DVC cache, so `dvc push` does not upload them. DVC leaves them out of the .gitignore files it
writes, and a team commits them to git with dvc.lock. The tests check both halves of that, with
the repository's own .gitignore.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_params, write_params
from mlflow_server import copy_project, run_in_group

pytestmark = pytest.mark.slow

CACHED_OUTPUTS = [
    "data/raw/mnist",
    "data/validation/mnist",
    "data/prepared/mnist",
    "data/train/mnist",
    "data/fid_stats/mnist",
    "data/eval/mnist",
]
GIT_OUTPUTS = [
    "data/plots/mnist/losses.csv",
    "data/metrics/mnist/metrics.json",
    "data/registry/mnist/registration.json",
]
UP_TO_DATE = "Data and pipelines are up to date."
# A fixed author, so that `git commit` works on a machine with no git identity configured.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "dcgan tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "dcgan tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
}
ENV = {**GIT_ENV, "MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _object_path(store: Path, md5: str) -> Path:
    """Return where DVC 3 keeps an object in a cache or a local remote: files/md5/<first 2>/<rest>."""
    return store / "files" / "md5" / md5[:2] / md5[2:]


def _locked_outputs(root: Path) -> dict[str, str]:
    """Map each output path in dvc.lock to its recorded md5 (a ``.dir`` md5 for a directory)."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {out["path"]: out["md5"] for stage in lock["stages"].values() for out in stage.get("outs", [])}


def _mismatches(root: Path, manifests: Path) -> list[str]:
    """List every workspace file whose md5 differs from dvc.lock, reading directory manifests from ``manifests``."""
    problems = []
    for out, md5 in _locked_outputs(root).items():
        path = root / out
        if not md5.endswith(".dir"):
            if not path.is_file():
                problems.append(f"{out}: missing")
            elif _md5(path) != md5:
                problems.append(f"{out}: md5 {_md5(path)}, dvc.lock has {md5}")
            continue
        manifest = json.loads(_object_path(manifests, md5).read_text())
        expected = {entry["relpath"]: entry["md5"] for entry in manifest}
        actual = {file.relative_to(path).as_posix(): _md5(file) for file in path.rglob("*") if file.is_file()}
        if actual != expected:
            differing = sorted(set(actual.items()) ^ set(expected.items()))
            problems.append(f"{out}: {len(differing)} entries differ from its manifest, e.g. {differing[:3]}")
    return problems


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Run the MNIST chain, commit it to git and push its data to a local-folder remote.

    Returns the project folder and the remote folder.
    """
    base = tmp_path_factory.mktemp("dvc-remote")
    root = copy_project(base / "project")
    remote = base / "remote"
    params = tiny_params()
    params["datasets"] = ["mnist"]
    write_params(root, params)
    shutil.copy(REPO / ".gitignore", root / ".gitignore")

    run_in_group(["git", "init", "-q"], cwd=root, env=ENV)
    run_in_group(["dvc", "init", "-q"], cwd=root, env=ENV)
    run_in_group(["dvc", "repro", "register@mnist"], cwd=root, env=ENV, timeout=1800)
    run_in_group(["dvc", "remote", "add", "-d", "localremote", str(remote)], cwd=root, env=ENV)
    run_in_group(["git", "add", "-A"], cwd=root, env=ENV)
    # The repository's .gitignore ignores everything under /data/, so the outputs git has to carry need -f.
    run_in_group(["git", "add", "-f", *GIT_OUTPUTS], cwd=root, env=ENV)
    run_in_group(["git", "commit", "-q", "-m", "MNIST chain"], cwd=root, env=ENV)
    run_in_group(["dvc", "push"], cwd=root, env=ENV)
    return root, remote


def test_push_uploads_cached_outputs_only(pushed):
    root, remote = pushed
    locked = _locked_outputs(root)
    for out in CACHED_OUTPUTS:
        assert _object_path(remote, locked[out]).is_file(), f"{out} ({locked[out]}) not in the remote"
    for out in GIT_OUTPUTS:
        assert not _object_path(remote, locked[out]).exists(), f"{out} is cache: false but reached the remote"

    # Git carries the cache: false outputs: they are committed, while the cached outputs are ignored.
    committed = set(run_in_group(["git", "ls-files"], cwd=root, env=ENV).stdout.split())
    for out in GIT_OUTPUTS:
        assert out in committed
    for out in CACHED_OUTPUTS:
        assert not any(path.startswith(out + "/") for path in committed), f"{out} was committed to git"
    assert {"dvc.lock", "dvc.yaml", "params.yaml", ".dvc/config"} <= committed


def test_pull_restores_wiped_cache(pushed):
    root, _ = pushed
    shutil.rmtree(root / ".dvc" / "cache")
    for out in CACHED_OUTPUTS:
        shutil.rmtree(root / out)
    wiped = run_in_group(["dvc", "status"], cwd=root, env=ENV)
    assert UP_TO_DATE not in wiped.stdout
    assert "deleted" in wiped.stdout

    run_in_group(["dvc", "pull"], cwd=root, env=ENV)

    status = run_in_group(["dvc", "status"], cwd=root, env=ENV)
    assert UP_TO_DATE in status.stdout, status.stdout
    assert _mismatches(root, root / ".dvc" / "cache") == []


def test_clone_gets_data_from_remote_and_git(pushed, tmp_path):
    root, _ = pushed
    clone = tmp_path / "clone"
    run_in_group(["git", "clone", "-q", str(root), str(clone)], cwd=tmp_path, env=ENV)
    for out in CACHED_OUTPUTS:
        assert not (clone / out).exists()
    for out in GIT_OUTPUTS:
        assert (clone / out).is_file(), f"{out} did not come with the git clone"

    run_in_group(["dvc", "pull"], cwd=clone, env=ENV)

    status = run_in_group(["dvc", "status"], cwd=clone, env=ENV)
    assert UP_TO_DATE in status.stdout, status.stdout
    assert _mismatches(clone, clone / ".dvc" / "cache") == []


def test_pull_skips_cache_false_outputs(pushed, tmp_path):
    root, _ = pushed
    clone = tmp_path / "clone"
    run_in_group(["git", "clone", "-q", str(root), str(clone)], cwd=tmp_path, env=ENV)
    metrics = clone / "data/metrics/mnist/metrics.json"
    metrics.unlink()

    run_in_group(["dvc", "pull"], cwd=clone, env=ENV)

    assert not metrics.exists()
    status = run_in_group(["dvc", "status"], cwd=clone, env=ENV)
    assert re.search(r"deleted:\s+data/metrics/mnist/metrics\.json", status.stdout), status.stdout
    run_in_group(["git", "checkout", "--", "data/metrics/mnist/metrics.json"], cwd=clone, env=ENV)
    status = run_in_group(["dvc", "status"], cwd=clone, env=ENV)
    assert UP_TO_DATE in status.stdout, status.stdout
