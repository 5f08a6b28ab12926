"""Great Expectations suite over the image manifest, with JSON report and data docs."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dcgan.errors import DataValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManifestRules:
    """Expected row count, modes, side lengths and label range of one dataset's manifest."""

    dataset: str
    min_rows: int
    max_rows: int | None
    modes: tuple[str, ...]
    min_side: int
    max_side: int
    labels: tuple[int, int] | None


def _expectations(rules: ManifestRules) -> list:
    import great_expectations as gx
    from great_expectations.expectations.row_conditions import Column

    # Mode and size mean nothing for a file that did not decode. The decodable
    # expectation reports those files, so the others look only at decoded rows.
    decoded = {"row_condition": Column("decodable") == True}  # noqa: E712, a GX condition, not a comparison
    items = [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=rules.min_rows, max_value=rules.max_rows),
        gx.expectations.ExpectColumnValuesToBeUnique(column="name"),
        gx.expectations.ExpectColumnValuesToBeInSet(column="decodable", value_set=[True]),
        gx.expectations.ExpectColumnValuesToBeInSet(column="mode", value_set=list(rules.modes), **decoded),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="width", min_value=rules.min_side, max_value=rules.max_side, **decoded
        ),
        gx.expectations.ExpectColumnValuesToBeBetween(
            column="height", min_value=rules.min_side, max_value=rules.max_side, **decoded
        ),
        gx.expectations.ExpectColumnValuesToBeBetween(column="bytes", min_value=1),
        gx.expectations.ExpectColumnValueLengthsToEqual(column="sha256", value=64),
    ]
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


def validate_manifest(frame: pd.DataFrame, rules: ManifestRules, out_dir: Path) -> dict:
    """Run the suite; write report.json and data docs under ``out_dir``; raise on failure."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx_root = out_dir / "gx"
    shutil.rmtree(gx_root, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(out_dir))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("manifest")
        .add_dataframe_asset(f"{rules.dataset}_images")
        .add_batch_definition_whole_dataframe("all_rows")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=f"{rules.dataset}_manifest"))
    for expectation in _expectations(rules):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{rules.dataset}_manifest", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{rules.dataset}_ingest",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format="SUMMARY",
        )
    )
    # GX mutates frames it validates; hand it a copy with plain dtypes.
    result = checkpoint.run(batch_parameters={"dataframe": frame.copy()})
    validation = next(iter(result.run_results.values())).to_json_dict()
    failures = [_describe_failure(r) for r in validation["results"] if not r["success"]]
    report = {
        "dataset": rules.dataset,
        "success": bool(result.success),
        "rows": len(frame),
        "failed_expectations": failures,
        "statistics": validation["statistics"],
        "data_docs": str(gx_root / "uncommitted" / "data_docs" / "local_site" / "index.html"),
        "results": validation["results"],
    }
    report_path = out_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2, default=str))
    if not result.success:
        raise DataValidationError(
            f"{rules.dataset} manifest failed {len(failures)} expectation(s): {' | '.join(failures)}; "
            f"see {report_path} and {report['data_docs']}"
        )
    log.info("%s manifest passed %d expectations", rules.dataset, len(validation["results"]))
    return report
