"""Time Inception feature extraction for FID and KID: the usual torchmetrics use against this project's.

Reference: torchmetrics' FrechetInceptionDistance and KernelInceptionDistance,
each given the Inception network as its feature extractor (the documented
use), fed uint8 images in batches of 100. Each metric runs the network on
every image, so an image costs two passes.

This project: one pass of the same network in batches sized to the device
(dcgan.evaluation.inception.batch_size_for), with FID and KID computed from
those features. The images and the scores are the same for both.

Rounds alternate between the two, and the script prints images/s for each and
their ratio, plus the pure extraction speed at both batch sizes.

Usage: python benchmarks/feature_speed.py [--count 200] [--rounds 3] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from machine import cpu_name

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dcgan.data.mnist_idx import verify_split  # noqa: E402
from dcgan.evaluation import inception  # noqa: E402
from dcgan.evaluation.fid import PrecomputedFeatures  # noqa: E402

REFERENCE_BATCH = 100
DEVICE = torch.device("cpu")


def reference_pass(extractor, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Score with both torchmetrics metrics extracting their own features; return the seconds taken."""
    start = time.perf_counter()
    fid = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    kid = KernelInceptionDistance(feature=extractor, subsets=10, subset_size=len(real), reset_real_features=False)
    for metric in (fid, kid):
        for images, is_real in ((real, True), (fake, False)):
            for batch in images.split(REFERENCE_BATCH):
                metric.update(batch, real=is_real)
    return time.perf_counter() - start


def project_pass(extractor, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Extract each image once in device-sized batches and feed the features to both metrics."""
    start = time.perf_counter()
    real_features = inception.extract_features(extractor, [real], len(real), "real", DEVICE)
    fake_features = inception.extract_features(extractor, [fake], len(fake), "generated", DEVICE)
    identity = PrecomputedFeatures(inception.NUM_FEATURES)
    fid = FrechetInceptionDistance(feature=identity, reset_real_features=False)
    kid = KernelInceptionDistance(feature=identity, subsets=10, subset_size=len(real), reset_real_features=False)
    for metric in (fid, kid):
        metric.update(real_features, real=True)
        metric.update(fake_features, real=False)
    return time.perf_counter() - start


def extraction_only(extractor, images: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()
    for chunk in images.split(batch):
        extractor(chunk)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="images per side (real and generated), default 200")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder with mnist/")
    args = parser.parse_args()

    digits, _ = verify_split(args.data / "mnist", "test")
    images = torch.from_numpy(digits[: 2 * args.count].copy())[:, None]
    real, fake = images[: args.count], images[args.count :]
    extractor = inception.InceptionFeatures()
    project_batch = inception.batch_size_for(DEVICE)
    extractor(real[:project_batch])  # warm-up

    times: dict[str, list[float]] = {"reference": [], "project": [], "batch_ref": [], "batch_project": []}
    for _ in range(args.rounds):
        times["reference"].append(reference_pass(extractor, real, fake))
        times["project"].append(project_pass(extractor, real, fake))
        times["batch_ref"].append(extraction_only(extractor, real, REFERENCE_BATCH))
        times["batch_project"].append(extraction_only(extractor, real, project_batch))
    median = {name: statistics.median(values) for name, values in times.items()}

    scored = 2 * args.count
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, {platform.python_version()}")
    print(f"{args.count} real and {args.count} generated MNIST digits, {args.rounds} rounds, medians")
    print(f"FID+KID, reference (two passes, batch {REFERENCE_BATCH}): {scored / median['reference']:.2f} images/s")
    print(f"FID+KID, this project (one pass, batch {project_batch}): {scored / median['project']:.2f} images/s")
    print(f"speed-up: {median['reference'] / median['project']:.2f}x")
    print(f"extraction only, batch {REFERENCE_BATCH}: {args.count / median['batch_ref']:.2f} images/s")
    print(f"extraction only, batch {project_batch}: {args.count / median['batch_project']:.2f} images/s")


if __name__ == "__main__":
    main()
