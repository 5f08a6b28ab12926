"""The protocol stored with every score, and the model-version tags built from it.

Two scores are compared only when every protocol field matches: the counts,
the real image set, the resize, the weights and the KID settings. The
protocol key is a digest of all fields, so equal keys mean equal protocols.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

# Scores a registry decision can rank on; lower is better for both.
SCORE_METRICS = ("fid", "kid_mean")


@dataclass(frozen=True)
class ScoreProtocol:
    """Measurement settings of one FID and KID pair."""

    feature_extractor: str
    weights_sha256: str
    resize: str
    input_scaling: str
    statistics_dtype: str
    generated_count: int
    real_count: int
    real_set_sha256: str
    real_stats_cached: bool
    kid_subsets: int
    kid_subset_size: int
    kid_kernel: str
    library: str

    def to_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        return protocol_key(self.to_dict())


def protocol_key(protocol: dict) -> str:
    """Return a 16-hex digest of the protocol's fields, independent of their order."""
    canonical = json.dumps(protocol, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def differences(mine: dict, theirs: dict) -> list[str]:
    """List the protocol fields that differ, as 'field: mine vs theirs'."""
    names = sorted(set(mine) | set(theirs))
    return [f"{name}: {mine.get(name)} vs {theirs.get(name)}" for name in names if mine.get(name) != theirs.get(name)]


def version_tags(scores: dict, metric: str) -> dict[str, str]:
    """Build the model-version tags from a metrics.json dict: every score, the ranking metric and the protocol."""
    tags = {
        "score_metric": metric,
        "kid_mean": f"{scores['kid_mean']:.8f}",
        "kid_std": f"{scores['kid_std']:.8f}",
        "protocol": json.dumps(scores["protocol"], sort_keys=True),
        "protocol_key": scores["protocol_key"],
    }
    if scores.get("fid") is not None:
        tags["fid"] = f"{scores['fid']:.6f}"
    if scores.get(metric) is not None:
        tags["score"] = f"{scores[metric]:.8f}"
    return tags
