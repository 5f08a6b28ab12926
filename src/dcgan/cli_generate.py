"""The ``dcgan generate`` subcommand, which samples images from a registered generator."""

from __future__ import annotations

import argparse

# A copy of dcgan.generate.DEVICES, so that building the parser does not import torch.
DEVICES = ("auto", "cpu", "cuda")


def cmd_generate(args: argparse.Namespace) -> None:
    from dcgan.generate import generate

    print(generate(args.model, args.n, args.out, seed=args.seed, device=args.device))


def add_parser(sub) -> None:
    """Add ``generate`` to the ``dcgan`` subcommands."""
    cmd = sub.add_parser(
        "generate",
        help="sample images from a generator in the MLflow model registry",
        description=(
            "Sample images from a registered generator. Only the MLflow store is read "
            "($MLFLOW_TRACKING_URI, or mlruns/mlflow.db in the working directory); "
            "no training data or checkpoint is needed."
        ),
    )
    cmd.add_argument(
        "--model", required=True, metavar="URI",
        help="registered model to sample: models:/NAME@ALIAS or models:/NAME/VERSION, "
             "e.g. models:/dcgan-anime@champion",
    )
    cmd.add_argument("-n", type=int, default=64, help="number of images to generate (default: 64)")
    cmd.add_argument(
        "--out", required=True, metavar="PATH",
        help="output: FILE.png writes one grid with ceil(sqrt(n)) columns, and DIR/ or an existing directory "
             "writes one PNG per image, named 0000.png, 0001.png and so on",
    )
    cmd.add_argument(
        "--seed", type=int, default=None,
        help="seed for the latent vectors, so a repeat with the same seed, model and device writes identical "
             "files (default: a random seed, printed with the result)",
    )
    cmd.add_argument(
        "--device", choices=DEVICES, default="auto",
        help="device that runs the generator (default: auto, which picks cuda when PyTorch finds a CUDA device)",
    )
    cmd.set_defaults(func=cmd_generate)
