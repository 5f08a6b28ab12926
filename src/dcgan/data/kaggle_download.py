"""Download the anime faces archive with the official Kaggle client, one attempt per call.

kaggle 2.2.5 (with kagglesdk 0.1.38) downloads a dataset in one API request:
``POST {endpoint}/v1/datasets.DatasetApiService/DownloadDataset`` with the owner
and dataset slugs as JSON, and basic auth (username and key) or a bearer token.
Kaggle responds with a redirect to a signed storage link, which ``requests``
follows, and this module streams the zip to disk.

``KaggleApi.dataset_download_files`` is not used. It sends that request
without a time-out, so a server that never responds blocks it forever, and it
retries a cut transfer up to 5 times with sleeps from about 2 s to 33 s
(``KaggleApi.download_file`` in kaggle 2.2.5). Here the client
builds and sends the request, and this module adds a time-out and streams the
body. The ingest flow's task retries whatever raises TransientDownloadError.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from dcgan.config import IngestConfig
from dcgan.errors import TransientDownloadError, UserError

log = logging.getLogger(__name__)

CREDENTIAL_HELP = (
    "Kaggle credentials not found; looked in $KAGGLE_API_TOKEN, "
    "{config}/access_token, $KAGGLE_USERNAME with $KAGGLE_KEY, and {config}/kaggle.json. "
    "Create a token at kaggle.com > Settings > API, or download the archive yourself and set "
    "data.anime.source: archive with data.anime.path pointing at the zip or image folder"
)
TOKEN_PAGE = "https://www.kaggle.com/settings"
CHUNK_BYTES = 1 << 20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty zip


def _config_dir() -> str:
    return os.environ.get("KAGGLE_CONFIG_DIR") or str(Path("~/.kaggle").expanduser())


def authenticated_api():
    """Import the Kaggle client lazily and authenticate, turning its exit into a UserError."""
    # The package authenticates at import time and prints help on failure,
    # so its output is captured here and replaced by one clear message.
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        try:
            # NOTE: with an access token, authenticate() sends a token check to Kaggle without
            # a time-out. A username and key need no request here.
            api.authenticate()
        except SystemExit:
            raise UserError(CREDENTIAL_HELP.format(config=_config_dir())) from None
    return api


class _TimeoutAdapter(HTTPAdapter):
    """An HTTPAdapter that applies ``timeout_s`` to every request sent without a time-out."""

    def __init__(self, timeout_s: float):
        super().__init__()
        self.timeout_s = timeout_s

    def send(self, request, timeout=None, **kwargs):
        return super().send(request, timeout=self.timeout_s if timeout is None else timeout, **kwargs)


def _set_timeout(http_client, timeout_s: float) -> None:
    """Mount a time-out on the session of a kagglesdk KaggleHttpClient (its ``_session``, after ``__enter__``)."""
    session = getattr(http_client, "_session", None)
    if not isinstance(session, requests.Session):
        # kagglesdk keeps its session private, so a new release may move it.
        raise RuntimeError(
            "cannot set a time-out on the Kaggle client: kagglesdk.KaggleHttpClient has no requests "
            "session in _session. This code was tested with kaggle 2.2.5 and kagglesdk 0.1.38, so install "
            "those or update dcgan.data.kaggle_download"
        )
    adapter = _TimeoutAdapter(timeout_s)
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def _split_slug(slug: str) -> tuple[str, str, int | None]:
    """Split owner/dataset or owner/dataset/version into its parts, or raise UserError before any request."""
    parts = slug.split("/")
    version_ok = len(parts) == 2 or (len(parts) == 3 and parts[2].isdigit())
    if len(parts) not in (2, 3) or not all(parts) or not version_ok:
        raise UserError(
            f"data.anime.slug = {slug!r} is invalid: expected owner/dataset as in the dataset's URL, "
            "for example splcher/animefacedataset"
        )
    version = int(parts[2]) if len(parts) == 3 else None
    return parts[0], parts[1], version


def _credential_place(api) -> str:
    """Describe where the credentials in use came from, for messages, without the secret itself."""
    method = api.config_values.get(api.CONFIG_NAME_AUTH_METHOD)
    if method == "LEGACY_API_KEY":
        if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
            return "$KAGGLE_USERNAME and $KAGGLE_KEY"
        return str(api.config)
    if method == "OAUTH":
        return "~/.kaggle/credentials.json (saved by `kaggle auth login`)"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "$KAGGLE_API_TOKEN"
    return "the Kaggle access token file"


def _attempt_note(settings: IngestConfig) -> str:
    """Return ' (attempt 2 of 4, ingest.retries = 3)' inside a Prefect task run, and '' elsewhere."""
    try:
        from prefect.context import TaskRunContext
    except ImportError:
        return ""
    context = TaskRunContext.get()
    if context is None:
        return ""
    return f" (attempt {context.task_run.run_count} of {settings.retries + 1}, ingest.retries = {settings.retries})"


def _server_message(response: requests.Response) -> str:
    """Return the ``message`` of a JSON error response, or ''.

    Other error bodies are left out because they may contain the signed storage link.
    """
    if "application/json" not in response.headers.get("Content-Type", ""):
        return ""
    try:
        message = response.json().get("message", "")
    except (ValueError, AttributeError):
        return ""
    return f" (server message: {str(message)[:200]!r})" if message else ""


def _http_error(exc: requests.HTTPError, slug: str, api, settings: IngestConfig) -> UserError:
    """Turn an HTTP error response into a UserError, or a TransientDownloadError for 408, 429 and 5xx."""
    response = exc.response
    status = response.status_code
    status_text = f"HTTP {status} {response.reason or ''}".rstrip() + _server_message(response)
    if status == 401:
        return UserError(
            f"Kaggle rejected the credentials from {_credential_place(api)} while downloading {slug}: "
            f"{status_text}. Create a new API token at {TOKEN_PAGE} and replace the old one"
        )
    if status == 403:
        return UserError(
            f"Kaggle denied access to dataset {slug}: {status_text}. Open https://www.kaggle.com/datasets/{slug} "
            "while signed in, accept the dataset's rules or terms, then run the ingest again"
        )
    if status == 404:
        return UserError(
            f"Kaggle dataset {slug} not found: {status_text}. Check data.anime.slug for a typo. It must be the "
            "owner/dataset part of the dataset's URL, for example splcher/animefacedataset"
        )
    if status in (408, 429) or status >= 500:
        return TransientDownloadError(
            f"Kaggle download of {slug} failed{_attempt_note(settings)}: the server responded with {status_text}. "
            "Kaggle may be overloaded or down. Try again later"
        )
    return UserError(f"Kaggle download of {slug} failed: the server responded with {status_text}")


def _network_error(exc: requests.RequestException, slug: str, settings: IngestConfig) -> TransientDownloadError:
    """Turn a time-out, a cut transfer or a failed connection into a TransientDownloadError."""
    attempt = _attempt_note(settings)
    # requests raises a read time-out inside the body as ConnectionError(ReadTimeoutError).
    timed_out = isinstance(exc, requests.Timeout) or (exc.args and isinstance(exc.args[0], ReadTimeoutError))
    if timed_out:
        return TransientDownloadError(
            f"Kaggle download of {slug} timed out{attempt}: no data from the server for "
            f"{settings.timeout_s:g} s (ingest.timeout_s)"
        )
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return TransientDownloadError(
            f"Kaggle download of {slug} was cut short{attempt}: the connection closed before the "
            f"announced size was received ({type(exc).__name__})"
        )
    return TransientDownloadError(
        f"Kaggle download of {slug} failed{attempt}: connection error ({type(exc).__name__}). "
        "Check the network and proxy settings, then try again"
    )


def _stream_to(response: requests.Response, path: Path) -> int:
    """Write the response body to ``path``, with a progress bar on a terminal, and return its size in bytes."""
    from tqdm import tqdm

    length = response.headers.get("Content-Length")
    written = 0
    with open(path, "wb") as out, tqdm(
        total=int(length) if length else None, unit="B", unit_scale=True, unit_divisor=1024,
        desc=path.name, disable=None,
    ) as progress:
        for chunk in response.iter_content(CHUNK_BYTES):
            out.write(chunk)
            written += len(chunk)
            progress.update(len(chunk))
    return written


def _check_zip(path: Path, slug: str, content_type: str, settings: IngestConfig) -> None:
    """Raise unless ``path`` is a zip with its central directory, before anything reads the entries."""
    with open(path, "rb") as file:
        head = file.read(512)
    if not head:
        # An empty 200 response is treated as a transfer that broke off before the first byte.
        raise TransientDownloadError(
            f"Kaggle download of {slug} is empty{_attempt_note(settings)}: the server sent 0 bytes, "
            "so the file was deleted"
        )
    if not head.startswith(ZIP_MAGIC):
        # A login, proxy or captive portal page comes back the same on a retry seconds
        # later, so an HTML page is not transient.
        looks_html = b"<html" in head.lower() or head.lstrip().lower().startswith(b"<!doctype html")
        if looks_html or "text/html" in content_type:
            raise UserError(
                f"Kaggle download of {slug} returned an HTML page, not a zip (Content-Type {content_type!r}): "
                "a login or proxy page responded instead of Kaggle, so the file was deleted. Check the proxy "
                "settings, or download the zip in a browser and set data.anime.source: archive with data.anime.path"
            )
        raise UserError(
            f"Kaggle download of {slug} is not a zip archive (Content-Type {content_type!r}, first bytes "
            f"{head[:16]!r}), so the file was deleted"
        )
    try:
        with zipfile.ZipFile(path):
            pass
    except zipfile.BadZipFile as exc:
        # A zip cut short loses its central directory at the end of the file. The zip signature
        # at the start is present, so the transfer broke off and a retry may get the whole file.
        raise TransientDownloadError(
            f"Kaggle download of {slug} is an incomplete zip{_attempt_note(settings)}: "
            f"{path.stat().st_size} bytes with no readable central directory ({exc}). The transfer was "
            "probably cut short, so the file was deleted"
        ) from None


def download_archive(slug: str, dest: Path, settings: IngestConfig) -> Path:
    """Download dataset ``slug`` as one zip to ``dest``, checked, under a temporary name until complete.

    Raises UserError for a rejected request (401, 403, 404, an HTML page) and
    TransientDownloadError for a 408, 429 or 5xx response, a time-out of
    ``settings.timeout_s`` between bytes, a failed connection or a cut transfer.
    A failed download leaves no file behind and an existing ``dest`` untouched.
    """
    owner, dataset, version = _split_slug(slug)
    api = authenticated_api()
    from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

    request = ApiDownloadDatasetRequest()
    request.owner_slug = owner
    request.dataset_slug = dataset
    request.dataset_version_number = version

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    part = Path(name)
    try:
        log.info("downloading Kaggle dataset %s to %s", slug, dest)
        with api.build_kaggle_client() as kaggle:
            # The time-out applies to the connection and to each wait for data, not to the
            # whole transfer, so a slow but steady download of a large archive still passes.
            _set_timeout(kaggle.http_client(), settings.timeout_s)
            try:
                response = kaggle.datasets.dataset_api_client.download_dataset(request)
                with response:
                    size = _stream_to(response, part)
            except requests.HTTPError as exc:
                if exc.response is None:
                    raise _network_error(exc, slug, settings) from None
                raise _http_error(exc, slug, api, settings) from None
            except requests.RequestException as exc:
                raise _network_error(exc, slug, settings) from None
        _check_zip(part, slug, response.headers.get("Content-Type", ""), settings)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    log.info("saved Kaggle dataset %s as %s (%d bytes)", slug, dest, size)
    return dest
