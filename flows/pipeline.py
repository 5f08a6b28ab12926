"""Prefect flow that runs the DVC pipeline: every stage or chosen targets, with parameter overrides.

Run once with ``python flows/pipeline.py run [TARGET ...] [-S key=value ...]``, or serve it from
this process with ``python flows/pipeline.py serve``. prefect.yaml deploys the same flow to a
process work pool. Run either command from the project root, where dvc.yaml is.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dcgan.cli_errors import quiet_user_errors, run_main
from dcgan.errors import UserError

# One lock per DVC repository, beside DVC's own lock (.dvc/tmp/lock). DVC's lock fails a second
# `dvc` at once, so pipeline runs take this lock first and wait on it instead.
PIPELINE_LOCK = Path(".dvc") / "tmp" / "pipeline-flow.lock"
LOCK_LOG_INTERVAL_S = 60.0
# How long DVC and its stage command get to stop after SIGTERM before SIGKILL.
DVC_STOP_GRACE_S = 30.0
SERVE_DEPLOYMENT_NAME = "local"

RunLogger = logging.Logger | logging.LoggerAdapter


class DvcRunError(UserError):
    """A DVC run that exited with a non-zero status. The message contains DVC's own error lines."""


def format_override(key: str, value: Any) -> str:
    """Format one parameter override as a ``dvc exp run -S`` value: strings as given, others as JSON."""
    text = value if isinstance(value, str) else json.dumps(value)
    return f"{key}={text}"


def dvc_command(targets: list[str] | None, set_params: dict[str, Any] | None) -> list[str]:
    """Build the ``dvc exp run`` arguments, without the executable."""
    command = ["exp", "run"]
    for key, value in (set_params or {}).items():
        command += ["-S", format_override(key, value)]
    return command + list(targets or [])


def dvc_environment() -> dict[str, str]:
    """Return the environment for DVC and its stages.

    The stages call ``python``, ``dcgan`` and ``dvc`` from PATH, so this interpreter's folder goes
    first, and a worker started from the virtual environment's ``prefect`` needs no activated shell.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Stage output reaches the run logs as it is printed, not when a pipe buffer fills.
    env["PYTHONUNBUFFERED"] = "1"
    # The ingest stage is a Prefect flow of its own, so it must not take this flow run's id.
    env.pop("PREFECT__FLOW_RUN_ID", None)
    return env


@contextlib.contextmanager
def pipeline_lock(logger: RunLogger, timeout_s: float | None) -> Iterator[Path]:
    """Hold the repository's pipeline lock, waiting for another pipeline run to release it.

    A file lock rather than a Prefect concurrency limit, because the OS releases it when its process
    dies, and it also serialises runs started without a Prefect server (``run``, ``serve``).
    ``timeout_s`` None waits until the lock is free.
    """
    if not Path(".dvc").is_dir():
        raise UserError(f"{Path.cwd()} is not a DVC repository (no .dvc folder): run the pipeline from the project root")
    PIPELINE_LOCK.parent.mkdir(exist_ok=True)
    lock = FileLock(PIPELINE_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        wait_for_lock(lock, logger, timeout_s)
    try:
        yield PIPELINE_LOCK
    finally:
        lock.release()


def wait_for_lock(lock: FileLock, logger: RunLogger, timeout_s: float | None) -> None:
    limit = "until it is free" if timeout_s is None else f"for up to {timeout_s:g} s"
    logger.info("waiting for lock %s, held by another pipeline run in %s, %s", PIPELINE_LOCK, Path.cwd(), limit)
    started = time.monotonic()
    while True:
        waited = time.monotonic() - started
        if timeout_s is not None and waited >= timeout_s:
            raise UserError(
                f"timed out after {timeout_s:g} s waiting for lock {PIPELINE_LOCK}, held by another pipeline run. "
                "Wait for it to finish, or raise lock_timeout_s"
            )
        step = LOCK_LOG_INTERVAL_S if timeout_s is None else min(LOCK_LOG_INTERVAL_S, timeout_s - waited)
        try:
            lock.acquire(timeout=step)
        except Timeout:
            logger.info("still waiting for lock %s after %.0f s", PIPELINE_LOCK, time.monotonic() - started)
            continue
        logger.info("acquired lock %s after waiting %.1f s", PIPELINE_LOCK, time.monotonic() - started)
        return


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop DVC and its stage command: SIGTERM to the group, SIGKILL after DVC_STOP_GRACE_S."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=DVC_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def dvc_line_level(line: str) -> int:
    """Return ERROR or WARNING for a line with DVC's prefix of that name, and INFO for any other line."""
    if line.startswith("ERROR:"):
        return logging.ERROR
    if line.startswith("WARNING:"):
        return logging.WARNING
    return logging.INFO


def last_redraw(raw: bytes) -> str:
    """Decode one output line. A progress bar redrawn with carriage returns keeps only its last state."""
    text = raw.decode(errors="replace").rstrip("\r\n")
    return text.split("\r")[-1].rstrip()


@dataclasses.dataclass
class DvcOutput:
    """Parts of DVC's output that the run keeps: the ERROR block, the lines before it and the experiment's name."""

    error_lines: list[str] = dataclasses.field(default_factory=list)
    before_error: collections.deque[str] = dataclasses.field(default_factory=lambda: collections.deque(maxlen=5))
    experiment: str | None = None

    def add(self, line: str) -> None:
        if line.startswith("ERROR:") or self.error_lines:
            self.error_lines.append(line)
        else:
            self.before_error.append(line)
        if match := re.match(r"Ran experiment\(s\): (\S+)", line):
            self.experiment = match.group(1)


def error_summary(output: DvcOutput) -> str:
    """Return DVC's ERROR lines, with the stage's last output line before them when there is one."""
    errors = []
    for line in output.error_lines:
        # DVC follows an unexpected error with a support link, which the summary leaves out.
        if line.startswith("Having any troubles?"):
            break
        errors.append(line)
    summary = "\n".join(line for line in errors if line.strip())
    if "Empty git repo" in summary:
        summary += "\n`dvc exp run` needs a Git commit: commit dvc.yaml, params.yaml and .dvc first"
    last_output = next((line for line in reversed(output.before_error) if line.strip()), None)
    if last_output is not None:
        summary += f"\nlast output before the error: {last_output}"
    return summary


def stream_dvc(arguments: list[str], logger: RunLogger, output: DvcOutput) -> int:
    """Run DVC, log each line of its output as it comes and return DVC's exit status."""
    # A session of its own, so that stopping this run can stop the stage command too.
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dvc_environment(),
        start_new_session=True,
    )
    try:
        for raw in process.stdout:
            line = last_redraw(raw)
            if line:
                logger.log(dvc_line_level(line), "%s", line)
            output.add(line)
        return process.wait()
    except BaseException:
        # A cancelled or interrupted flow run must not leave DVC holding its repository lock.
        # NOTE: SIGKILL of the flow run process skips this, and DVC then runs on in its own session.
        logger.warning("stopping DVC (pid %d) because this run was interrupted", process.pid)
        stop_process_group(process)
        raise
    finally:
        process.stdout.close()


@task(name="dvc-exp-run", cache_policy=NO_CACHE)
def run_dvc(arguments: list[str], lock_timeout_s: float | None = None) -> str | None:
    """Run DVC under the pipeline lock and return the experiment's name.

    Raises DvcRunError with DVC's error lines when DVC exits non-zero.
    """
    logger = get_run_logger()
    command_text = " ".join(["dvc", *arguments])
    output = DvcOutput()
    with pipeline_lock(logger, lock_timeout_s):
        logger.info("DVC started: %s", command_text)
        started = time.monotonic()
        returncode = stream_dvc(arguments, logger, output)
        # Logged under the lock, so that this line comes before the next run's "DVC started".
        logger.info("DVC exited with code %d after %.1f s", returncode, time.monotonic() - started)
    if returncode != 0:
        raise DvcRunError(f"{command_text} failed with exit code {returncode}:\n{error_summary(output)}")
    return output.experiment


@flow(name="pipeline")
def pipeline(
    targets: list[str] | None = None,
    set_params: dict[str, Any] | None = None,
    lock_timeout_s: float | None = None,
) -> str | None:
    """Run the DVC pipeline with ``dvc exp run``: every stage, or ``targets`` such as ``register@mnist``.

    ``set_params`` maps params.yaml keys to values (``{"train.mnist.epochs": 5}``) and becomes
    ``dvc exp run -S key=value``. ``dvc exp run`` rather than ``dvc repro``, because it is DVC's
    own way to override parameters: it writes the values into params.yaml, runs the stages as
    ``dvc repro`` would and records the run as a DVC experiment (``dvc exp show``). The values stay
    in params.yaml afterwards, as with any ``dvc exp run``, and it needs a Git repository with a
    commit. Runs in one project wait for each other on a file lock under .dvc/tmp/, for up to
    ``lock_timeout_s`` seconds (None waits until it is free). Returns the experiment's name.
    """
    # DVC's own lines report a failed DVC run, so the Python traceback is hidden (DCGAN_TRACEBACK=1 shows it).
    quiet_user_errors()
    return run_dvc(dvc_command(targets, set_params), lock_timeout_s)


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise UserError(f"invalid -S value {pair!r}: expected KEY=VALUE, such as train.mnist.epochs=5")
        overrides[key] = value
    return overrides


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    serve = argparse.ArgumentParser(
        prog="python flows/pipeline.py serve",
        description="Serve the pipeline flow from this process: flow runs of its deployment start here.",
    )
    serve.add_argument(
        "--name", default=SERVE_DEPLOYMENT_NAME,
        help=f"name of the deployment that `prefect deployment run pipeline/NAME` starts (default: {SERVE_DEPLOYMENT_NAME})",
    )
    run = argparse.ArgumentParser(prog="python flows/pipeline.py run", description="Run the DVC pipeline once, now.")
    run.add_argument("targets", nargs="*", metavar="TARGET", help="DVC stage to run, such as register@mnist (default: every stage)")
    run.add_argument(
        "-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="params.yaml value for this run, as in `dvc exp run -S`. Repeat it for more values",
    )
    return serve, run


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python flows/pipeline.py {serve [--name NAME] | run [TARGET ...] [-S KEY=VALUE ...]}"
    if not args or args[0] not in ("serve", "run"):
        raise SystemExit(usage)
    serve_parser, run_parser = build_parsers()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args[0] == "serve":
        options = serve_parser.parse_args(args[1:])
        pipeline.serve(name=options.name)
    else:
        # Intermixed, so that -S may come before, between or after the targets.
        options = run_parser.parse_intermixed_args(args[1:])
        pipeline(targets=options.targets or None, set_params=parse_overrides(options.overrides))


if __name__ == "__main__":
    run_main(main)
