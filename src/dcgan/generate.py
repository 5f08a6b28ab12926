"""Sample images from a generator in the MLflow model registry, with no training data or checkpoint."""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan.errors import UserError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
ACCEPTED_URIS = "models:/NAME@ALIAS or models:/NAME/VERSION"
ACCEPTED_OUT = "a .png file for one grid, or a directory (a path ending in / or an existing directory) for one PNG per image"
# Images per forward pass, so memory stays bounded for large -n. Eval-mode BatchNorm makes each
# image independent of the others in its batch.
BATCH_SIZE = 256

_ALIAS_URI = re.compile(r"models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)")
_VERSION_URI = re.compile(r"models:/(?P<name>[^/@]+)/(?P<version>[0-9]+)")


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered model version, and the alias that named it when the URI used one."""

    name: str
    version: str
    alias: str | None

    @property
    def uri(self) -> str:
        """URI of this exact version, so a concurrent alias move cannot change what gets loaded."""
        return f"models:/{self.name}/{self.version}"

    def describe(self) -> str:
        alias = f" (alias {self.alias})" if self.alias else ""
        return f"{self.name} version {self.version}{alias}"


@dataclass(frozen=True)
class OutputTarget:
    """Output location: one grid PNG, or a directory with one PNG per image."""

    path: Path
    is_directory: bool


def parse_output(out: str) -> OutputTarget:
    """Decide from ``--out`` whether to write one grid or one PNG per image, and check where it goes.

    The folder that receives the grid file or the image directory must exist already,
    so a typo in a path fails before the model loads instead of creating folders.
    """
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {out}: {path} exists and is not a directory. Give {ACCEPTED_OUT}.")
        target = OutputTarget(path, is_directory=True)
    elif Path(out).suffix.lower() == ".png":
        target = OutputTarget(Path(out), is_directory=False)
    else:
        raise UserError(f"--out {out}: unsupported output type. Give {ACCEPTED_OUT}.")
    parent = target.path.resolve().parent
    if not parent.is_dir():
        raise UserError(f"--out {out}: the folder {parent} does not exist or is not a directory; create it first")
    return target


def select_device(requested: str) -> torch.device:
    if requested not in DEVICES:
        raise UserError(f"--device {requested}: unknown device. Choose one of {', '.join(DEVICES)}.")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: PyTorch finds no CUDA device on this machine, so use --device cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """Split a registry URI into (name, version, alias). Exactly one of version and alias is set."""
    alias_match = _ALIAS_URI.fullmatch(uri)
    if alias_match:
        return alias_match["name"], None, alias_match["alias"]
    version_match = _VERSION_URI.fullmatch(uri)
    if version_match:
        return version_match["name"], version_match["version"], None
    raise UserError(f"--model {uri}: unsupported model URI. Give {ACCEPTED_URIS}, e.g. models:/dcgan-mnist@champion.")


def _register_hint(name: str) -> str:
    dataset = name.removeprefix("dcgan-")
    if dataset != name:
        return f"dvc repro register@{dataset}"
    return "dvc repro register@<dataset>"


def _versions_of(client, name: str) -> list[str]:
    versions = client.search_model_versions(f"name='{name}'")
    return sorted((str(v.version) for v in versions), key=int)


def resolve_model(client, uri: str, tracking_uri: str) -> ModelVersionRef:
    """Find the registered model version that ``uri`` names, or raise UserError listing what exists."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    try:
        registered = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = sorted(m.name for m in client.search_registered_models())
        known = f"Registered models: {', '.join(names)}." if names else "No model is registered there yet."
        raise UserError(
            f"--model {uri}: registered model {name} not found in {tracking_uri}. {known} "
            f"Register it with `{_register_hint(name)}`, or set MLFLOW_TRACKING_URI to the store that has it."
        ) from None

    if alias is not None:
        try:
            found = client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
            aliases = ", ".join(f"{a} (version {v})" for a, v in sorted(registered.aliases.items()))
            known = f"Its aliases: {aliases}." if aliases else f"{name} has no aliases."
            raise UserError(
                f"--model {uri}: alias {alias} not found on {name}. {known} Use models:/{name}/VERSION "
                f"with a registered version ({', '.join(_versions_of(client, name))}), or an alias listed here."
            ) from None
        return ModelVersionRef(name, str(found.version), alias)

    try:
        found = client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise UserError(
            f"--model {uri}: version {version} of {name} not found. "
            f"Registered versions: {', '.join(_versions_of(client, name)) or 'none'}."
        ) from None
    return ModelVersionRef(name, str(found.version), None)


def load_generator(ref: ModelVersionRef, device: torch.device) -> tuple[torch.nn.Module, int]:
    """Load the registered generator onto ``device`` and return it with its latent width nz."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        generator = mlflow.pytorch.load_model(ref.uri, map_location="cpu")
        signature = mlflow.models.get_model_info(ref.uri).signature
    except (MlflowException, OSError) as exc:
        raise UserError(f"failed to load {ref.describe()} from {ref.uri}: {exc}") from None
    if not isinstance(generator, torch.nn.Module):
        raise UserError(f"{ref.describe()} is a {type(generator).__name__}, not a PyTorch generator")

    nz = _latent_width(signature, generator)
    if nz is None:
        raise UserError(
            f"{ref.describe()} records no latent width, because its signature has no (-1, nz) tensor input and the "
            "model has no cfg.nz. Register the generator again with `dvc repro register@<dataset>`."
        )

    try:
        generator.eval()
    except NotImplementedError:
        # MLflow 3 saves PyTorch models with torch.export by default ("pt2"), and the loaded
        # GraphModule rejects eval(). Its BatchNorm layers already run in eval mode, because
        # log_generator calls eval() before exporting and the graph records that mode.
        pass
    # NOTE: .to(device) on an exported (pt2) graph has not been run on CUDA.
    return generator.to(device), nz


def _latent_width(signature, generator: torch.nn.Module) -> int | None:
    if signature is not None and signature.inputs is not None:
        shape = getattr(signature.inputs.inputs[0], "shape", None)
        if shape is not None and len(shape) == 2 and shape[1] > 0:
            return int(shape[1])
    cfg = getattr(generator, "cfg", None)
    return getattr(cfg, "nz", None)


def sample(generator: torch.nn.Module, nz: int, n: int, seed: int, device: torch.device) -> torch.Tensor:
    """Generate ``n`` images in [-1, 1] on the CPU.

    All latent vectors come from one CPU generator seeded with ``seed`` before they move to the
    device, so the latents do not depend on the device or on ``BATCH_SIZE``.
    """
    # NOTE: repeatable bytes are tested on CPU only. On CUDA, cuDNN is switched to deterministic
    # algorithms below, but no run on a GPU has compared two outputs.
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, nz, generator=rng)
    batches = []
    with torch.no_grad():
        for start in range(0, n, BATCH_SIZE):
            batches.append(generator(z[start : start + BATCH_SIZE].to(device)).float().cpu())
    return torch.cat(batches)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Map one (C, H, W) image in [-1, 1] to (H, W, C) bytes, rounding as torchvision's save_image does."""
    scaled = (image.clamp(-1, 1) + 1) / 2
    return scaled.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8)


def save_images(fake: torch.Tensor, directory: Path) -> list[Path]:
    """Write each image as DIRECTORY/0000.png, 0001.png and so on. Grayscale images stay single-channel."""
    from PIL import Image

    directory.mkdir(parents=True, exist_ok=True)
    width = max(4, len(str(len(fake) - 1)))
    paths = []
    for index, image in enumerate(fake):
        pixels = to_uint8(image).numpy()
        if pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        path = directory / f"{index:0{width}d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def write_output(fake: torch.Tensor, target: OutputTarget) -> str:
    """Write the images to ``target`` and return the summary line's phrase for where they went."""
    from dcgan.evaluation.images import save_sample_grid

    if target.is_directory:
        paths = save_images(fake, target.path)
        return f"to {target.path}{os.sep} as {paths[0].name} to {paths[-1].name}"
    columns = math.ceil(math.sqrt(len(fake)))
    rows = math.ceil(len(fake) / columns)
    save_sample_grid(fake, target.path, nrow=columns)
    return f"to {target.path} as a grid of {rows} rows by {columns} columns"


def generate(model_uri: str, n: int, out: str, seed: int | None = None, device: str = "auto") -> str:
    """Sample ``n`` images from a registered generator, write them to ``out`` and return the summary line.

    Without ``seed`` a random one is drawn and reported, so any run can be repeated.
    """
    if n < 1:
        raise UserError(f"-n {n}: the number of images must be at least 1")
    if seed is not None and not 0 <= seed < 2**64:
        raise UserError(f"--seed {seed}: the seed must be an integer from 0 to 2**64 - 1")
    target = parse_output(out)
    torch_device = select_device(device)
    # Check the URI's form before the slow MLflow import.
    parse_model_uri(model_uri)

    import mlflow

    from dcgan.tracking import mlflow_store

    if not os.environ.get("MLFLOW_TRACKING_URI") and not mlflow_store.DATABASE.is_file():
        # configure() would create an empty store here, so stop before it does.
        raise UserError(
            f"no MLflow store at {mlflow_store.DATABASE.resolve()}. Run from the project root, set "
            "MLFLOW_TRACKING_URI to your store, or register a model with `dvc repro register@<dataset>`."
        )
    tracking_uri = mlflow_store.configure()
    ref = resolve_model(mlflow.MlflowClient(), model_uri, tracking_uri)
    log.info("loading %s from %s onto %s", ref.describe(), tracking_uri, torch_device)
    generator, nz = load_generator(ref, torch_device)

    if seed is None:
        seed = torch.Generator().seed()
    fake = sample(generator, nz, n, seed, torch_device)
    try:
        where = write_output(fake, target)
    except OSError as exc:
        raise UserError(f"--out {out}: writing the images failed: {exc}") from None
    return f"wrote {n} images from {ref.describe()} {where} (seed {seed}, device {torch_device.type})"
