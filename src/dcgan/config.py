"""Typed, frozen configuration for every stage, read from params.yaml.

Each stage reads only its own section. Unknown keys, missing keys and values
of the wrong type or outside the allowed set raise ConfigError at start, with
the dotted key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dcgan.errors import ConfigError

DATASETS = ("mnist", "anime")
PARAMS_FILE = Path("params.yaml")


@dataclass(frozen=True)
class MnistData:
    source: Literal["torchvision", "dir", "bundled"]
    path: str | None
    split: Literal["train", "test"]
    mirrors: list[str]
    limit: int | None
    image_size: Literal[32, 64, 128]
    drop_duplicates: bool


@dataclass(frozen=True)
class AnimeData:
    source: Literal["kaggle", "archive"]
    path: str | None
    slug: str
    limit: int | None
    image_size: Literal[32, 64, 128]
    min_images: int
    min_side: int
    drop_duplicates: bool


@dataclass(frozen=True)
class IngestConfig:
    """Ingest settings: download retries and time-outs, the per-dataset lock, decode workers, the bad-file share."""

    timeout_s: float
    retries: int
    retry_delay_s: float
    lock_timeout_s: float
    workers: int
    max_bad_fraction: float


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    max_images: int | None
    nz: int
    ngf: int
    ndf: int
    lr: float
    beta1: float
    seed: int
    log_every_images: int
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["auto", "fp32", "bf16"]
    channels_last: Literal["auto", "on", "off"]
    compile: bool
    checkpoint_every_images: int
    d_wins_steps: int
    launcher: Literal["single", "torchrun"]
    nproc_per_node: int


@dataclass(frozen=True)
class EvaluateConfig:
    """Scoring settings: FID and KID use the same real and generated images."""

    real_count: int
    generated_count: int
    seed: int
    kid_subsets: int
    kid_subset_size: int


@dataclass(frozen=True)
class RegisterConfig:
    alias: str
    metric: Literal["fid", "kid_mean"]


@dataclass(frozen=True)
class Params:
    datasets: list[Literal["mnist", "anime"]]
    data: dict[str, Any] = field(repr=False)
    ingest: IngestConfig
    train: dict[str, TrainConfig]
    evaluate: dict[str, EvaluateConfig]
    register: RegisterConfig

    def data_for(self, dataset: str) -> MnistData | AnimeData:
        return self.data[dataset]


DATA_TYPES = {"mnist": MnistData, "anime": AnimeData}


def _shown(value: Any) -> str:
    """Write a value as params.yaml spells it: null, true, 'text', 3."""
    if value is None or isinstance(value, bool):
        return yaml.safe_dump(value).split("\n")[0]
    return repr(value)


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    if annotation is str:
        return "a string"
    if annotation is bool:
        return "true or false"
    if origin is list:
        (inner,) = typing.get_args(annotation)
        if typing.get_origin(inner) is Literal:
            return "a list of values from " + ", ".join(repr(v) for v in typing.get_args(inner))
        return f"a list of {_type_name(inner).removeprefix('a ').removeprefix('an ')}s"
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(names) + " or null"
    return getattr(annotation, "__name__", str(annotation))


def _convert(key: str, value: Any, annotation: Any) -> Any:
    """Check one value against its annotation; raise ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        try:
            return _convert(key, value, inner)
        except ConfigError:
            pass
    elif origin is Literal:
        allowed = typing.get_args(annotation)
        if isinstance(value, bool) and {"on", "off"} <= set(allowed):
            # YAML 1.1 reads unquoted on and off as booleans.
            return "on" if value else "off"
        if value in allowed and type(value) is type(allowed[allowed.index(value)]):
            return value
    elif origin is list:
        if isinstance(value, list):
            (inner,) = typing.get_args(annotation)
            return [_convert(f"{key}[{i}]", item, inner) for i, item in enumerate(value)]
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation in (int, str, bool):
        if isinstance(value, annotation) and not (annotation is int and isinstance(value, bool)):
            return value
    raise ConfigError(
        f"params.yaml: {key} = {_shown(value)} is invalid: expected {_type_name(annotation)}"
    )


def build(cls: type, key: str, section: Any) -> Any:
    """Build dataclass ``cls`` from the mapping at dotted ``key``."""
    if not isinstance(section, dict):
        raise ConfigError(f"params.yaml: {key} = {section!r} is invalid: expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(section) - set(names))
    if unknown:
        raise ConfigError(
            f"params.yaml: unknown key {key}.{unknown[0]}; allowed keys are {', '.join(names)}"
        )
    values = {}
    for name in names:
        if name not in section:
            raise ConfigError(
                f"params.yaml: missing key {key}.{name} ({_type_name(hints[name])})"
            )
        values[name] = _convert(f"{key}.{name}", section[name], hints[name])
    return cls(**values)


def _per_dataset(cls: type, key: str, section: Any, datasets: list[str]) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise ConfigError(f"params.yaml: {key} = {section!r} is invalid: expected a mapping")
    for name in section:
        if name not in DATASETS:
            raise ConfigError(
                f"params.yaml: unknown dataset {key}.{name}; allowed datasets are {', '.join(DATASETS)}"
            )
    result = {}
    for dataset in datasets:
        if dataset not in section:
            raise ConfigError(f"params.yaml: missing key {key}.{dataset}")
        target = cls if not isinstance(cls, dict) else cls[dataset]
        result[dataset] = build(target, f"{key}.{dataset}", section[dataset])
    return result


def _check_sources(data: dict[str, Any]) -> None:
    for dataset, cfg in data.items():
        needs_path = cfg.source in ("dir", "archive")
        if needs_path and not cfg.path:
            raise ConfigError(
                f"params.yaml: data.{dataset}.path = {_shown(cfg.path)} is invalid: "
                f"source {cfg.source!r} reads its input from that path; set data.{dataset}.path to "
                + ("the folder of *-ubyte.gz files" if cfg.source == "dir" else "the Kaggle zip or a folder of images")
            )


def _check_positive(params: Params) -> None:
    checks = []
    for dataset, cfg in params.train.items():
        for name in ("epochs", "batch_size", "nz", "ngf", "ndf", "log_every_images", "checkpoint_every_images",
                     "d_wins_steps", "nproc_per_node"):
            checks.append((f"train.{dataset}.{name}", getattr(cfg, name)))
        checks.append((f"train.{dataset}.lr", cfg.lr))
    for dataset, cfg in params.evaluate.items():
        for name in ("real_count", "generated_count", "kid_subsets", "kid_subset_size"):
            checks.append((f"evaluate.{dataset}.{name}", getattr(cfg, name)))
    ingest = params.ingest
    checks += [("ingest.timeout_s", ingest.timeout_s), ("ingest.lock_timeout_s", ingest.lock_timeout_s)]
    for key, value in [("ingest.retries", ingest.retries), ("ingest.retry_delay_s", ingest.retry_delay_s),
                       ("ingest.workers", ingest.workers)]:
        if value < 0:
            raise ConfigError(f"params.yaml: {key} = {value!r} is invalid: expected 0 or more (workers: 0 uses every core)")
    if not 0 <= ingest.max_bad_fraction < 1:
        raise ConfigError(
            f"params.yaml: ingest.max_bad_fraction = {ingest.max_bad_fraction!r} is invalid: "
            "expected a share from 0 up to (not including) 1, such as 0.01"
        )
    for key, value in checks:
        if value <= 0:
            raise ConfigError(f"params.yaml: {key} = {value!r} is invalid: expected a value above 0")
    for dataset, cfg in params.evaluate.items():
        # KID subsets need 2 images at least, and take half the smaller count when it is below kid_subset_size.
        for name, minimum in (("real_count", 4), ("generated_count", 4), ("kid_subset_size", 2)):
            value = getattr(cfg, name)
            if value < minimum:
                raise ConfigError(
                    f"params.yaml: evaluate.{dataset}.{name} = {value!r} is invalid: expected at least {minimum}, "
                    "because KID needs subsets of 2 images or more"
                )


def parse(raw: Any) -> Params:
    """Validate a parsed params.yaml mapping and return the typed Params."""
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml: expected a mapping at the top level")
    top = ["datasets", "data", "ingest", "train", "evaluate", "register"]
    for key in raw:
        if key not in top:
            raise ConfigError(f"params.yaml: unknown key {key}; allowed keys are {', '.join(top)}")
    for key in top:
        if key not in raw:
            raise ConfigError(f"params.yaml: missing key {key}")
    datasets = _convert("datasets", raw["datasets"], list[Literal["mnist", "anime"]])
    data = _per_dataset(DATA_TYPES, "data", raw["data"], datasets)
    params = Params(
        datasets=datasets,
        data=data,
        ingest=build(IngestConfig, "ingest", raw["ingest"]),
        train=_per_dataset(TrainConfig, "train", raw["train"], datasets),
        evaluate=_per_dataset(EvaluateConfig, "evaluate", raw["evaluate"], datasets),
        register=build(RegisterConfig, "register", raw["register"]),
    )
    _check_sources(data)
    _check_positive(params)
    return params


def load(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"params file not found: {path}; run from the project root") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return parse(raw)


def require_dataset(params: Params, dataset: str) -> None:
    """Reject a dataset name that params.yaml does not list."""
    if dataset not in DATASETS:
        raise ConfigError(
            f"unknown dataset {dataset!r}; allowed datasets are {', '.join(DATASETS)}"
        )
    if dataset not in params.datasets:
        raise ConfigError(
            f"dataset {dataset!r} is not in params.yaml datasets {params.datasets}; add it there"
        )
