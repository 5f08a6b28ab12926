"""The champion alias in a real SQLite MLflow store: the automatic rule, promote by hand, rollback and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from conftest import run

from dcgan.errors import UserError
from dcgan.evaluation import protocol
from dcgan.tracking import mlflow_store
from dcgan.tracking.promotion import auto_promote, promote, rollback

NAME = "dcgan-mnist"
PROTOCOL = {
    "feature_extractor": "inception-v3",
    "generated_count": 10000,
    "real_count": 10000,
    "resize": "bilinear-299",
    "weights_sha256": "ab12",
}


@pytest.fixture(scope="session")
def empty_database(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database with every migration applied.

    Migrating a new database takes seconds, so each test copies this one instead.
    No test logs artifacts, so the artifact root recorded in it is never written to.
    """
    database = tmp_path_factory.mktemp("template") / "mlflow.db"
    uri = f"sqlite:///{database}"
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()
    return database


@pytest.fixture
def store(tmp_path, monkeypatch, empty_database):
    monkeypatch.chdir(tmp_path)
    mlflow_store.DATABASE.parent.mkdir()
    shutil.copyfile(empty_database, mlflow_store.DATABASE)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = mlflow_store.configure()
    yield uri
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def client(store):
    return mlflow.MlflowClient()


def scored_tags(fid: float | None, metric: str = "fid", **protocol_changes) -> dict[str, str]:
    """Model-version tags as the register stage writes them, for a FID (None: FID was not computed)."""
    measured = {**PROTOCOL, **protocol_changes}
    scores = {
        "fid": fid,
        "kid_mean": 0.01,
        "kid_std": 0.001,
        "protocol": measured,
        "protocol_key": protocol.protocol_key(measured),
    }
    return protocol.version_tags(scores, metric)


def add_version(client, tags: dict[str, str], name: str = NAME) -> str:
    """Register a version with ``tags`` in the store, the way log_generator leaves it, without logging weights."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException:
        pass
    # The store only records the source path; nothing is read from it.
    version = client.create_model_version(name, source=str(Path.cwd() / "weights"), tags=tags)
    return str(version.version)


def aliases(client) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(NAME).aliases.items()}


def test_auto_promotes_first_version(client):
    first = add_version(client, scored_tags(50.0))

    decision = auto_promote(client, NAME, first, actor="pipeline")

    assert decision.promoted
    assert decision.champion_version is None
    assert decision.champion_score is None
    assert aliases(client) == {"champion": first}


def test_auto_keeps_champion_on_worse(client):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    worse = add_version(client, scored_tags(60.0))

    decision = auto_promote(client, NAME, worse, actor="pipeline")

    assert not decision.promoted
    assert decision.champion_version == first
    assert decision.champion_score == 50.0
    assert "does not beat" in decision.reason
    assert aliases(client) == {"champion": first}


def test_auto_keeps_champion_on_tie(client):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    tie = add_version(client, scored_tags(50.0))

    decision = auto_promote(client, NAME, tie, actor="pipeline")

    assert not decision.promoted
    assert aliases(client)["champion"] == first


def test_auto_promotes_better_sets_previous(client):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    better = add_version(client, scored_tags(40.0))

    decision = auto_promote(client, NAME, better, actor="pipeline")

    assert decision.promoted
    assert decision.champion_version == first
    assert decision.champion_score == 50.0
    assert decision.score == 40.0
    assert aliases(client) == {"champion": better, "previous": first}
    tags = client.get_model_version(NAME, better).tags
    assert tags["promoted_by"] == "pipeline"
    assert tags["promoted_from"] == first
    assert tags["promoted_reason"].startswith("automatic: ")


def test_auto_skips_missing_score(client):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    unscored = add_version(client, scored_tags(None))

    decision = auto_promote(client, NAME, unscored, actor="pipeline")

    assert not decision.promoted
    assert decision.score is None
    assert "no valid score" in decision.reason
    assert f"dcgan promote mnist {unscored}" in decision.reason
    assert "register.metric: kid_mean" in decision.reason
    assert aliases(client) == {"champion": first}


def test_auto_skips_different_protocol(client):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    other = add_version(client, scored_tags(10.0, generated_count=2000))

    decision = auto_promote(client, NAME, other, actor="pipeline")

    assert not decision.promoted
    assert "generated_count: 2000 vs 10000" in decision.reason
    assert "never compared" in decision.reason
    assert f"dcgan promote mnist {other}" in decision.reason
    assert aliases(client) == {"champion": first}


def test_auto_skips_different_metric(client):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    by_kid = add_version(client, scored_tags(50.0, metric="kid_mean"))

    decision = auto_promote(client, NAME, by_kid, actor="pipeline")

    assert not decision.promoted
    assert "score_metric: kid_mean vs fid" in decision.reason


def test_auto_skips_unscored_first_version(client):
    first = add_version(client, scored_tags(None))

    decision = auto_promote(client, NAME, first, actor="pipeline")

    assert not decision.promoted
    assert "no valid score" in decision.reason
    assert aliases(client) == {}


def test_auto_skips_unscored_champion(client):
    first = add_version(client, scored_tags(None))
    promote(client, NAME, first, reason="looked best in the grid", actor="alice")
    scored = add_version(client, scored_tags(40.0))

    decision = auto_promote(client, NAME, scored, actor="pipeline")

    assert not decision.promoted
    assert f"champion version {first} has no valid score" in decision.reason


def test_promote_by_hand_records_who_why(client):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    second = add_version(client, scored_tags(60.0))

    move = promote(client, NAME, second, reason="sharper digits", actor="alice")

    assert move.moved
    assert move.replaced_version == first
    assert aliases(client) == {"champion": second, "previous": first}
    tags = client.get_model_version(NAME, second).tags
    assert tags["promoted_by"] == "alice"
    assert tags["promoted_reason"] == "sharper digits"
    assert tags["promoted_from"] == first
    assert tags["promoted_at"].endswith("+00:00")


def test_promote_first_records_none(client):
    first = add_version(client, scored_tags(50.0))

    move = promote(client, NAME, first, reason="first model", actor="alice")

    assert move.replaced_version is None
    assert client.get_model_version(NAME, first).tags["promoted_from"] == "none"
    assert aliases(client) == {"champion": first}


def test_promote_champion_again_is_noop(client):
    first = add_version(client, scored_tags(50.0))
    second = add_version(client, scored_tags(40.0))
    promote(client, NAME, first, reason="first", actor="alice")
    promote(client, NAME, second, reason="second", actor="alice")

    move = promote(client, NAME, second, reason="again", actor="bob")

    assert not move.moved
    assert aliases(client) == {"champion": second, "previous": first}
    assert client.get_model_version(NAME, second).tags["promoted_by"] == "alice"


def test_promote_unknown_version_lists_versions(client):
    add_version(client, scored_tags(50.0))
    add_version(client, scored_tags(40.0))

    with pytest.raises(UserError) as error:
        promote(client, NAME, "7", reason="try", actor="alice")

    assert "no version '7'" in str(error.value)
    assert "existing versions: 1, 2" in str(error.value)


def test_promote_empty_reason_rejected(client):
    first = add_version(client, scored_tags(50.0))

    with pytest.raises(UserError, match="reason is empty"):
        promote(client, NAME, first, reason="  ", actor="alice")

    assert aliases(client) == {}


def test_promote_unregistered_model_rejected(client):
    with pytest.raises(UserError) as error:
        promote(client, "dcgan-anime", "1", reason="try", actor="alice")

    assert "dcgan-anime is not registered" in str(error.value)
    assert "dvc repro register@anime" in str(error.value)


def test_rollback_restores_previous(client):
    first = add_version(client, scored_tags(50.0))
    second = add_version(client, scored_tags(40.0))
    promote(client, NAME, first, reason="first", actor="alice")
    promote(client, NAME, second, reason="second", actor="alice")

    result = rollback(client, NAME, actor="bob", reason="artifacts in samples")

    assert result.restored_version == first
    assert result.replaced_version == second
    assert aliases(client) == {"champion": first}
    replaced_tags = client.get_model_version(NAME, second).tags
    assert replaced_tags["rolled_back_by"] == "bob"
    assert replaced_tags["rolled_back_reason"] == "artifacts in samples"
    assert "rolled_back_at" in replaced_tags
    restored_tags = client.get_model_version(NAME, first).tags
    assert restored_tags["restored_by"] == "bob"
    assert restored_tags["restored_from"] == second
    assert restored_tags["restored_reason"] == "artifacts in samples"
    assert restored_tags["promoted_by"] == "alice"
    assert restored_tags["promoted_reason"] == "first"


def test_rollback_twice_fails(client):
    first = add_version(client, scored_tags(50.0))
    second = add_version(client, scored_tags(40.0))
    promote(client, NAME, first, reason="first", actor="alice")
    promote(client, NAME, second, reason="second", actor="alice")
    rollback(client, NAME, actor="bob", reason="rollback")

    with pytest.raises(UserError) as error:
        rollback(client, NAME, actor="bob", reason="rollback")

    message = str(error.value)
    assert "\n" not in message
    assert "no version with the 'previous' alias" in message
    assert "dcgan promote mnist VERSION --reason TEXT" in message
    assert aliases(client) == {"champion": first}


def test_other_alias_keeps_own_previous(client):
    first = add_version(client, scored_tags(50.0))
    second = add_version(client, scored_tags(40.0))
    promote(client, NAME, first, reason="first", actor="alice", alias="staging")
    promote(client, NAME, second, reason="second", actor="alice", alias="staging")

    assert aliases(client) == {"staging": second, "staging-previous": first}


def test_cli_promote_and_rollback(client, tmp_path):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    second = add_version(client, scored_tags(60.0, generated_count=2000))
    env = {"MLFLOW_TRACKING_URI": None, "USER": "alice"}

    promoted = run(["dcgan", "promote", "mnist", second, "--reason", "cleaner strokes"], tmp_path, env=env)
    rolled_back = run(["dcgan", "rollback", "mnist"], tmp_path, env=env)

    promote_lines = promoted.stdout.splitlines()
    assert promote_lines[0] == (
        f"dcgan-mnist: champion moved from version {first} to version {second} "
        f"(version {first} is now previous), by alice: cleaner strokes"
    )
    assert f"version {second} fid 60, version {first} fid 50" in promote_lines[1]
    assert "protocols differ" in promote_lines[1]
    assert "generated_count: 2000 vs 10000" in promote_lines[1]
    assert rolled_back.stdout.startswith(
        f"dcgan-mnist: champion rolled back from version {second} to version {first}, by alice: rollback"
    )
    assert aliases(client) == {"champion": first}


def test_cli_promote_matching_protocols(client, tmp_path):
    first = add_version(client, scored_tags(50.0))
    auto_promote(client, NAME, first, actor="pipeline")
    second = add_version(client, scored_tags(60.0))

    result = run(["dcgan", "promote", "mnist", second, "--reason", "manual pick"], tmp_path,
                 env={"MLFLOW_TRACKING_URI": None})

    assert result.stdout.splitlines()[1].endswith("; protocols match")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["promote", "digits", "1", "--reason", "x"], "unknown dataset 'digits'"),
        (["promote", "mnist", "9", "--reason", "x"], "existing versions: 1"),
        (["promote", "mnist", "1", "--reason", ""], "reason is empty"),
        (["rollback", "mnist"], "no version with the 'previous' alias"),
        (["rollback", "anime"], "dvc repro register@anime"),
    ],
)
def test_cli_bad_input_one_line(client, tmp_path, args, expected):
    add_version(client, scored_tags(50.0))

    result = run(["dcgan", *args], tmp_path, env={"MLFLOW_TRACKING_URI": None}, check=False)

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2
    assert len(lines) == 1
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
