"""The ``dcgan`` command: one subcommand per DVC stage after ingest."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from dcgan import config
from dcgan.cli_errors import run_main
from dcgan.errors import UserError
from dcgan.paths import DatasetPaths

log = logging.getLogger("dcgan")


def _params(args: argparse.Namespace) -> config.Params:
    params = config.load(Path(args.params))
    config.require_dataset(params, args.dataset)
    return params


def cmd_preprocess(args: argparse.Namespace) -> None:
    from dcgan.data.preprocess import preprocess

    params = _params(args)
    data = params.data_for(args.dataset)
    split = getattr(data, "split", "train")
    preprocess(args.dataset, data.image_size, split, workers=params.ingest.workers)


def _flat_params(params: config.Params, dataset: str) -> dict:
    flat = {f"data.{k}": v for k, v in asdict(params.data_for(dataset)).items()}
    flat.update({f"train.{k}": v for k, v in asdict(params.train[dataset]).items()})
    flat.update({f"ingest.{k}": v for k, v in asdict(params.ingest).items()})
    flat.update({f"evaluate.{k}": v for k, v in asdict(params.evaluate[dataset]).items()})
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flat.items()}


def _log_data_report(mlflow, paths: DatasetPaths) -> None:
    """Attach the ingest report, the quarantine list and the prepared-data stats to the run."""
    for path in (paths.validation_report, paths.validation / "quarantine.csv", paths.stats):
        if path.is_file():
            mlflow.log_artifact(str(path), "data_validation")
    if paths.validation_report.is_file():
        report = json.loads(paths.validation_report.read_text())
        mlflow.log_metrics(
            {
                "data_files_seen": report["files_seen"],
                "data_accepted": report["accepted"],
                "data_quarantined": sum(report["quarantined"].values()),
                "data_duplicate_copies": report["duplicates"]["copies"],
            }
        )


def _relaunch_with_torchrun(args: argparse.Namespace, nproc: int) -> None:
    """Replace this process with torchrun, which starts one training process per device.

    Replacing it, rather than waiting on a child, lets SIGTERM and Ctrl-C reach torchrun,
    which passes them to the training processes so they save a checkpoint.
    """
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "dcgan.cli", "train", args.dataset, "--params", args.params,
    ]
    log.info("launching %s", " ".join(command))
    for handler in logging.getLogger("dcgan").handlers:
        handler.flush()
    os.execv(sys.executable, command)


def _check_batch_split(dataset: str, batch_size: int, processes: int) -> None:
    """Reject a global batch that does not split evenly, before any output is touched."""
    if batch_size % processes:
        raise config.ConfigError(
            f"params.yaml: train.{dataset}.batch_size = {batch_size} does not split evenly over {processes} "
            "processes; choose a multiple of the process count"
        )


def cmd_train(args: argparse.Namespace) -> None:
    import mlflow

    from dcgan.tracking import mlflow_store
    from dcgan.training import distributed, resume
    from dcgan.training.loop import train

    params = _params(args)
    cfg = params.train[args.dataset]
    if cfg.launcher == "torchrun" and "LOCAL_RANK" not in os.environ:
        _check_batch_split(args.dataset, cfg.batch_size, cfg.nproc_per_node)
        _relaunch_with_torchrun(args, cfg.nproc_per_node)
    _check_batch_split(args.dataset, cfg.batch_size, int(os.environ.get("WORLD_SIZE", "1")))
    paths = DatasetPaths(args.dataset)
    image_size = params.data_for(args.dataset).image_size
    context, device_name = distributed.setup(cfg.device)
    try:
        expected = resume.fingerprint(cfg, image_size, paths)
        state = resume.find_resumable(paths, expected) if context.is_main else None
        state = context.broadcast(state)
        if state is None and context.is_main:
            resume.clear_outputs(paths)
        context.barrier()
        if not context.is_main:
            train(args.dataset, cfg, image_size, paths, resume_state=state, fingerprint=expected, context=context,
                  device_name=device_name)
            return
        uri = mlflow_store.configure()
        experiment = mlflow.set_experiment(mlflow_store.experiment_name(args.dataset)).experiment_id
        # A resumed run continues its MLflow run, so metrics keep one history.
        run_id = mlflow_store.read_run_id(paths.run_info) if state is not None and paths.run_info.is_file() else None
        tags = {"dataset": args.dataset, "stage": "train"}
        with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else experiment, tags=tags) as run:
            if run_id is None:
                mlflow_store.write_run_info(paths.run_info, run.info.run_id, uri)
                mlflow.log_params(_flat_params(params, args.dataset))
                mlflow.log_artifact(args.params, "config")
                _log_data_report(mlflow, paths)
            else:
                # A metric with a step keeps every resume point of the run.
                mlflow.log_metric("resumed_at_images", state["cur_nimg"], step=state["cur_nimg"])
            summary = train(args.dataset, cfg, image_size, paths, mlflow, resume_state=state, fingerprint=expected,
                            context=context, device_name=device_name)
            mlflow.log_artifact(str(paths.losses), "losses")
            mlflow.set_tag("device", summary["device"])
        log.info("MLflow run %s in %s", run.info.run_id, uri)
    finally:
        distributed.teardown(context)


def cmd_fid_stats(args: argparse.Namespace) -> None:
    from dcgan.evaluation.evaluate import compute_real_stats

    params = _params(args)
    compute_real_stats(args.dataset, params.evaluate[args.dataset], DatasetPaths(args.dataset))


def cmd_evaluate(args: argparse.Namespace) -> None:
    import mlflow

    from dcgan.evaluation.evaluate import evaluate
    from dcgan.tracking import mlflow_store

    params = _params(args)
    paths = DatasetPaths(args.dataset)
    mlflow_store.configure()
    with mlflow.start_run(run_id=mlflow_store.read_run_id(paths.run_info)):
        evaluate(args.dataset, params.evaluate[args.dataset], paths, mlflow)


def cmd_register(args: argparse.Namespace) -> None:
    import getpass

    import mlflow

    from dcgan.evaluation.protocol import version_tags
    from dcgan.tracking import mlflow_store
    from dcgan.tracking.promotion import auto_promote
    from dcgan.tracking.registry import log_generator
    from dcgan.training.checkpoint import load_generator

    params = _params(args)
    paths = DatasetPaths(args.dataset)
    if not paths.metrics.is_file():
        raise UserError(f"scores not found: {paths.metrics}; run the evaluate stage first")
    scores = json.loads(paths.metrics.read_text())
    metric = params.register.metric
    mlflow_store.configure()
    with mlflow.start_run(run_id=mlflow_store.read_run_id(paths.run_info)):
        name, version = log_generator(load_generator(paths.checkpoint), args.dataset, version_tags(scores, metric))
        decision = auto_promote(
            mlflow.MlflowClient(), name, version, actor=f"{getpass.getuser()} (dcgan register)",
            alias=params.register.alias,
        )
        mlflow.set_tag(params.register.alias, str(decision.promoted).lower())
    record = {
        "model": name,
        "version": version,
        "metric": metric,
        "score": scores.get(metric),
        "protocol_key": scores["protocol_key"],
        "alias": params.register.alias,
        **asdict(decision),
    }
    paths.registration.parent.mkdir(parents=True, exist_ok=True)
    paths.registration.write_text(json.dumps(record, indent=2))
    state = f"now {params.register.alias}" if decision.promoted else f"not {params.register.alias}"
    score = "none" if scores.get(metric) is None else f"{scores[metric]:.6g}"
    print(f"registered {name} version {version} ({metric} {score}), {state}: {decision.reason}")


COMMANDS = {
    "preprocess": (cmd_preprocess, "decode, convert and resize raw images into data/prepared"),
    "train": (cmd_train, "train the DCGAN, logging to MLflow"),
    "fid-stats": (cmd_fid_stats, "cache Inception statistics of real images"),
    "evaluate": (cmd_evaluate, "score the generator (FID and KID), write the sample grid, latent walks and GIF"),
    "register": (cmd_register, "register the generator in MLflow; move the champion alias on a better score"),
}


def build_parser() -> argparse.ArgumentParser:
    from dcgan import cli_generate, cli_promote

    parser = argparse.ArgumentParser(
        prog="dcgan", description="DCGAN pipeline stages (run by dvc repro) and the registered generators."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("dataset", help=f"dataset to process: {', '.join(config.DATASETS)}")
        cmd.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
        cmd.set_defaults(func=func, stage=True)
    cli_generate.add_parser(sub)
    cli_promote.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    def checked() -> None:
        # Reject bad params before the stage imports torch and MLflow.
        if getattr(args, "stage", False):
            _params(args)
        args.func(args)

    run_main(checked)


if __name__ == "__main__":
    main()
