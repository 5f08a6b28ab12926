"""Time this project's training step against the PyTorch DCGAN example's loop, alternating, on the anime sample.

Both loops train the project's Generator and Discriminator (64×64, ngf = ndf = 64,
nz = 100) with Adam(lr 2e-4, betas (0.5, 0.999)) at batch 128, from the same
initial weights:

(a) reference, built as pytorch/examples dcgan/main.py builds it: an ImageFolder
    of the JPEGs, decoded on every pass by a DataLoader (shuffle, 2 workers,
    Resize, CenterCrop, ToTensor, Normalize(0.5)), fp32, separate D forwards and
    backwards for real and fake. The project's D returns logits, so the loss is
    BCEWithLogitsLoss where the example has Sigmoid plus BCELoss.
(b) project: the images decoded once into a packed uint8 tensor, batches drawn by
    index from a randperm, ``to_model_range``, ``train_step`` with the precision
    that ``choose_precision("auto", "auto", ...)`` picks.

The loops run in alternating timed blocks (a, b, a, b, ...). Each block starts
with untimed warm-up steps, so the reference's worker start-up and first batch
are not timed, and its workers are shut down before the next (b) block.

FLOPs of one step are counted with torch.utils.flop_counter.FlopCounterMode. The
peak is the best rate of a large matmul in the same dtype, timed in the same run.

Usage: python benchmarks/train_speed.py [--rounds 3] [--steps 12] [--images 0] [--device cpu|cuda] [--short]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dcgan.data.image_decode import prepare  # noqa: E402
from dcgan.models import ModelConfig, build_models  # noqa: E402
from dcgan.training.loop import to_model_range  # noqa: E402
from dcgan.training.precision import DTYPE_NAMES, choose_precision, make_optimizers, prepare_models  # noqa: E402
from dcgan.training.train_step import train_step  # noqa: E402
from machine import cpu_name  # noqa: E402

IMAGE_SIZE = 64
LR, BETA1 = 2e-4, 0.5
WORKERS = 2


@dataclass(frozen=True)
class Settings:
    batch: int
    ngf: int
    ndf: int
    nz: int
    rounds: int
    steps: int
    warmup: int
    images: int
    matmul_size: int


FULL = Settings(batch=128, ngf=64, ndf=64, nz=100, rounds=3, steps=16, warmup=1, images=0, matmul_size=2048)
# --short: a check that both loops run, sized for CI on a shared 2-core machine.
SHORT = Settings(batch=16, ngf=16, ndf=16, nz=100, rounds=2, steps=2, warmup=1, images=48, matmul_size=256)


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def extract_jpegs(archive: Path, count: int, folder: Path) -> list[bytes]:
    """Write the first ``count`` JPEGs of the archive (0 for all) into ``folder`` and return their bytes in order."""
    payloads = []
    with zipfile.ZipFile(archive) as source:
        names = [n for n in source.namelist() if n.lower().endswith((".jpg", ".jpeg"))]
        for name in names[:count] if count else names:
            payload = source.read(name)
            (folder / Path(name).name).write_bytes(payload)
            payloads.append(payload)
    return payloads


# (a) The reference, as pytorch/examples dcgan/main.py builds it.


def reference_loader(root: Path, batch: int) -> torch.utils.data.DataLoader:
    import torchvision.datasets as dset
    import torchvision.transforms as transforms

    dataset = dset.ImageFolder(
        root=str(root),
        transform=transforms.Compose([
            transforms.Resize(IMAGE_SIZE),
            transforms.CenterCrop(IMAGE_SIZE),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ]),
    )
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=WORKERS)


class ReferenceLoop:
    """The example's update, one batch per call, with BCEWithLogitsLoss on the project's logits."""

    def __init__(self, model_cfg: ModelConfig, loader: torch.utils.data.DataLoader, device: torch.device) -> None:
        torch.manual_seed(0)
        self.net_g, self.net_d = build_models(model_cfg)
        self.net_g.to(device)
        self.net_d.to(device)
        self.opt_g = torch.optim.Adam(self.net_g.parameters(), lr=LR, betas=(BETA1, 0.999))
        self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=LR, betas=(BETA1, 0.999))
        self.criterion = torch.nn.BCEWithLogitsLoss()
        self.loader = loader
        self.device = device
        self.nz = model_cfg.nz
        self.batches: Iterator | None = None

    def start(self) -> None:
        """Start a pass over the loader: shuffled order, fresh workers."""
        self.batches = iter(self.loader)

    def stop(self) -> None:
        """Shut the workers down so that they take no CPU from the other loop."""
        self.batches = None

    def step(self) -> int:
        data = next(self.batches, None)
        if data is None:  # end of a pass: start the next epoch, as the example's outer loop does
            self.start()
            data = next(self.batches)

        # Update D on real, then on fake, one backward each.
        self.net_d.zero_grad()
        real = data[0].to(self.device)
        size = real.size(0)
        label = torch.full((size,), 1.0, dtype=real.dtype, device=self.device)
        output = self.net_d(real)
        err_d_real = self.criterion(output, label)
        err_d_real.backward()
        d_x = output.sigmoid().mean().item()
        noise = torch.randn(size, self.nz, 1, 1, device=self.device)
        fake = self.net_g(noise)
        label.fill_(0.0)
        output = self.net_d(fake.detach())
        err_d_fake = self.criterion(output, label)
        err_d_fake.backward()
        d_g_z1 = output.sigmoid().mean().item()
        err_d = err_d_real + err_d_fake
        self.opt_d.step()

        # Update G with the non-saturating loss.
        self.net_g.zero_grad()
        label.fill_(1.0)
        output = self.net_d(fake)
        err_g = self.criterion(output, label)
        err_g.backward()
        d_g_z2 = output.sigmoid().mean().item()
        self.opt_g.step()

        # The example prints these each step; reading them here keeps its per-step host syncs.
        self.last = (err_d.item(), err_g.item(), d_x, d_g_z1, d_g_z2)
        return size


# (b) This project's step.


class ProjectLoop:
    """Packed uint8 images in memory, batches by index, ``train_step`` in the chosen precision."""

    def __init__(self, model_cfg: ModelConfig, images: torch.Tensor, batch: int, device: torch.device) -> None:
        started = time.perf_counter()
        self.precision = choose_precision("auto", "auto", False, device, model_cfg, batch)
        self.choice_s = time.perf_counter() - started
        torch.manual_seed(0)
        generator, discriminator = build_models(model_cfg)
        self.generator, self.discriminator = prepare_models(generator.to(device), discriminator.to(device),
                                                            self.precision)
        self.opt_g, self.opt_d = make_optimizers(self.generator, self.discriminator, LR, BETA1, device)
        self.images = images.to(device)
        self.batch = batch
        self.device = device
        self.nz = model_cfg.nz
        self.order = torch.randperm(images.shape[0], device=device)
        self.position = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def step(self) -> int:
        if self.position + self.batch > self.images.shape[0]:
            self.order = torch.randperm(self.images.shape[0], device=self.device)
            self.position = 0
        real = to_model_range(self.images[self.order[self.position : self.position + self.batch]])
        self.position += self.batch
        if self.precision.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        z = torch.randn(self.batch, self.nz, 1, 1, device=self.device)
        train_step(self.generator, self.discriminator, self.opt_g, self.opt_d, real, z,
                   autocast_dtype=self.precision.autocast_dtype)
        return self.batch


# Measurement.


def timed_block(loop, steps: int, warmup: int, device: torch.device) -> tuple[int, float]:
    """Run ``warmup`` untimed steps, then ``steps`` timed ones; return images and seconds of the timed part."""
    loop.start()
    for _ in range(warmup):
        loop.step()
    synchronize(device)
    started = time.perf_counter()
    images = sum(loop.step() for _ in range(steps))
    synchronize(device)
    elapsed = time.perf_counter() - started
    loop.stop()
    return images, elapsed


def count_step_flops(loop) -> int:
    """Return the FLOPs of one step of ``loop``, as FlopCounterMode counts them (matmuls and convolutions)."""
    loop.start()
    with FlopCounterMode(display=False) as counter:
        loop.step()
    loop.stop()
    return counter.get_total_flops()


def matmul_peak(dtype: torch.dtype, size: int, device: torch.device, seconds: float = 2.0) -> float:
    """Return the best FLOP/s of a ``size``×``size`` matmul in ``dtype`` over about ``seconds``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)
    synchronize(device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        synchronize(device)
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - started))
    return best


def describe_machine(device: torch.device) -> str:
    line = (f"machine: {cpu_name()}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")
    if device.type == "cuda":
        line += f", GPU {torch.cuda.get_device_name(device)}"
    return line


def run(args: argparse.Namespace, settings: Settings, device: torch.device) -> None:
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(describe_machine(device))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}, load average at start: {load_average()}")
    model_cfg = ModelConfig(settings.nz, settings.ngf, settings.ndf, IMAGE_SIZE, 3)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "faces" / "images"
        folder.mkdir(parents=True)
        payloads = extract_jpegs(args.archive, settings.images, folder)
        if len(payloads) < settings.batch:
            sys.exit(f"{args.archive} holds {len(payloads)} JPEGs, fewer than one batch of {settings.batch}")
        started = time.perf_counter()
        packed = torch.from_numpy(np.stack([prepare(p, IMAGE_SIZE, 3) for p in payloads]))
        print(f"data: {len(payloads)} JPEGs from {args.archive}, {IMAGE_SIZE}x{IMAGE_SIZE}, batch {settings.batch}, "
              f"ngf {settings.ngf}, ndf {settings.ndf}, nz {settings.nz}; (b) decoded them once in "
              f"{time.perf_counter() - started:.1f} s (not timed below)")

        reference = ReferenceLoop(model_cfg, reference_loader(folder.parent, settings.batch), device)
        project = ProjectLoop(model_cfg, packed, settings.batch, device)
        measured = ", ".join(f"{name} {rate:.1f}" for name, rate in project.precision.measured)
        print(f"precision chosen for (b): {project.precision.name}, in {project.choice_s:.1f} s"
              + (f" (images/s at the measuring batch: {measured})" if measured else ""))

        loops = {"reference": reference, "project": project}
        flops = {name: count_step_flops(loop) for name, loop in loops.items()}
        rates: dict[str, list[float]] = {name: [] for name in loops}
        seconds = dict.fromkeys(loops, 0.0)
        for round_index in range(settings.rounds):
            for name, loop in loops.items():
                images, elapsed = timed_block(loop, settings.steps, settings.warmup, device)
                rates[name].append(images / elapsed)
                seconds[name] += elapsed
                print(f"round {round_index + 1} {name:<9}: {settings.steps} steps, {images} images in "
                      f"{elapsed:6.1f} s, {images / elapsed:7.1f} images/s", flush=True)

    peak_dtype = project.precision.autocast_dtype or torch.float32
    # A GPU needs larger matrices than a CPU to reach its peak.
    matmul_size = settings.matmul_size * 4 if device.type == "cuda" else settings.matmul_size
    peaks = {"reference": matmul_peak(torch.float32, matmul_size, device)}
    if peak_dtype == torch.float32:
        peaks["project"] = peaks["reference"]
    else:
        peaks["project"] = matmul_peak(peak_dtype, matmul_size, device)
    labels = {"reference": "(a) reference, fp32", "project": f"(b) project, {project.precision.name}"}
    peak_names = {"reference": "fp32", "project": DTYPE_NAMES.get(project.precision.autocast_dtype, "fp32")}

    print(f"\nload average at end: {load_average()}")
    print(f"{'loop':<34}{'images/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>10}{'peak GFLOP/s':>16}{'share':>8}")
    medians = {}
    for name in loops:
        medians[name] = statistics.median(rates[name])
        achieved = flops[name] * medians[name] / settings.batch
        peak = peaks[name]
        print(f"{labels[name]:<34}{medians[name]:>10.1f}{flops[name] / 1e9:>12.1f}{achieved / 1e9:>10.1f}"
              f"{peak / 1e9:>10.1f} {peak_names[name]:<5}{achieved / peak:>8.1%}")
    print(f"ratio (b/a): {medians['project'] / medians['reference']:.2f}x "
          f"(medians of {settings.rounds} rounds of {settings.steps} steps)")
    if settings is SHORT:
        print("--short checks that both loops run; its figures are too small to be a measurement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help=f"timed blocks per loop (default {FULL.rounds})")
    parser.add_argument("--steps", type=int, help=f"timed steps per block (default {FULL.steps})")
    parser.add_argument("--images", type=int,
                        help="JPEGs taken from the start of the archive; 0 takes all (default 0)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--short", action="store_true",
                        help="a check that both loops run: small networks, batch 16, a few steps on 48 images")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding animefaces/archive.zip (default ../shared/data)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    settings = SHORT if args.short else FULL
    overrides = {key: getattr(args, key) for key in ("rounds", "steps", "images") if getattr(args, key) is not None}
    settings = Settings(**{**settings.__dict__, **overrides})
    if settings.rounds < 1 or settings.steps < 1 or settings.images < 0:
        sys.exit("--rounds and --steps must be at least 1, and --images at least 0")
    args.archive = (args.data / "animefaces" / "archive.zip").resolve()
    if not args.archive.is_file():
        sys.exit(f"anime sample not found: {args.archive}; pass --data with the folder holding animefaces/archive.zip")
    # NOTE: --device cuda has not run on a GPU yet.
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda was requested but no CUDA device is available; use --device cpu")
    run(args, settings, torch.device(args.device))


if __name__ == "__main__":
    main()
