"""The ``dcgan promote`` and ``dcgan rollback`` commands: move a registered generator's champion alias by hand."""

from __future__ import annotations

import argparse
import getpass

from dcgan import config
from dcgan.errors import UserError

DEFAULT_ROLLBACK_REASON = "rollback"


def add_parsers(sub) -> None:
    """Add the promote and rollback subcommands to the ``dcgan`` subparsers ``sub``."""
    datasets = ", ".join(config.DATASETS)
    alias_help = "registry alias to move (default: champion, the pipeline's register.alias in params.yaml)"

    promote = sub.add_parser(
        "promote",
        help="make a registered version the champion by hand",
        description="Point the champion alias (or --alias) of dcgan-DATASET at VERSION. The version that held it "
        "gets the 'previous' alias, and VERSION gets promoted_by, promoted_reason, promoted_at and promoted_from tags.",
    )
    promote.add_argument("dataset", metavar="DATASET", help=f"dataset whose model dcgan-DATASET changes: {datasets}")
    promote.add_argument("version", metavar="VERSION", help="model version number that becomes champion")
    promote.add_argument("--reason", required=True, help="why the version becomes champion; stored in promoted_reason")
    promote.add_argument("--alias", default="champion", help=alias_help)
    promote.set_defaults(func=cmd_promote)

    rollback = sub.add_parser(
        "rollback",
        help="give the champion alias back to the version marked 'previous'",
        description="Point the champion alias (or --alias) of dcgan-DATASET back at the version with the 'previous' "
        "alias and remove that alias, so a second rollback fails instead of flipping back.",
    )
    rollback.add_argument("dataset", metavar="DATASET", help=f"dataset whose model dcgan-DATASET changes: {datasets}")
    rollback.add_argument(
        "--reason",
        default=DEFAULT_ROLLBACK_REASON,
        help=f"why the champion rolls back; stored in rolled_back_reason and restored_reason "
        f"(default: {DEFAULT_ROLLBACK_REASON})",
    )
    rollback.add_argument("--alias", default="champion", help=alias_help)
    rollback.set_defaults(func=cmd_rollback)


def cmd_promote(args: argparse.Namespace) -> None:
    import mlflow

    from dcgan.tracking import mlflow_store, promotion

    name = _model_name(args.dataset)
    mlflow_store.configure()
    client = mlflow.MlflowClient()
    move = promotion.promote(client, name, args.version, reason=args.reason, actor=_actor(), alias=args.alias)
    if not move.moved:
        print(f"{name}: version {move.version} is already {move.alias}; nothing changed")
        return

    if move.replaced_version is None:
        print(f"{name}: {move.alias} set to version {move.version} (no version had it before), "
              f"by {move.actor}: {move.reason}")
        return
    mark = promotion.previous_alias(move.alias)
    print(f"{name}: {move.alias} moved from version {move.replaced_version} to version {move.version} "
          f"(version {move.replaced_version} is now {mark}), by {move.actor}: {move.reason}")
    print(_compare_scores(client, name, move.version, move.replaced_version))


def cmd_rollback(args: argparse.Namespace) -> None:
    import mlflow

    from dcgan.tracking import mlflow_store, promotion

    name = _model_name(args.dataset)
    mlflow_store.configure()
    client = mlflow.MlflowClient()
    result = promotion.rollback(client, name, actor=_actor(), reason=args.reason, alias=args.alias)
    mark = promotion.previous_alias(result.alias)
    print(f"{name}: {result.alias} rolled back from version {result.replaced_version or 'none'} to version "
          f"{result.restored_version}, by {result.actor}: {result.reason} (the '{mark}' alias is removed)")


def _compare_scores(client, name: str, version: str, other: str) -> str:
    """Describe both versions' scores and whether they were measured under the same protocol."""
    from dcgan.tracking import promotion

    tags = client.get_model_version(name, version).tags
    other_tags = client.get_model_version(name, other).tags
    mismatch = promotion.protocol_mismatch(tags, other_tags)
    if mismatch:
        differing = "; ".join(mismatch)
        verdict = f"protocols differ (version {version} vs {other}: {differing}), so the scores are not comparable"
    else:
        verdict = "protocols match"
    return f"scores: {_describe_score(version, tags)}, {_describe_score(other, other_tags)}; {verdict}"


def _describe_score(version: str, tags: dict[str, str]) -> str:
    from dcgan.tracking import promotion

    metric = tags.get("score_metric", "score")
    score = promotion.version_score(tags)
    value = f"{score:.6g}" if score is not None else "missing"
    return f"version {version} {metric} {value}"


def _model_name(dataset: str) -> str:
    if dataset not in config.DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(config.DATASETS)}")
    from dcgan.tracking.promotion import MODEL_PREFIX

    return f"{MODEL_PREFIX}{dataset}"


def _actor() -> str:
    """Return the login name recorded as promoted_by or rolled_back_by."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # getpass raises OSError (Python 3.13+) or KeyError (older) when no user name is found.
        raise UserError("could not determine the user name to record; set the USER environment variable") from None
