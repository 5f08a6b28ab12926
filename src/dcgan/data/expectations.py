"""Great Expectations suite over the image manifest, with JSON report and data docs."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dcgan.data import ingest_report
from dcgan.data.manifest import ACCEPTED, QUARANTINED, SKIPPED
from dcgan.errors import DataValidationError

log = logging.getLogger(__name__)

STATUSES = (ACCEPTED, SKIPPED, QUARANTINED)


@dataclass(frozen=True)
class ManifestRules:
    """Constraints on one dataset's manifest: accepted count, modes, sides, labels, bad-file share."""

    dataset: str
    min_rows: int
    max_rows: int | None
    modes: tuple[str, ...]
    min_side: int
    max_side: int
    labels: tuple[int, int] | None
    max_bad_fraction: float
    unique_content: bool


def file_expectations(rules: ManifestRules) -> list:
    """Build the expectations over every manifest row, one per file, junk included."""
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    decoded = {"row_condition": Column("decoded") == True}  # noqa: E712, a GX condition, not a comparison
    return [
        gx.expectations.ExpectColumnValuesToBeUnique(column="name"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES)),
        # The bad-file share: quarantined files over the image files decoded.
        gx.expectations.ExpectColumnValuesToBeInSet(
            column="status", value_set=["accepted", "skipped"], mostly=1 - rules.max_bad_fraction, **decoded
        ),
        gx.expectations.ExpectColumnValueLengthsToEqual(column="sha256", value=64, **decoded),
    ]


def accepted_expectations(rules: ManifestRules) -> list:
    """Build the expectations over the accepted rows, which are what preprocessing reads."""
    import great_expectations as gx

    items = [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=rules.max_rows),
        gx.expectations.ExpectColumnValuesToBeInSet(column="mode", value_set=list(rules.modes)),
        gx.expectations.ExpectColumnValuesToBeBetween(column="width", min_value=rules.min_side, max_value=rules.max_side),
        gx.expectations.ExpectColumnValuesToBeBetween(column="height", min_value=rules.min_side, max_value=rules.max_side),
        gx.expectations.ExpectColumnValuesToBeBetween(column="bytes", min_value=1),
    ]
    if rules.unique_content:
        items.append(gx.expectations.ExpectColumnValuesToBeUnique(column="sha256"))
    if rules.labels is not None:
        low, high = rules.labels
        items += [
            gx.expectations.ExpectColumnValuesToNotBeNull(column="label"),
            gx.expectations.ExpectColumnValuesToBeBetween(column="label", min_value=low, max_value=high),
        ]
    return items


def _describe_failure(result: dict) -> str:
    config = result["expectation_config"]
    kwargs = {
        k: v for k, v in config["kwargs"].items() if k not in ("batch_id", "row_condition", "condition_parser")
    }
    details = result.get("result", {})
    observed = details.get("observed_value")
    unexpected = details.get("partial_unexpected_list") or []
    text = f"{config['type']}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    if observed is not None:
        text += f" observed {observed!r}"
    if unexpected:
        text += f", {details.get('unexpected_count')} unexpected such as {unexpected[:3]!r}"
    return text


def _is_bad_share_check(result: dict) -> bool:
    kwargs = result["expectation_config"]["kwargs"]
    return kwargs.get("column") == "status" and kwargs.get("mostly") is not None


def _run_suite(context, name: str, frame: pd.DataFrame, expectations: list) -> dict:
    import great_expectations as gx

    batch_definition = (
        context.data_sources.add_pandas(name).add_dataframe_asset(name).add_batch_definition_whole_dataframe("all_rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format="SUMMARY",
        )
    )
    # GX mutates frames it validates; hand it a copy.
    result = checkpoint.run(batch_parameters={"dataframe": frame.copy()})
    return next(iter(result.run_results.values())).to_json_dict()


def validate_manifest(frame: pd.DataFrame, rules: ManifestRules, out_dir: Path) -> dict:
    """Count, run both suites, write report.json, quarantine.csv and data docs under ``out_dir``; raise on failure."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_root = out_dir / "gx"
    shutil.rmtree(gx_root, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(out_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    summary = ingest_report.summarize(frame, rules.max_bad_fraction)
    quarantine_path = ingest_report.write_quarantine(frame, out_dir / "quarantine.csv")
    accepted = frame[frame["status"] == ACCEPTED]
    validations = {
        f"{rules.dataset}_files": _run_suite(context, f"{rules.dataset}_files", frame, file_expectations(rules)),
        f"{rules.dataset}_accepted": _run_suite(
            context, f"{rules.dataset}_accepted", accepted, accepted_expectations(rules)
        ),
    }
    failures = [
        _describe_failure(result)
        for validation in validations.values()
        for result in validation["results"]
        if not result["success"] and not _is_bad_share_check(result)
    ]
    if summary["bad_fraction"] > rules.max_bad_fraction:
        # This line replaces the GX wording of the same check, which report.json keeps.
        failures.insert(0, ingest_report.describe_bad_share(summary, quarantine_path))
    success = all(validation["success"] for validation in validations.values())
    report = {
        "dataset": rules.dataset,
        "success": success,
        **summary,
        "failed_expectations": failures,
        "quarantine_list": str(quarantine_path),
        "data_docs": str(gx_root / "uncommitted" / "data_docs" / "local_site" / "index.html"),
        "expectations": {
            name: {"success": v["success"], "statistics": v["statistics"], "results": v["results"]}
            for name, v in validations.items()
        },
    }
    report_path = out_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2, default=str))
    if not success:
        raise DataValidationError(
            f"{rules.dataset} manifest failed {len(failures)} check(s): {' | '.join(failures)}; "
            f"see {report_path} and {report['data_docs']}"
        )
    log.info(
        "%s: %d files seen, %d accepted, skipped %s, quarantined %s",
        rules.dataset, summary["files_seen"], summary["accepted"], summary["skipped"] or "none",
        summary["quarantined"] or "none",
    )
    if summary["quarantined"]:
        log.warning("%s: the quarantined files and their reasons are in %s", rules.dataset, quarantine_path)
    return report
