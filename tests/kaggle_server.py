"""A fake Kaggle API on 127.0.0.1 that the real kaggle client reaches as an HTTP proxy.

kaggle 2.2.5 has no setting for an arbitrary API address. With
KAGGLE_API_ENVIRONMENT=LOCALHOST (read when kaggle.api.kaggle_api_extended is
imported) the client sends its requests to http://localhost/api/v1/..., and
requests sends them through $HTTP_PROXY, so this server receives them in
absolute form ("POST http://localhost/api/v1/... HTTP/1.1") on a free port.

A dataset download is one request and a redirect, as on kaggle.com:

1. ``POST /api/v1/datasets.DatasetApiService/DownloadDataset`` with a JSON body
   ``{"ownerSlug": ..., "datasetSlug": ...}`` and basic auth (username and
   key) or a bearer token.
2. ``302`` to a storage link, which the client fetches with ``GET`` and reads
   as the zip. Kaggle links to a signed storage URL (the client's
   ``KaggleApi.download_file`` handles a 403 "once the signed URL has
   expired"). This server links to itself as 127.0.0.1, a different host from
   localhost, which NO_PROXY=127.0.0.1 reaches directly.

Each download request takes the next behaviour from ``plan``; the last one
repeats. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import base64
import http.server
import json
import sys
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

DOWNLOAD_PATH = "/api/v1/datasets.DatasetApiService/DownloadDataset"
STORAGE_PREFIX = "/storage/"
LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    b"<body><form action=\"/login\"><input name=\"user\"></form></body></html>\n"
)

# Behaviours of the download request, by name.
BEHAVIOURS = {
    "ok",  # redirect to the zip, served whole with Content-Length
    "401",  # JSON error, as Kaggle returns for bad credentials
    "403",  # JSON error, as Kaggle returns for a dataset whose rules were not accepted
    "404",  # JSON error, as Kaggle returns for an unknown owner/dataset
    "429",  # JSON error, as Kaggle returns when a client sends too many requests
    "503",  # an HTML error page from the front end
    "hang",  # read the request, never respond
    "drop",  # read the request, close the connection without a response
    "html",  # 200 with an HTML login page, as a captive portal returns
    "cut",  # redirect, then half the zip under the full Content-Length, then close
    "cut-unsized",  # redirect, then half the zip with no Content-Length, then close
    "stall",  # redirect, then half the zip, then silence
    "empty",  # redirect, then 200 with an empty body
}

ERROR_MESSAGES = {
    401: "Unauthenticated",
    403: "Permission 'datasets.get' was denied",
    404: "Not found",
    429: "Too many requests",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    authorization: str
    body: dict


class FakeKaggle:
    """A fake Kaggle API that serves ``archive`` (zip bytes) as any dataset, with the faults listed in ``plan``."""

    def __init__(self, archive: bytes, plan: list[str], username: str, key: str):
        unknown = [name for name in plan if name not in BEHAVIOURS]
        if not plan or unknown:
            raise ValueError(f"plan must list behaviours from {sorted(BEHAVIOURS)}, got {plan}")
        self.archive = archive
        self.plan = list(plan)
        self.expected_authorization = "Basic " + base64.b64encode(f"{username}:{key}".encode()).decode()
        self.requests: list[RecordedRequest] = []
        self.release = threading.Event()  # ends every "hang" and "stall" when set
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def downloads(self) -> list[RecordedRequest]:
        """The download API requests received so far, in order."""
        return [request for request in self.requests if request.path == DOWNLOAD_PATH]

    def storage_fetches(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path.startswith(STORAGE_PREFIX)]

    def start(self) -> FakeKaggle:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def record(self, request: RecordedRequest) -> int:
        """Store ``request`` and return the number of download requests received before it."""
        with self._lock:
            earlier = len(self.downloads())
            self.requests.append(request)
        return earlier

    def behaviour(self, index: int) -> str:
        return self.plan[min(index, len(self.plan) - 1)]


class _QuietServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that ignores clients closing their connections, as timed-out clients do."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def _handler_for(fake: FakeKaggle) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length)
            path = urlsplit(self.path).path
            body = json.loads(raw_body) if raw_body else {}
            index = fake.record(RecordedRequest("POST", path, self.headers.get("Authorization", ""), body))
            if path != DOWNLOAD_PATH:
                self.send_json(404, {"code": 404, "message": f"no fake for {path}"})
                return
            if self.headers.get("Authorization") != fake.expected_authorization:
                self.send_json(401, {"code": 401, "message": ERROR_MESSAGES[401]})
                return
            self.respond_to_download(fake.behaviour(index), body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            fake.record(RecordedRequest("GET", path, self.headers.get("Authorization", ""), {}))
            if not path.startswith(STORAGE_PREFIX):
                self.send_json(404, {"code": 404, "message": f"no fake for {path}"})
                return
            # The storage path is /storage/<behaviour>/<dataset>.zip.
            self.send_archive(path.split("/")[2])

        def respond_to_download(self, behaviour: str, body: dict) -> None:
            if behaviour in ("401", "403", "404", "429"):
                status = int(behaviour)
                self.send_json(status, {"code": status, "message": ERROR_MESSAGES[status]})
            elif behaviour == "503":
                self.send_bytes(503, b"<html><body>Service Unavailable</body></html>", "text/html")
            elif behaviour == "hang":
                fake.release.wait(60)
                self.close_connection = True
            elif behaviour == "drop":
                self.close_connection = True
            elif behaviour == "html":
                self.send_bytes(200, LOGIN_PAGE, "text/html; charset=utf-8")
            else:
                location = f"{fake.proxy_url}{STORAGE_PREFIX}{behaviour}/{body.get('datasetSlug', 'dataset')}.zip"
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        def send_archive(self, behaviour: str) -> None:
            data = fake.archive
            if behaviour in ("ok", "empty"):
                self.send_bytes(200, data if behaviour == "ok" else b"", "application/zip")
                return
            half = data[: len(data) // 2]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            if behaviour != "cut-unsized":
                self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(half)
            self.wfile.flush()
            if behaviour == "stall":
                fake.release.wait(60)
            self.close_connection = True

        def send_json(self, status: int, payload: dict) -> None:
            self.send_bytes(status, json.dumps(payload).encode(), "application/json")

        def send_bytes(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
