"""The real kaggle client against a fake Kaggle API on 127.0.0.1: credentials, 4xx, 5xx, time-outs, bad archives.

The client is pointed at the fake as tests/kaggle_server.py describes:
KAGGLE_API_ENVIRONMENT=LOCALHOST, HTTP_PROXY at the fake server, NO_PROXY=127.0.0.1.
"""

from __future__ import annotations

import io
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import ANIME_ZIP, run, write_params
from dcgan.config import IngestConfig
from dcgan.data.kaggle_download import download_archive
from dcgan.errors import TransientDownloadError, UserError
from kaggle_server import DOWNLOAD_PATH, FakeKaggle

SLUG = "splcher/animefacedataset"
USERNAME = "tester"
KEY = "not-a-real-key"
SERVED_IMAGES = 64
SETTINGS = IngestConfig(
    timeout_s=1, retries=2, retry_delay_s=0.01, lock_timeout_s=30, workers=1, max_bad_fraction=0.01
)


@pytest.fixture(scope="module")
def served_zip() -> bytes:
    """A stored zip of the first real images of the sample, laid out as the Kaggle download is."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(ANIME_ZIP) as source, zipfile.ZipFile(buffer, "w") as target:
        names = sorted(name for name in source.namelist() if name.endswith(".jpg"))[:SERVED_IMAGES]
        for name in names:
            target.writestr(name, source.read(name))
    return buffer.getvalue()


@pytest.fixture
def kaggle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Set dummy credentials, an empty home folder and the LOCALHOST endpoint, and return the home folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for name in ("KAGGLE_API_TOKEN", "no_proxy", "http_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    # kaggle reads KAGGLE_API_ENVIRONMENT once, when kaggle.api.kaggle_api_extended is imported.
    module = sys.modules.get("kaggle.api.kaggle_api_extended")
    if module is not None and "--local" not in module.KaggleApi.args:
        pytest.fail("kaggle was imported before KAGGLE_API_ENVIRONMENT=LOCALHOST was set; "
                    "its requests would go to api.kaggle.com")
    return home


@pytest.fixture
def fake_kaggle(kaggle_env, served_zip, monkeypatch: pytest.MonkeyPatch):
    """Start a fake Kaggle API with a plan of behaviours and route the client to it."""
    servers = []

    def start(*plan: str) -> FakeKaggle:
        fake = FakeKaggle(served_zip, list(plan), USERNAME, KEY).start()
        monkeypatch.setenv("HTTP_PROXY", fake.proxy_url)
        servers.append(fake)
        return fake

    yield start
    for fake in servers:
        fake.stop()


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# Download of one attempt, called directly.

def test_download_saves_served_zip(fake_kaggle, served_zip, tmp_path):
    fake = fake_kaggle("ok")
    dest = tmp_path / "data/raw/anime/archive.zip"

    assert download_archive(SLUG, dest, SETTINGS) == dest

    assert files_in(dest.parent) == ["archive.zip"]
    assert dest.read_bytes() == served_zip
    [download] = fake.downloads()
    assert download.method == "POST"
    assert download.body == {"ownerSlug": "splcher", "datasetSlug": "animefacedataset"}
    assert download.authorization == fake.expected_authorization
    [fetch] = fake.storage_fetches()
    assert fetch.path == "/storage/ok/animefacedataset.zip"
    # requests drops the Authorization header when a redirect changes the host (localhost to 127.0.0.1).
    assert fetch.authorization == ""


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("401", ["rejected the credentials from $KAGGLE_USERNAME and $KAGGLE_KEY", "HTTP 401",
                 "https://www.kaggle.com/settings"]),
        ("403", ["denied access to dataset splcher/animefacedataset", "HTTP 403",
                 "https://www.kaggle.com/datasets/splcher/animefacedataset", "accept the dataset's rules"]),
        ("404", ["splcher/animefacedataset not found", "HTTP 404", "data.anime.slug", "owner/dataset"]),
    ],
)
def test_rejected_request_raises_user_error(fake_kaggle, tmp_path, status, expected):
    fake = fake_kaggle(status)
    dest = tmp_path / "raw/archive.zip"

    with pytest.raises(UserError) as caught:
        download_archive(SLUG, dest, SETTINGS)

    assert not isinstance(caught.value, TransientDownloadError)
    for text in expected:
        assert text in str(caught.value)
    assert KEY not in str(caught.value)
    assert len(fake.downloads()) == 1
    assert fake.storage_fetches() == []
    assert files_in(dest.parent) == []


@pytest.mark.parametrize("slug", ["animefacedataset", "/animefacedataset", "splcher/", "a/b/c/d", "a/b/latest"])
def test_invalid_slug_sends_nothing(fake_kaggle, tmp_path, slug):
    fake = fake_kaggle("ok")

    with pytest.raises(UserError, match="data.anime.slug = .* is invalid: expected owner/dataset"):
        download_archive(slug, tmp_path / "raw/archive.zip", SETTINGS)

    assert fake.requests == []
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    ("status", "expected"), [("503", "HTTP 503 Service Unavailable"), ("429", "HTTP 429 Too Many Requests")]
)
def test_server_error_is_transient(fake_kaggle, tmp_path, status, expected):
    fake = fake_kaggle(status)
    dest = tmp_path / "raw/archive.zip"

    with pytest.raises(TransientDownloadError) as caught:
        download_archive(SLUG, dest, SETTINGS)

    assert f"Kaggle download of {SLUG} failed" in str(caught.value)
    assert expected in str(caught.value)
    assert len(fake.downloads()) == 1
    assert files_in(dest.parent) == []


@pytest.mark.parametrize("behaviour", ["hang", "stall"])
def test_silent_server_times_out(fake_kaggle, tmp_path, behaviour):
    fake = fake_kaggle(behaviour)
    dest = tmp_path / "raw/archive.zip"
    started = time.monotonic()

    with pytest.raises(TransientDownloadError) as caught:
        download_archive(SLUG, dest, SETTINGS)

    elapsed = time.monotonic() - started
    assert "timed out" in str(caught.value)
    assert "1 s (ingest.timeout_s)" in str(caught.value)
    assert SETTINGS.timeout_s <= elapsed < SETTINGS.timeout_s + 5
    assert len(fake.downloads()) == 1
    assert files_in(dest.parent) == []


def test_dropped_connection_is_transient(fake_kaggle, tmp_path):
    fake_kaggle("drop")
    dest = tmp_path / "raw/archive.zip"

    with pytest.raises(TransientDownloadError, match="connection error"):
        download_archive(SLUG, dest, SETTINGS)

    assert files_in(dest.parent) == []


def test_html_page_is_rejected(fake_kaggle, tmp_path):
    fake = fake_kaggle("html")
    dest = tmp_path / "raw/archive.zip"

    with pytest.raises(UserError) as caught:
        download_archive(SLUG, dest, SETTINGS)

    # A login or proxy page comes back the same on a retry, so it is not transient.
    assert not isinstance(caught.value, TransientDownloadError)
    assert "returned an HTML page, not a zip" in str(caught.value)
    assert "file was deleted" in str(caught.value)
    assert "data.anime.source: archive" in str(caught.value)
    assert len(fake.downloads()) == 1
    assert files_in(dest.parent) == []


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("cut", "was cut short"),  # the client sees fewer bytes than Content-Length
        ("cut-unsized", "is an incomplete zip"),  # no Content-Length, so only the zip check detects it
        ("empty", "is empty"),
    ],
)
def test_cut_zip_is_transient(fake_kaggle, tmp_path, behaviour, expected):
    fake = fake_kaggle(behaviour)
    dest = tmp_path / "raw/archive.zip"

    with pytest.raises(TransientDownloadError) as caught:
        download_archive(SLUG, dest, SETTINGS)

    assert expected in str(caught.value)
    assert len(fake.storage_fetches()) == 1
    assert files_in(dest.parent) == []


def test_failure_keeps_existing_archive(fake_kaggle, tmp_path):
    fake_kaggle("503")
    dest = tmp_path / "raw/archive.zip"
    dest.parent.mkdir()
    dest.write_bytes(b"earlier download")

    with pytest.raises(TransientDownloadError):
        download_archive(SLUG, dest, SETTINGS)

    assert files_in(dest.parent) == ["archive.zip"]
    assert dest.read_bytes() == b"earlier download"


# The ingest flow, whose download task retries TransientDownloadError only.

def use_kaggle(project: Path, retries: int = SETTINGS.retries) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["anime"].update(source="kaggle", path=None, slug=SLUG)
    params["ingest"].update(retries=retries, retry_delay_s=SETTINGS.retry_delay_s, timeout_s=SETTINGS.timeout_s)
    write_params(project, params)


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def test_kaggle_without_credentials_lists_places(project, kaggle_env, fake_kaggle, monkeypatch):
    fake = fake_kaggle("ok")
    use_kaggle(project)
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(name, raising=False)

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert result.returncode == 2
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    message = errors[0]
    assert message.startswith("error: Kaggle credentials not found")
    for place in ("KAGGLE_API_TOKEN", "access_token", "KAGGLE_USERNAME", "KAGGLE_KEY", "kaggle.json"):
        assert place in message
    assert "data.anime.source: archive" in message
    assert "data.anime.path" in message
    assert "Traceback" not in result.stderr
    assert fake.requests == []
    assert not (project / "data/raw/anime/archive.zip").exists()


def test_flow_retries_503_then_succeeds(project, fake_kaggle, served_zip):
    fake = fake_kaggle("503", "ok")
    use_kaggle(project)

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert len(fake.downloads()) == 2, result.stderr
    raw = project / "data/raw/anime"
    assert files_in(raw) == ["archive.zip"]
    assert (raw / "archive.zip").read_bytes() == served_zip
    assert result.returncode == 0, result.stderr[-4000:]


def test_flow_gives_up_after_retries(project, fake_kaggle):
    fake = fake_kaggle("503")
    use_kaggle(project)

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert result.returncode == 2, result.stderr[-4000:]
    assert len(fake.downloads()) == SETTINGS.retries + 1
    errors = error_lines(result)
    assert len(errors) == 1, result.stderr
    assert errors[0] == (
        f"error: Kaggle download of {SLUG} failed (attempt 3 of 3, ingest.retries = 2): the server responded with "
        "HTTP 503 Service Unavailable. Kaggle may be overloaded or down. Try again later"
    )
    assert "Traceback" not in result.stderr
    assert files_in(project / "data/raw/anime") == []


@pytest.mark.parametrize("status", ["401", "403", "404"])
def test_flow_does_not_retry_rejections(project, fake_kaggle, ingest_flow, status):
    fake = fake_kaggle(status)
    use_kaggle(project)

    with pytest.raises(UserError) as caught:
        ingest_flow("anime")

    assert not isinstance(caught.value, TransientDownloadError)
    assert f"HTTP {status}" in str(caught.value)
    assert [request.path for request in fake.requests] == [DOWNLOAD_PATH]
    assert files_in(project / "data/raw/anime") == []
