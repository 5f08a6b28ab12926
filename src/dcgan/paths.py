"""Input and output locations of each stage, per dataset, relative to the project root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHANNELS = {"mnist": 1, "anime": 3}


@dataclass(frozen=True)
class DatasetPaths:
    """Output locations of one dataset's stages; each folder is one DVC output."""

    dataset: str
    root: Path = Path("data")

    @property
    def raw(self) -> Path:
        return self.root / "raw" / self.dataset

    @property
    def validation(self) -> Path:
        return self.root / "validation" / self.dataset

    @property
    def manifest(self) -> Path:
        return self.validation / "manifest.csv"

    @property
    def validation_report(self) -> Path:
        return self.validation / "report.json"

    @property
    def prepared(self) -> Path:
        return self.root / "prepared" / self.dataset

    @property
    def images(self) -> Path:
        return self.prepared / "images.npy"

    @property
    def labels(self) -> Path:
        return self.prepared / "labels.npy"

    @property
    def stats(self) -> Path:
        return self.prepared / "stats.json"

    @property
    def train(self) -> Path:
        return self.root / "train" / self.dataset

    @property
    def checkpoint(self) -> Path:
        return self.train / "checkpoint.pt"

    @property
    def grids(self) -> Path:
        return self.train / "grids"

    @property
    def run_info(self) -> Path:
        return self.train / "mlflow_run.json"

    @property
    def losses(self) -> Path:
        return self.root / "plots" / self.dataset / "losses.csv"

    @property
    def fid_stats(self) -> Path:
        return self.root / "fid_stats" / self.dataset / "real_stats.pt"

    @property
    def evaluation(self) -> Path:
        return self.root / "eval" / self.dataset

    @property
    def metrics(self) -> Path:
        return self.root / "metrics" / self.dataset / "metrics.json"

    @property
    def sample_grid(self) -> Path:
        return self.evaluation / "samples.png"

    @property
    def interpolation_grid(self) -> Path:
        return self.evaluation / "interpolation.png"

    @property
    def progress_gif(self) -> Path:
        return self.evaluation / "training.gif"

    @property
    def registration(self) -> Path:
        return self.root / "registry" / self.dataset / "registration.json"
