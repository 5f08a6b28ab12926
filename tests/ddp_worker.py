"""A training process for the two-process test, started by torchrun.

Usage: torchrun --nproc_per_node=2 tests/ddp_worker.py ROOT STOP_AT_STEP CONFIG_JSON

It trains on the digits already packed under ROOT/data, resumes rank 0's
checkpoint when one is left, and checks after every step that all ranks hold
identical weights. With STOP_AT_STEP above 0, every rank sends itself SIGTERM
after that step. Each rank writes ROOT/rank<N>.json with what it saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import torch

from dcgan.config import TrainConfig
from dcgan.paths import DatasetPaths
from dcgan.training import distributed, resume
from dcgan.training.loop import TrainingStopped, train


def weights_digest(*modules: torch.nn.Module) -> str:
    flat = torch.cat([p.detach().flatten() for module in modules for p in module.parameters()])
    return hashlib.sha256(flat.numpy().tobytes()).hexdigest()


def main() -> None:
    root, stop_at, cfg = Path(sys.argv[1]), int(sys.argv[2]), TrainConfig(**json.loads(sys.argv[3]))
    context, device_name = distributed.setup("cpu")
    paths = DatasetPaths("mnist", root=root / "data")
    expected = resume.fingerprint(cfg, 32, paths)
    state = context.broadcast(resume.find_resumable(paths, expected) if context.is_main else None)
    steps, differing = [], []

    def check(step: int, generator: torch.nn.Module, discriminator: torch.nn.Module) -> None:
        digests = context.gather(weights_digest(generator, discriminator))
        steps.append(step)
        if len(set(digests)) != 1:
            differing.append(step)
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        train("mnist", cfg, 32, paths, resume_state=state, fingerprint=expected, context=context,
              device_name=device_name, on_step=check)
        outcome = "finished"
    except TrainingStopped:
        outcome = "stopped"
    record = {"outcome": outcome, "steps": steps, "differing": differing, "resumed": state is not None,
              "world_size": context.world_size}
    (root / f"rank{context.rank}.json").write_text(json.dumps(record))
    distributed.teardown(context)


if __name__ == "__main__":
    main()
