"""MNIST download against loopback mirrors that serve the real files or scripted faults."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

import pytest

from conftest import MNIST_DIR
from dcgan.config import IngestConfig
from dcgan.data import mnist_sources
from dcgan.data.http_download import CHUNK_BYTES, download_verified
from dcgan.data.mnist_idx import MNIST_FILES
from dcgan.errors import UserError
from fault_http import FaultServer, body, cut, drop, empty, hang, pause, serve, status

IMAGES, IMAGES_MD5, _ = MNIST_FILES["test"]["images"]
LABELS, LABELS_MD5, _ = MNIST_FILES["test"]["labels"]
# The real case: a t10k images file that a mirror stored only in part.
CUT_SIZE = 49_152
PAUSE_AFTER = 300_000
EMPTY_MD5 = hashlib.md5(b"").hexdigest()
ADVICE = mnist_sources.DIR_SOURCE_ADVICE


def settings(timeout_s: float = 0.5, retries: int = 2, retry_delay_s: float = 0.01) -> IngestConfig:
    return IngestConfig(timeout_s=timeout_s, retries=retries, retry_delay_s=retry_delay_s,
                        lock_timeout_s=10, workers=1, max_bad_fraction=0.01)


@pytest.fixture
def mirrors():
    """Start loopback mirrors of the real MNIST folder on demand. All are closed at teardown."""
    started = []

    def start() -> FaultServer:
        server = FaultServer(MNIST_DIR)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "raw"


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def download_labels(dest: Path, urls: list[str], config: IngestConfig) -> Path:
    return download_verified(LABELS, LABELS_MD5, urls, dest, config, alternative=ADVICE)


def closed_port_url() -> str:
    """Return a loopback URL whose port was just freed, so connecting to it is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_split_downloads_real_files(mirrors, dest):
    mirror = mirrors()

    mnist_sources.fetch_torchvision(dest, "test", [mirror.url], settings())

    assert names_in(dest) == [IMAGES, LABELS]
    assert (dest / IMAGES).read_bytes() == (MNIST_DIR / IMAGES).read_bytes()
    assert (dest / LABELS).read_bytes() == (MNIST_DIR / LABELS).read_bytes()
    assert mirror.labels(IMAGES) == ["serve"]
    assert mirror.labels(LABELS) == ["serve"]


def test_empty_mirror_list_uses_torchvision(mirrors, dest, monkeypatch):
    from torchvision.datasets import MNIST

    mirror = mirrors()
    assert mnist_sources.default_mirrors() == list(MNIST.mirrors)
    monkeypatch.setattr(MNIST, "mirrors", [mirror.url])

    mnist_sources.fetch_torchvision(dest, "test", [], settings())

    assert names_in(dest) == [IMAGES, LABELS]
    assert mirror.count(IMAGES) == 1


def test_403_falls_back_without_retry(mirrors, dest, caplog):
    forbidden, good = mirrors(), mirrors()
    forbidden.script(IMAGES, status(403))
    forbidden.script(LABELS, status(403))

    with caplog.at_level(logging.WARNING, logger="dcgan.data.http_download"):
        mnist_sources.fetch_torchvision(dest, "test", [forbidden.url, good.url], settings(retries=3))

    assert forbidden.labels(IMAGES) == ["403"]
    assert forbidden.labels(LABELS) == ["403"]
    assert good.labels(IMAGES) == ["serve"]
    assert good.labels(LABELS) == ["serve"]
    assert names_in(dest) == [IMAGES, LABELS]
    assert f"{forbidden.url}{IMAGES}: 403, not retried; trying the next mirror" in caplog.text


def test_404_is_not_retried(mirrors, dest):
    missing, good = mirrors(), mirrors()
    missing.script(LABELS, status(404))

    download_labels(dest, [missing.url, good.url], settings(retries=3))

    assert missing.labels(LABELS) == ["404"]
    assert good.count(LABELS) == 1


def test_503_then_ok_retries_same_mirror(mirrors, dest, caplog):
    flaky, spare = mirrors(), mirrors()
    flaky.script(LABELS, status(503), serve())

    with caplog.at_level(logging.WARNING, logger="dcgan.data.http_download"):
        download_labels(dest, [flaky.url, spare.url], settings(retries=2))

    assert flaky.labels(LABELS) == ["503", "serve"]
    assert spare.count(LABELS) == 0
    assert (dest / LABELS).read_bytes() == (MNIST_DIR / LABELS).read_bytes()
    assert f"{flaky.url}{LABELS}: 503; retry 1 of 2 in 0.01 s" in caplog.text


def test_503_forever_moves_to_next_mirror(mirrors, dest, caplog):
    down, good = mirrors(), mirrors()
    down.script(LABELS, status(503))

    with caplog.at_level(logging.WARNING, logger="dcgan.data.http_download"):
        download_labels(dest, [down.url, good.url], settings(retries=3))

    assert down.labels(LABELS) == ["503"] * 4
    assert good.labels(LABELS) == ["serve"]
    assert f"{down.url}{LABELS}: 503 after 3 retries; trying the next mirror" in caplog.text


def test_retry_delay_doubles(mirrors, dest, caplog):
    down = mirrors()
    down.script(LABELS, status(502), status(502), status(502), serve())

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="dcgan.data.http_download"):
        download_labels(dest, [down.url], settings(retries=3, retry_delay_s=0.05))
    elapsed = time.monotonic() - started

    assert down.labels(LABELS) == ["502", "502", "502", "serve"]
    assert "retry 1 of 3 in 0.05 s" in caplog.text
    assert "retry 2 of 3 in 0.1 s" in caplog.text
    assert "retry 3 of 3 in 0.2 s" in caplog.text
    assert elapsed >= 0.35


def test_hang_times_out_then_next_mirror(mirrors, dest):
    silent, good = mirrors(), mirrors()
    silent.script(LABELS, hang())

    started = time.monotonic()
    download_labels(dest, [silent.url, good.url], settings(timeout_s=0.5, retries=1))
    elapsed = time.monotonic() - started

    assert silent.labels(LABELS) == ["hang", "hang"]
    assert good.labels(LABELS) == ["serve"]
    assert names_in(dest) == [LABELS]
    assert 1.0 <= elapsed < 5


def test_refused_connection_is_retried(mirrors, dest, caplog):
    good = mirrors()
    closed = closed_port_url()

    with caplog.at_level(logging.WARNING, logger="dcgan.data.http_download"):
        download_labels(dest, [closed, good.url], settings(retries=1))

    assert names_in(dest) == [LABELS]
    assert good.count(LABELS) == 1
    assert f"{closed}{LABELS}: connection failed (Connection refused); retry 1 of 1" in caplog.text
    assert f"{closed}{LABELS}: connection failed (Connection refused) on all 2 attempts" in caplog.text


def test_stalled_body_times_out(mirrors, dest):
    stalled = mirrors()
    stalled.script(IMAGES, pause(PAUSE_AFTER))

    with pytest.raises(UserError) as info:
        download_verified(IMAGES, IMAGES_MD5, [stalled.url], dest, settings(timeout_s=0.3, retries=0),
                          alternative=ADVICE)

    assert f"{stalled.url}{IMAGES}: timed out after 0.3 s with " in str(info.value)
    assert stalled.count(IMAGES) == 1
    assert names_in(dest) == []


def test_one_retry_is_singular(mirrors, dest):
    down = mirrors()
    down.script(LABELS, status(503))

    with pytest.raises(UserError) as info:
        download_labels(dest, [down.url], settings(retries=1))

    assert f"{down.url}{LABELS}: 503 after 1 retry)" in str(info.value)
    assert down.labels(LABELS) == ["503", "503"]


def test_all_mirrors_failing_named_in_one_line(mirrors, dest):
    forbidden, down, silent = mirrors(), mirrors(), mirrors()
    forbidden.script(IMAGES, status(403))
    down.script(IMAGES, status(503))
    silent.script(IMAGES, hang())

    with pytest.raises(UserError) as info:
        mnist_sources.fetch_torchvision(dest, "test", [forbidden.url, down.url, silent.url],
                                        settings(timeout_s=0.5, retries=2))

    message = str(info.value)
    assert "\n" not in message
    assert f"download of {IMAGES} failed from every mirror" in message
    assert f"{forbidden.url}{IMAGES}: 403" in message
    assert f"{down.url}{IMAGES}: 503 after 2 retries" in message
    assert f"{silent.url}{IMAGES}: timed out after 0.5 s on all 3 attempts" in message
    assert "check the network" in message
    assert "data.mnist.source: dir" in message
    assert forbidden.labels(IMAGES) == ["403"]
    assert down.labels(IMAGES) == ["503"] * 3
    assert silent.labels(IMAGES) == ["hang"] * 3
    assert names_in(dest) == []


def test_cut_file_fetched_twice_then_fails(mirrors, dest, caplog):
    mirror = mirrors()
    mirror.script(IMAGES, cut(CUT_SIZE))

    with caplog.at_level(logging.WARNING, logger="dcgan.data.http_download"):
        with pytest.raises(UserError) as info:
            mnist_sources.fetch_torchvision(dest, "test", [mirror.url], settings())

    message = str(info.value)
    cut_md5 = hashlib.md5((MNIST_DIR / IMAGES).read_bytes()[:CUT_SIZE]).hexdigest()
    assert "\n" not in message
    assert f"download of {IMAGES} failed" in message
    assert f"{mirror.url}{IMAGES}: {CUT_SIZE} bytes with md5 {cut_md5}" in message
    assert f"expected md5 {IMAGES_MD5}" in message
    assert "data.mnist.source: dir" in message
    assert mirror.labels(IMAGES) == [f"cut {CUT_SIZE}"] * 2
    assert mirror.count(LABELS) == 0
    assert names_in(dest) == []
    assert f"downloading {IMAGES} once more from {mirror.url}{IMAGES}" in caplog.text


def test_cut_then_good_succeeds(mirrors, dest):
    mirror = mirrors()
    mirror.script(IMAGES, cut(CUT_SIZE), serve())

    mnist_sources.fetch_torchvision(dest, "test", [mirror.url], settings())

    assert mirror.labels(IMAGES) == [f"cut {CUT_SIZE}", "serve"]
    assert (dest / IMAGES).read_bytes() == (MNIST_DIR / IMAGES).read_bytes()
    assert names_in(dest) == [IMAGES, LABELS]


def test_cut_file_falls_back_to_next_mirror(mirrors, dest):
    damaged, good = mirrors(), mirrors()
    damaged.script(IMAGES, cut(CUT_SIZE))

    mnist_sources.fetch_torchvision(dest, "test", [damaged.url, good.url], settings())

    assert damaged.labels(IMAGES) == [f"cut {CUT_SIZE}"]
    assert good.labels(IMAGES) == ["serve"]
    assert (dest / IMAGES).read_bytes() == (MNIST_DIR / IMAGES).read_bytes()


def test_empty_file_rejected(mirrors, dest):
    mirror = mirrors()
    mirror.script(LABELS, empty())

    with pytest.raises(UserError) as info:
        download_labels(dest, [mirror.url], settings())

    message = str(info.value)
    assert f"{mirror.url}{LABELS}: 0 bytes with md5 {EMPTY_MD5}" in message
    assert f"expected md5 {LABELS_MD5}" in message
    assert mirror.labels(LABELS) == ["empty"] * 2
    assert names_in(dest) == []


def test_wrong_md5_rejected(mirrors, dest):
    changed = bytearray((MNIST_DIR / LABELS).read_bytes())
    changed[-1] ^= 0xFF
    changed_md5 = hashlib.md5(changed).hexdigest()
    mirror = mirrors()
    mirror.script(LABELS, body(bytes(changed)))

    with pytest.raises(UserError) as info:
        download_labels(dest, [mirror.url], settings())

    message = str(info.value)
    assert f"{len(changed)} bytes with md5 {changed_md5}" in message
    assert f"expected md5 {LABELS_MD5}" in message
    assert LABELS in message
    assert mirror.labels(LABELS) == [f"body {len(changed)}"] * 2
    assert names_in(dest) == []


def test_dropped_connection_retried(mirrors, dest, caplog):
    mirror = mirrors()
    mirror.script(IMAGES, drop(CUT_SIZE), serve())
    total = (MNIST_DIR / IMAGES).stat().st_size

    with caplog.at_level(logging.WARNING, logger="dcgan.data.http_download"):
        download_verified(IMAGES, IMAGES_MD5, [mirror.url], dest, settings(), alternative=ADVICE)

    assert mirror.labels(IMAGES) == [f"drop {CUT_SIZE}", "serve"]
    assert names_in(dest) == [IMAGES]
    assert f"connection dropped after {CUT_SIZE} of {total} bytes; retry 1 of 2" in caplog.text


@pytest.mark.parametrize(
    "response",
    [status(403), status(503), hang(), pause(PAUSE_AFTER), cut(CUT_SIZE), empty(), drop(CUT_SIZE),
     body(b"not mnist")],
    ids=lambda response: response.label,
)
def test_failure_leaves_no_files(mirrors, dest, response):
    mirror = mirrors()
    mirror.script(IMAGES, response)

    with pytest.raises(UserError):
        download_verified(IMAGES, IMAGES_MD5, [mirror.url], dest, settings(timeout_s=0.3, retries=1),
                          alternative=ADVICE)

    assert names_in(dest) == []


def test_partial_name_during_download(mirrors, dest):
    mirror = mirrors()
    # The client reads in 64 KiB chunks, so it has written at least one chunk before the pause.
    slow = pause(PAUSE_AFTER)
    mirror.script(IMAGES, slow)
    errors = []

    def download() -> None:
        try:
            download_verified(IMAGES, IMAGES_MD5, [mirror.url], dest, settings(timeout_s=5), alternative=ADVICE)
        except Exception as exc:  # reported by the assert below, not lost in the thread
            errors.append(exc)

    worker = threading.Thread(target=download)
    worker.start()
    partial = dest / f"{IMAGES}.partial"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size >= CHUNK_BYTES):
        time.sleep(0.01)
    during = names_in(dest)
    written = partial.stat().st_size if partial.exists() else 0
    slow.release()
    worker.join(timeout=10)

    assert during == [f"{IMAGES}.partial"]
    assert written >= CHUNK_BYTES
    assert not worker.is_alive()
    assert errors == []
    assert names_in(dest) == [IMAGES]
    assert (dest / IMAGES).read_bytes() == (MNIST_DIR / IMAGES).read_bytes()


def test_stale_partial_file_replaced(mirrors, dest):
    dest.mkdir()
    (dest / f"{LABELS}.partial").write_bytes(b"left by a killed ingest")
    mirror = mirrors()

    download_labels(dest, [mirror.url], settings())

    assert names_in(dest) == [LABELS]
    assert (dest / LABELS).read_bytes() == (MNIST_DIR / LABELS).read_bytes()


def test_progress_bar_per_file(mirrors, dest, capsys):
    mirror = mirrors()

    mnist_sources.fetch_torchvision(dest, "test", [mirror.url], settings())

    err = capsys.readouterr().err
    assert f"{IMAGES}: 100%" in err
    assert f"{LABELS}: 100%" in err


def test_hanging_server_closes_quickly(mirrors, dest):
    silent = mirrors()
    silent.script(LABELS, hang())
    with pytest.raises(UserError):
        download_labels(dest, [silent.url], settings(timeout_s=0.3, retries=0))

    started = time.monotonic()
    silent.close()

    assert time.monotonic() - started < 2
