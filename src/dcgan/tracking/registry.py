"""Register the generator as dcgan-<dataset> and move the champion alias only on a better FID."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import dcgan

log = logging.getLogger(__name__)


def model_name(dataset: str) -> str:
    return f"dcgan-{dataset}"


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    previous_version: str | None
    previous_fid: float | None
    reason: str


def champion_fid(client, name: str, alias: str) -> tuple[str | None, float | None]:
    """Return (version, FID) of the model version with ``alias``, or (None, None)."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, None
    fid = version.tags.get("fid")
    return str(version.version), (float(fid) if fid is not None else None)


def promote_if_better(client, name: str, version: str, fid: float, alias: str) -> Promotion:
    """Point ``alias`` at ``version`` when its FID is lower than the current champion's, or no version has the alias."""
    previous_version, previous_fid = champion_fid(client, name, alias)
    if previous_version is not None and previous_fid is not None and not fid < previous_fid:
        reason = f"FID {fid:.3f} does not beat {alias} v{previous_version} at {previous_fid:.3f}"
        log.info("%s v%s stays unpromoted: %s", name, version, reason)
        return Promotion(False, previous_version, previous_fid, reason)
    client.set_registered_model_alias(name, alias, version)
    if previous_version is None:
        reason = f"no version had the {alias} alias before"
    else:
        reason = f"FID {fid:.3f} beats v{previous_version}'s {previous_fid:.3f}"
    log.info("%s v%s is now %s: %s", name, version, alias, reason)
    return Promotion(True, previous_version, previous_fid, reason)


def log_generator(generator: torch.nn.Module, dataset: str, fid: float) -> tuple[str, str]:
    """Log the generator with a signature and input example and register it; return (name, version)."""
    import mlflow
    from mlflow.models import infer_signature

    generator = generator.cpu().eval()
    example = np.random.default_rng(0).standard_normal((2, generator.cfg.nz)).astype(np.float32)
    with torch.no_grad():
        output = generator(torch.from_numpy(example)).numpy()
    name = model_name(dataset)
    info = mlflow.pytorch.log_model(
        generator,
        name="generator",
        signature=infer_signature(example, output),
        input_example=example,
        registered_model_name=name,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
        # The pickled generator refers to dcgan.models, so the package travels with the model.
        code_paths=[str(Path(dcgan.__file__).parent)],
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(name, version, "fid", f"{fid:.6f}")
    return name, version
