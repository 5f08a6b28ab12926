"""Register the generator as dcgan-<dataset>; dcgan.tracking.promotion moves its champion alias."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

import dcgan

log = logging.getLogger(__name__)


def model_name(dataset: str) -> str:
    return f"dcgan-{dataset}"


def log_generator(generator: torch.nn.Module, dataset: str, version_tags: dict[str, str]) -> tuple[str, str]:
    """Log the generator with a signature and input example, register it and tag the version; return (name, version).

    ``version_tags`` carries the scores and their protocol (see dcgan.evaluation.protocol.version_tags).
    """
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
    for key, value in version_tags.items():
        client.set_model_version_tag(name, version, key, value)
    return name, version
