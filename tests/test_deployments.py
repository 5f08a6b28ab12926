"""The pipeline flow through a real Prefect server: prefect.yaml deployments on a process worker, and flow.serve().

One server and one worker serve the whole module. Every process they start (flow runs, DVC, the
stages) carries the module's PREFECT_HOME, so teardown finds and stops all of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from filelock import FileLock
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, Log

from conftest import BIN, REPO, run

POOL = "dcgan-process"
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 900
STOP_GRACE_S = 20
PIPELINE_LOCK = Path(".dvc") / "tmp" / "pipeline-flow.lock"


@dataclass
class PrefectStack:
    api_url: str
    home: Path
    env: dict[str, str | None]

    def client(self) -> SyncPrefectClient:
        return SyncPrefectClient(self.api_url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], cwd: Path, env: dict[str, str | None], log: Path) -> subprocess.Popen:
    """Start a long-running command in a session of its own, its output going to ``log``."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env}
    full_env = {name: value for name, value in full_env.items() if value is not None}
    with log.open("ab") as sink:
        return subprocess.Popen(args, cwd=cwd, env=full_env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL it after STOP_GRACE_S."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_GRACE_S)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def processes_with_env(entry: str) -> list[int]:
    """Return the ids of this user's processes whose environment contains ``entry`` (NAME=value)."""
    marker = entry.encode()
    found = []
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit() or int(folder.name) == os.getpid():
            continue
        try:
            environment = (folder / "environ").read_bytes()
        except OSError:
            continue
        if marker in environment.split(b"\0"):
            found.append(int(folder.name))
    return found


def stop_leftovers(entry: str) -> None:
    """Stop flow runs, DVC and stage commands that outlived the worker: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = processes_with_env(entry)
        for pid in pids:
            # A process may exit between listing and signalling it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while pids and time.monotonic() < deadline and processes_with_env(entry):
            time.sleep(0.5)


def wait_for_health(api_url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"prefect server exited with {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{api_url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"prefect server did not answer /api/health within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory):
    """A Prefect server on a free loopback port, the process work pool and one worker."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        # Poll every 2 s instead of 10 s, so runs start sooner.
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        # Runs write to the project's own MLflow store, as the DVC stages do by default.
        "MLFLOW_TRACKING_URI": None,
    }
    stack = PrefectStack(api_url, home, env)
    processes = []
    try:
        server_log = home / "server.log"
        processes.append(start(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], home, env, server_log))
        wait_for_health(api_url, processes[0], server_log)
        run(["prefect", "work-pool", "create", POOL, "--type", "process"], cwd=home, env=env)
        processes.append(start(["prefect", "worker", "start", "--pool", POOL], home, env, home / "worker.log"))
        yield stack
    finally:
        for process in reversed(processes):
            stop(process)
        stop_leftovers(f"PREFECT_HOME={home}")


def commit_project(root: Path) -> None:
    """Make the scratch project a Git repository with one commit, because `dvc exp run` needs a baseline."""
    run(["git", "init", "-q"], cwd=root)
    run(["dvc", "init", "-q"], cwd=root)
    shutil.copy(REPO / "prefect.yaml", root / "prefect.yaml")
    run(["git", "add", "-A"], cwd=root)
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    run(["git", *identity, "commit", "-q", "-m", "scratch project"], cwd=root)


def deploy(root: Path, stack: PrefectStack, *names: str) -> str:
    selection = ["--all"] if not names else [arg for name in names for arg in ("--name", name)]
    return run(["prefect", "--no-prompt", "deploy", *selection], cwd=root, env=stack.env).stdout


def start_run(root: Path, stack: PrefectStack, deployment: str, **params) -> str:
    """Start a flow run of ``deployment`` with ``prefect deployment run -p`` and return the run's id."""
    args = ["prefect", "deployment", "run", deployment]
    for name, value in params.items():
        args += ["-p", f"{name}={json.dumps(value)}"]
    output = run(args, cwd=root, env=stack.env).stdout
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    assert match, f"no flow run id in the output of {' '.join(args)}:\n{output}"
    return match.group(1)


def read_logs(stack: PrefectStack, flow_run_id: str) -> list[Log]:
    logs: list[Log] = []
    with stack.client() as client:
        while True:
            page = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=len(logs))
            logs += page
            if len(page) < 200:
                return logs


def log_text(logs: list[Log]) -> str:
    return "\n".join(f"{log.timestamp:%H:%M:%S} {log.message}" for log in logs)


def wait_for_final_state(stack: PrefectStack, flow_run_id: str, timeout_s: float = RUN_TIMEOUT_S) -> FlowRun:
    deadline = time.monotonic() + timeout_s
    with stack.client() as client:
        while True:
            flow_run = client.read_flow_run(flow_run_id)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            if time.monotonic() > deadline:
                break
            time.sleep(3)
    raise AssertionError(
        f"flow run {flow_run_id} still {flow_run.state_name} after {timeout_s} s. Its logs:\n"
        f"{log_text(read_logs(stack, flow_run_id))[-6000:]}\nworker log:\n{(stack.home / 'worker.log').read_text()[-3000:]}"
    )


def read_final_logs(stack: PrefectStack, flow_run: FlowRun, timeout_s: float = 60) -> list[Log]:
    """Return the logs of an ended flow run once they are all stored.

    The engine logs "Finished in state ..." after it sets the final state, and it sends logs to the
    API in batches, so the last lines can arrive after the state does.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        logs = read_logs(stack, str(flow_run.id))
        if any(log.task_run_id is None and log.message.startswith("Finished in state ") for log in logs):
            return logs
        if time.monotonic() > deadline:
            raise AssertionError(f"flow run {flow_run.name} ended {flow_run.state_name} but its final log line did not arrive:\n{log_text(logs)}")
        time.sleep(1)


def wait_until_completed(stack: PrefectStack, flow_run_id: str) -> list[Log]:
    """Wait for the flow run to end and return its logs. Fail with the logs unless it is COMPLETED."""
    flow_run = wait_for_final_state(stack, flow_run_id)
    logs = read_final_logs(stack, flow_run)
    assert flow_run.state_type.value == "COMPLETED", (
        f"flow run {flow_run.name} ended {flow_run.state_name}: {flow_run.state.message}\n{log_text(logs)[-6000:]}"
    )
    return logs


def messages(logs: list[Log]) -> list[str]:
    return [log.message for log in logs]


def test_deployment_runs_mnist_chain(project, prefect_stack):
    commit_project(project)

    output = deploy(project, prefect_stack)
    assert "Deployment 'pipeline/default' successfully created" in output
    assert "Deployment 'ingest/default' successfully created" in output
    with prefect_stack.client() as client:
        pipeline = client.read_deployment_by_name("pipeline/default")
        ingest = client.read_deployment_by_name("ingest/default")
    assert pipeline.entrypoint == "flows/pipeline.py:pipeline"
    assert pipeline.work_pool_name == POOL
    assert pipeline.parameters == {"targets": [], "set_params": {}, "lock_timeout_s": None}
    # The build step recorded the folder that `prefect deploy` ran in, so prefect.yaml names no path.
    directory = pipeline.pull_steps[0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert Path(directory).resolve() == project.resolve()
    assert ingest.entrypoint == "flows/ingest.py:ingest"
    assert ingest.work_pool_name == POOL
    assert ingest.parameters == {"dataset": "mnist", "params_path": "params.yaml"}

    flow_run_id = start_run(
        project, prefect_stack, "pipeline/default", targets=["register@mnist"], set_params={"train.mnist.epochs": 1}
    )
    logs = wait_until_completed(prefect_stack, flow_run_id)

    lines = messages(logs)
    assert "DVC started: dvc exp run -S train.mnist.epochs=1 register@mnist" in lines
    for stage in ("ingest", "preprocess", "train", "fid_stats", "evaluate", "register"):
        assert f"Running stage '{stage}@mnist':" in lines
    assert "> dcgan register mnist" in lines
    assert any(line.startswith("Ran experiment(s): ") for line in lines)
    assert "DVC exited with code 0" in "\n".join(lines)
    assert not any(line.startswith("Running stage") and "anime" in line for line in lines)
    registration = json.loads((project / "data/registry/mnist/registration.json").read_text())
    assert registration["promoted"] is True
    # `dvc exp run -S` wrote the override into params.yaml.
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["mnist"]["epochs"] == 1


def dvc_interval(logs: list[Log]) -> tuple[float, float]:
    """Return when DVC started and exited in one flow run, from its log timestamps."""
    started = [log.timestamp for log in logs if log.message.startswith("DVC started: ")]
    exited = [log.timestamp for log in logs if log.message.startswith("DVC exited with code ")]
    assert len(started) == 1, log_text(logs)
    assert len(exited) == 1, log_text(logs)
    return started[0].timestamp(), exited[0].timestamp()


def wait_for_message(stack: PrefectStack, flow_run_id: str, prefix: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(message.startswith(prefix) for message in messages(read_logs(stack, flow_run_id))):
            return
        time.sleep(2)
    raise AssertionError(
        f"flow run {flow_run_id} logged no {prefix!r} within {timeout_s} s:\n{log_text(read_logs(stack, flow_run_id))}"
        f"\nworker log:\n{(stack.home / 'worker.log').read_text()[-3000:]}"
    )


def test_concurrent_runs_take_turns(project, prefect_stack):
    commit_project(project)
    deploy(project, prefect_stack, "pipeline/default")

    # Hold the lock as a running pipeline would, so that both runs are waiting at the same time.
    lock = FileLock(project / PIPELINE_LOCK)
    lock.acquire()
    try:
        first = start_run(project, prefect_stack, "pipeline/default", targets=["preprocess@mnist"])
        second = start_run(project, prefect_stack, "pipeline/default", targets=["preprocess@mnist"])
        wait_for_message(prefect_stack, first, "waiting for lock ")
        wait_for_message(prefect_stack, second, "waiting for lock ")
    finally:
        lock.release()

    first_logs = wait_until_completed(prefect_stack, first)
    second_logs = wait_until_completed(prefect_stack, second)

    (start_a, end_a), (start_b, end_b) = sorted([dvc_interval(first_logs), dvc_interval(second_logs)])
    assert end_a <= start_b, f"DVC runs overlap:\n{log_text(first_logs)}\n---\n{log_text(second_logs)}"
    for logs in (first_logs, second_logs):
        assert any(message.startswith("acquired lock ") for message in messages(logs))
        assert "DVC exited with code 0" in "\n".join(messages(logs))
    # The later run found ingest and preprocess done by the earlier one.
    later_logs = first_logs if dvc_interval(first_logs)[0] == start_b else second_logs
    assert "Stage 'preprocess@mnist' didn't change, skipping" in messages(later_logs)
    assert (project / "data/prepared/mnist").is_dir()


def test_failing_dvc_run_fails_flow(project, prefect_stack):
    commit_project(project)
    deploy(project, prefect_stack, "pipeline/default")

    flow_run_id = start_run(project, prefect_stack, "pipeline/default", targets=["no-such-stage@mnist"])
    flow_run = wait_for_final_state(prefect_stack, flow_run_id)

    assert flow_run.state_type.value == "FAILED", flow_run.state.message
    assert "DvcRunError" in flow_run.state.message
    assert "dvc exp run no-such-stage@mnist failed with exit code 255" in flow_run.state.message
    assert "ERROR: 'no-such-stage@mnist' does not exist" in flow_run.state.message
    error_logs = [log for log in read_final_logs(prefect_stack, flow_run) if log.message.startswith("ERROR: ")]
    assert error_logs, "DVC's ERROR line is missing from the run's logs"
    assert error_logs[0].level == logging.ERROR


@pytest.fixture
def served_pipeline(project, prefect_stack):
    """`python flows/pipeline.py serve` in the project, stopped at the end of the test."""
    commit_project(project)
    log = prefect_stack.home / "serve.log"
    process = start(["python", "flows/pipeline.py", "serve"], project, prefect_stack.env, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with prefect_stack.client() as client:
            while not any(d.name == "local" for d in client.read_deployments()):
                assert process.poll() is None, f"serve exited with {process.returncode}:\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, f"serve registered no deployment:\n{log.read_text()[-4000:]}"
                time.sleep(1)
        yield project
    finally:
        stop(process)


def test_served_flow_runs_ingest(served_pipeline, prefect_stack):
    flow_run_id = start_run(served_pipeline, prefect_stack, "pipeline/local", targets=["ingest@mnist"])
    logs = wait_until_completed(prefect_stack, flow_run_id)

    lines = messages(logs)
    assert "DVC started: dvc exp run ingest@mnist" in lines
    assert "Running stage 'ingest@mnist':" in lines
    assert (served_pipeline / "data/validation/mnist/report.json").is_file()
