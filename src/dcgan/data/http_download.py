"""Download one file over HTTP from a list of mirrors, with time-outs, retries and an md5 check.

Rules, per file:

- Each request has a connect and read time-out of ``settings.timeout_s``.
- A 5xx response, a time-out, a refused or dropped connection is transient, so the
  same mirror is requested again up to ``settings.retries`` times, after
  ``retry_delay_s``, then twice that, and so on. After the last retry the next
  mirror is requested.
- A 4xx response, any other non-2xx response, an invalid URL or a redirect loop moves
  to the next mirror at once, and that mirror is not requested again for this file.
- A complete download whose md5 differs from the expected one (a cut file, an empty
  file, other bytes) is deleted and the next mirror is requested. When no mirror served
  a valid copy, the mirror that served the invalid one is requested once more, because a
  copy can be damaged in transit. A second invalid copy ends the download, so a file
  is downloaded completely at most twice.

The body is streamed to ``<name>.partial`` in the destination folder and renamed
to ``<name>`` with os.replace only after the md5 matched, so a killed process never
leaves a file under the final name that looks complete. On every failure the
partial file is deleted and a UserError with one line is raised.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from dcgan.config import IngestConfig
from dcgan.data.mnist_idx import md5sum
from dcgan.errors import UserError

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
# Ask for the stored bytes: a server that compresses on the fly would change the md5.
REQUEST_HEADERS = {"Accept-Encoding": "identity"}
# The first download and one more after an invalid copy.
CONTENT_ATTEMPTS = 2


class _TransientFailure(Exception):
    """A failure that may pass on a retry: 5xx, time-out, refused or dropped connection."""


class _PermanentFailure(Exception):
    """A failure that retrying the same mirror will not fix: 4xx, invalid URL, redirect loop."""


class _InvalidContent(Exception):
    """A complete download whose md5 differs from the expected one."""


@dataclass
class _MirrorResult:
    """The outcome of requesting one file from one mirror, for the log and the final error."""

    url: str
    description: str
    invalid_content: bool = False


def _file_url(mirror: str, name: str) -> str:
    """Join a mirror base URL and a file name, whether or not the base ends with a slash."""
    return mirror.rstrip("/") + "/" + name


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g} s"


def _connection_reason(exc: BaseException) -> str:
    """Name the innermost socket error of a requests or urllib3 exception, such as 'Connection refused'."""
    seen = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        for child in (getattr(current, "reason", None), current.__cause__, current.__context__, *current.args):
            if isinstance(child, BaseException):
                pending.append(child)
    return _one_line(exc) or type(exc).__name__


def _is_timeout(exc: BaseException) -> bool:
    """Tell whether a requests or urllib3 exception, or one it wraps, is a time-out."""
    current: BaseException | None = exc
    for _ in range(8):
        # urllib3 2.x derives NewConnectionError (refused, no route, unknown host) from ConnectTimeoutError.
        if current is None or isinstance(current, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(current, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
            return True
        wrapped = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = wrapped or getattr(current, "reason", None) or current.__cause__
    return False


def _stream_to_file(session: requests.Session, url: str, partial: Path, name: str, timeout_s: float) -> None:
    """Send one GET and write the body to ``partial``.

    Raises _TransientFailure or _PermanentFailure with a short description such as
    '403', '503', 'timed out after 1 s' or 'connection dropped after 49152 of 1648877 bytes'.
    """
    timeout = _format_seconds(timeout_s)
    # NOTE: requests applies the read time-out to each socket read, not to the whole body,
    # so a server that keeps sending a few bytes within every timeout_s is never cut off.
    try:
        response = session.get(url, stream=True, timeout=(timeout_s, timeout_s), headers=REQUEST_HEADERS)
    except requests.Timeout:
        raise _TransientFailure(f"timed out after {timeout}") from None
    except requests.ConnectionError as exc:
        if _is_timeout(exc):
            raise _TransientFailure(f"timed out after {timeout}") from None
        raise _TransientFailure(f"connection failed ({_connection_reason(exc)})") from None
    except requests.TooManyRedirects:
        raise _PermanentFailure("too many redirects") from None
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema) as exc:
        raise _PermanentFailure(f"invalid URL ({_one_line(exc)})") from None

    with response:
        if response.status_code >= 500:
            raise _TransientFailure(str(response.status_code))
        if not 200 <= response.status_code < 300:
            raise _PermanentFailure(str(response.status_code))
        declared = response.headers.get("Content-Length")
        total = int(declared) if declared and declared.isdigit() else None
        written = 0
        progress = tqdm(total=total, desc=name, unit="B", unit_scale=True, unit_divisor=1024)
        try:
            with open(partial, "wb") as handle:
                # response.raw keeps the bytes as sent, even when a server adds Content-Encoding.
                for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                    handle.write(chunk)
                    written += len(chunk)
                    progress.update(len(chunk))
        except (urllib3.exceptions.HTTPError, requests.RequestException, ConnectionError) as exc:
            if _is_timeout(exc):
                raise _TransientFailure(f"timed out after {timeout} with {written} bytes received") from None
            of_total = f" of {total}" if total is not None else ""
            raise _TransientFailure(f"connection dropped after {written}{of_total} bytes") from None
        finally:
            progress.close()
    if total is not None and written != total:
        raise _TransientFailure(f"connection dropped after {written} of {total} bytes")


def _fetch_from_mirror(session: requests.Session, url: str, partial: Path, name: str, md5: str,
                      settings: IngestConfig) -> None:
    """Download ``url`` to ``partial`` and check its md5, retrying transient failures with backoff.

    Raises _PermanentFailure, _InvalidContent, or _TransientFailure once the retries are spent.
    The message of each is the description for the final error.
    """
    reasons = []
    for attempt in range(settings.retries + 1):
        try:
            _stream_to_file(session, url, partial, name, settings.timeout_s)
        except _TransientFailure as exc:
            partial.unlink(missing_ok=True)
            reasons.append(str(exc))
            if attempt == settings.retries:
                break
            delay = settings.retry_delay_s * 2**attempt
            log.warning("%s: %s; retry %d of %d in %s", url, exc, attempt + 1, settings.retries,
                        _format_seconds(delay))
            time.sleep(delay)
            continue
        except _PermanentFailure:
            partial.unlink(missing_ok=True)
            raise

        actual = md5sum(partial)
        if actual != md5:
            size = partial.stat().st_size
            partial.unlink()
            raise _InvalidContent(f"{size} bytes with md5 {actual}")
        return
    raise _TransientFailure(_describe_retries(reasons))


def _describe_retries(reasons: list[str]) -> str:
    """Summarise the outcomes of all attempts on one mirror.

    Examples: '503 after 3 retries', 'timed out after 1 s on all 4 attempts', '2 attempts: 503, 502'.
    """
    retries = len(reasons) - 1
    if retries == 0:
        return reasons[0]
    if len(set(reasons)) > 1:
        return f"{len(reasons)} attempts: " + ", ".join(reasons)
    if reasons[0].isdigit():
        return f"{reasons[0]} after {retries} {'retry' if retries == 1 else 'retries'}"
    return f"{reasons[0]} on all {len(reasons)} attempts"


def download_verified(name: str, md5: str, mirrors: Sequence[str], dest: Path, settings: IngestConfig,
                      alternative: str, session: requests.Session | None = None) -> Path:
    """Download ``name`` from the first mirror that serves it with the expected md5 into ``dest``.

    ``alternative`` is what the user can do instead of downloading, such as
    'set data.mnist.source: dir with files you already have'. It ends every error.
    Returns the final path. Raises UserError, as one line, when no mirror served a valid copy.
    """
    if not mirrors:
        raise UserError(f"no mirror to download {name} from; add a mirror URL, or {alternative}")
    dest.mkdir(parents=True, exist_ok=True)
    final = dest / name
    partial = dest / f"{name}.partial"
    own_session = session is None
    session = session or requests.Session()
    urls = [_file_url(mirror, name) for mirror in mirrors]
    results: list[_MirrorResult] = []
    try:
        for _ in range(CONTENT_ATTEMPTS):
            served_invalid = []
            for index, url in enumerate(urls):
                next_step = "trying the next mirror" if index + 1 < len(urls) else "no mirror left"
                log.info("downloading %s", url)
                try:
                    _fetch_from_mirror(session, url, partial, name, md5, settings)
                except _PermanentFailure as exc:
                    results.append(_MirrorResult(url, str(exc)))
                    log.warning("%s: %s, not retried; %s", url, exc, next_step)
                    continue
                except _TransientFailure as exc:
                    results.append(_MirrorResult(url, str(exc)))
                    log.warning("%s: %s; %s", url, exc, next_step)
                    continue
                except _InvalidContent as exc:
                    results.append(_MirrorResult(url, str(exc), invalid_content=True))
                    served_invalid.append(url)
                    log.warning("%s: %s, expected md5 %s; deleted it", url, exc, md5)
                    if _count_invalid(results) == CONTENT_ATTEMPTS:
                        break
                    continue
                os.replace(partial, final)
                log.info("downloaded %s from %s, md5 %s matches", name, url, md5)
                return final
            # Only a mirror that served a complete copy is asked again: the others already had their retries.
            urls = served_invalid
            if not urls or _count_invalid(results) == CONTENT_ATTEMPTS:
                break
            log.warning("downloading %s once more from %s", name, ", ".join(urls))
    except OSError as exc:
        # Network errors are handled above, so this is the local disk: full, read-only or missing.
        raise UserError(f"could not write {partial}: {exc.strerror or exc}; free disk space or fix the "
                        f"permissions of {dest}, or {alternative}") from None
    finally:
        partial.unlink(missing_ok=True)
        if own_session:
            session.close()
    raise UserError(_failure_message(name, md5, results, alternative))


def _count_invalid(results: list[_MirrorResult]) -> int:
    return sum(result.invalid_content for result in results)


def _failure_message(name: str, md5: str, results: list[_MirrorResult], alternative: str) -> str:
    """Build the one-line error: the file, each mirror with its outcome, and what to do."""
    outcomes = ", ".join(f"{result.url}: {_one_line(result.description)}" for result in results)
    if any(result.invalid_content for result in results):
        return (
            f"download of {name} failed: no mirror served a valid copy ({outcomes}), "
            f"expected md5 {md5}; a mirror serves a damaged or different file: "
            f"try again later or another mirror, or {alternative}"
        )
    return (
        f"download of {name} failed from every mirror ({outcomes}); "
        f"check the network, or {alternative}"
    )
