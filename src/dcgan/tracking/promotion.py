"""Move the champion alias of a registered generator: by the pipeline's rule, by hand, or back.

Every alias move goes through ``_move_alias``. It gives the replaced champion the
``previous`` alias when asked and records who moved the alias, when and why as
model-version tags on the version that receives it.

The automatic rule compares two scores only when both versions rank on the same
metric and were measured under the same protocol (equal ``protocol_key`` tags).
Lower scores are better for every metric in dcgan.evaluation.protocol.SCORE_METRICS.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from mlflow.exceptions import MlflowException

from dcgan.errors import UserError
from dcgan.evaluation import protocol

log = logging.getLogger(__name__)

CHAMPION = "champion"
MODEL_PREFIX = "dcgan-"


@dataclass(frozen=True)
class AliasMove:
    """The outcome of one request to point ``alias`` at ``version``.

    ``replaced_version`` is the version that held the alias before, or None.
    ``moved`` is False when ``version`` already held the alias, so nothing changed.
    """

    model: str
    alias: str
    version: str
    replaced_version: str | None
    moved: bool
    actor: str
    reason: str
    at: str


@dataclass(frozen=True)
class AutoDecision:
    """The pipeline's decision on a new version: its score, the champion it was ranked against (before the decision) and why."""

    promoted: bool
    version: str
    score: float | None
    champion_version: str | None
    champion_score: float | None
    reason: str


@dataclass(frozen=True)
class Rollback:
    """The outcome of a rollback: ``restored_version`` has the alias again and ``replaced_version`` lost it."""

    model: str
    alias: str
    restored_version: str
    replaced_version: str | None
    actor: str
    reason: str
    at: str


def previous_alias(alias: str) -> str:
    """Return the alias that marks the version ``alias`` pointed to before the last promotion.

    That is ``previous`` for the champion and ``<alias>-previous`` for any other alias,
    so two aliases never share one rollback target.
    """
    return "previous" if alias == CHAMPION else f"{alias}-previous"


def version_score(tags: dict[str, str]) -> float | None:
    """Return the version's ``score`` tag as a float, or None when it is missing or not a number."""
    value = tags.get("score")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def protocol_mismatch(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """List why two versions' scores are not comparable, as 'field: mine vs theirs'; empty when they are.

    Both arguments are model-version tag dicts. Versions are comparable when their
    ``score_metric`` and ``protocol_key`` tags are equal.
    """
    mismatch = []
    if mine.get("score_metric") != theirs.get("score_metric"):
        mismatch.append(f"score_metric: {mine.get('score_metric')} vs {theirs.get('score_metric')}")
    if mine.get("protocol_key") == theirs.get("protocol_key"):
        return mismatch

    my_protocol = _parse_protocol(mine)
    their_protocol = _parse_protocol(theirs)
    if my_protocol is None or their_protocol is None:
        # Versions registered before protocols were recorded have no protocol tag.
        mismatch.append(f"protocol: {_describe_protocol(my_protocol)} vs {_describe_protocol(their_protocol)}")
        return mismatch
    differing_fields = protocol.differences(my_protocol, their_protocol)
    if differing_fields:
        mismatch.extend(differing_fields)
    else:
        mismatch.append(f"protocol_key: {mine.get('protocol_key')} vs {theirs.get('protocol_key')}")
    return mismatch


def promote(client, name: str, version: str | int, *, reason: str, actor: str, alias: str = CHAMPION) -> AliasMove:
    """Point ``alias`` of model ``name`` at ``version`` and record who did it and why.

    The version that held the alias gets the ``previous`` alias (see previous_alias).
    Promoting the version that already has the alias changes nothing and returns
    ``moved=False``. Raises UserError when the model or version does not exist or
    ``reason`` or ``actor`` is empty.
    """
    version = _checked_version(client, name, version)
    reason = _checked_text(reason, "reason", f"why {name} version {version} becomes {alias}")
    actor = _checked_text(actor, "actor", "the user name that moves the alias")
    return _move_alias(client, name, version, alias, actor=actor, reason=reason, keep_previous=True)


def auto_promote(client, name: str, version: str | int, *, actor: str, alias: str = CHAMPION) -> AutoDecision:
    """Apply the pipeline's rule to a newly registered version and promote it through ``promote`` when it wins.

    A scored version becomes champion when no version has the alias yet, or when
    both versions rank on the same metric under the same protocol and its score
    is strictly lower. A missing score, a different protocol, a tie or a worse
    score keeps the champion (or leaves the alias unset), and the decision's
    reason explains why and how to promote by hand.
    """
    version = _checked_version(client, name, version)
    tags = client.get_model_version(name, version).tags
    score = version_score(tags)
    champion = _aliases(client, name).get(alias)

    if score is None:
        # An unscored champion could never be ranked against, so the rule never promotes one.
        champion_score = version_score(client.get_model_version(name, champion).tags) if champion else None
        return _decide(name, version, None, champion, champion_score, False, _unscored_reason(name, version, tags))

    if champion is None:
        reason = f"no version had the {alias} alias before"
        promote(client, name, version, reason=f"automatic: {reason}", actor=actor, alias=alias)
        return _decide(name, version, score, None, None, True, reason)

    champion_tags = client.get_model_version(name, champion).tags
    champion_score = version_score(champion_tags)
    if champion == version:
        reason = f"version {version} is already {alias}"
        return _decide(name, version, score, champion, champion_score, False, reason)

    rejection = _rejection(name, version, tags, champion, champion_tags, alias)
    if rejection is not None:
        return _decide(name, version, score, champion, champion_score, False, rejection)

    metric = tags["score_metric"]
    if not score < champion_score:
        reason = f"{metric} {score:.6g} does not beat {alias} version {champion} at {champion_score:.6g}"
        return _decide(name, version, score, champion, champion_score, False, reason)

    reason = f"{metric} {score:.6g} beats {alias} version {champion} at {champion_score:.6g}"
    promote(client, name, version, reason=f"automatic: {reason}", actor=actor, alias=alias)
    return _decide(name, version, score, champion, champion_score, True, reason)


def rollback(client, name: str, *, actor: str, reason: str, alias: str = CHAMPION) -> Rollback:
    """Give ``alias`` back to the version marked ``previous`` and remove that mark.

    Removing the mark makes a second rollback fail instead of flipping back. The version
    that loses the alias gets ``rolled_back_by``, ``rolled_back_at`` and
    ``rolled_back_reason`` tags, and the restored version gets ``restored_*`` tags. Raises UserError when no version has the ``previous`` alias.
    """
    aliases = _aliases(client, name)
    reason = _checked_text(reason, "reason", f"why {name} rolls back its {alias} alias")
    actor = _checked_text(actor, "actor", "the user name that moves the alias")
    mark = previous_alias(alias)
    restored = aliases.get(mark)
    if restored is None:
        raise UserError(
            f"{name} has no version with the '{mark}' alias, so there is nothing to roll back to; "
            f"promote a version by hand with `dcgan promote {_dataset(name)} VERSION --reason TEXT`"
        )

    move = _move_alias(client, name, restored, alias, actor=actor, reason=reason, keep_previous=False,
                       tag_prefix="restored")
    client.delete_registered_model_alias(name, mark)
    replaced = move.replaced_version
    if replaced is not None and replaced != restored:
        client.set_model_version_tag(name, replaced, "rolled_back_by", actor)
        client.set_model_version_tag(name, replaced, "rolled_back_at", move.at)
        client.set_model_version_tag(name, replaced, "rolled_back_reason", reason)
    log.info("%s: %s rolled back from version %s to version %s by %s: %s", name, alias, replaced, restored, actor,
             reason)
    return Rollback(name, alias, restored, replaced, actor, reason, move.at)


def _move_alias(client, name: str, version: str, alias: str, *, actor: str, reason: str,
                keep_previous: bool, tag_prefix: str = "promoted") -> AliasMove:
    """Point ``alias`` at ``version`` and tag it with <prefix>_by, _reason, _at and _from.

    Rollbacks use the prefix ``restored``, so the version keeps the record of its original promotion.

    With ``keep_previous`` the replaced version gets the previous alias first, so a failure
    between the two calls leaves the champion unchanged.

    NOTE: MLflow has no transaction across these calls, so two moves of one model's alias
    at the same time can interleave. Run one promotion per model at a time.
    """
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    replaced = _aliases(client, name).get(alias)
    if replaced == version:
        log.info("%s: version %s is already %s; nothing changed", name, version, alias)
        return AliasMove(name, alias, version, replaced, False, actor, reason, at)

    if keep_previous and replaced is not None:
        client.set_registered_model_alias(name, previous_alias(alias), replaced)
    client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, f"{tag_prefix}_by", actor)
    client.set_model_version_tag(name, version, f"{tag_prefix}_reason", reason)
    client.set_model_version_tag(name, version, f"{tag_prefix}_at", at)
    client.set_model_version_tag(name, version, f"{tag_prefix}_from", replaced or "none")
    if replaced is None:
        log.info("%s: %s set to version %s by %s: %s", name, alias, version, actor, reason)
    else:
        log.info("%s: %s moved from version %s to version %s by %s: %s", name, alias, replaced, version, actor, reason)
    return AliasMove(name, alias, version, replaced, True, actor, reason, at)


def _rejection(name: str, version: str, tags: dict[str, str], champion: str, champion_tags: dict[str, str],
               alias: str) -> str | None:
    """Return why ``version`` cannot be ranked against the champion, or None when its score can be compared."""
    by_hand = f"`dcgan promote {_dataset(name)} {version} --reason TEXT`"
    mismatch = protocol_mismatch(tags, champion_tags)
    if mismatch:
        return (
            f"version {version} and {alias} version {champion} were scored under different protocols "
            f"(new vs {alias}: {'; '.join(mismatch)}); scores of different protocols are never compared, "
            f"so {alias} stays; to promote anyway run {by_hand}"
        )

    if version_score(champion_tags) is None:
        return (
            f"{alias} version {champion} has no valid score tag, so version {version} cannot be ranked "
            f"against it; to promote anyway run {by_hand}"
        )
    return None


def _unscored_reason(name: str, version: str, tags: dict[str, str]) -> str:
    return (
        f"version {version} has no valid score tag ({tags.get('score_metric', 'the metric')} could not be "
        f"computed, for example FID below 2,048 images a side), so it is not ranked; promote it by hand with "
        f"`dcgan promote {_dataset(name)} {version} --reason TEXT`, or rank on kid_mean by setting "
        "register.metric: kid_mean in params.yaml"
    )


def _decide(name: str, version: str, score: float | None, champion_version: str | None,
            champion_score: float | None, promoted: bool, reason: str) -> AutoDecision:
    log.info("%s version %s %s: %s", name, version, "promoted" if promoted else "not promoted", reason)
    return AutoDecision(promoted, version, score, champion_version, champion_score, reason)


def _aliases(client, name: str) -> dict[str, str]:
    """Return the model's alias -> version map; raise UserError when the model is not registered."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise UserError(
            f"model {name} is not registered yet; `dvc repro register@{_dataset(name)}` registers one"
        ) from None
    return {alias: str(version) for alias, version in model.aliases.items()}


def _checked_version(client, name: str, version: str | int) -> str:
    """Return ``version`` as a string; raise UserError listing the model's versions when it does not exist."""
    _aliases(client, name)
    versions = sorted(
        (str(found.version) for found in client.search_model_versions(f"name = '{name}'")),
        key=int,
    )
    requested = str(version).strip()
    if requested not in versions:
        raise UserError(
            f"{name} has no version {requested!r}; existing versions: {', '.join(versions) or 'none'}"
        )
    return requested


def _checked_text(value: str, field: str, expected: str) -> str:
    text = (value or "").strip()
    if not text:
        raise UserError(f"{field} is empty; give {expected}")
    return text


def _parse_protocol(tags: dict[str, str]) -> dict | None:
    try:
        parsed = json.loads(tags["protocol"])
    except (KeyError, ValueError):
        return None
    return parsed if isinstance(parsed, dict) else None


def _describe_protocol(parsed: dict | None) -> str:
    return "recorded" if parsed is not None else "not recorded"


def _dataset(name: str) -> str:
    return name.removeprefix(MODEL_PREFIX)
