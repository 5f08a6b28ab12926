"""A loopback HTTP server that serves real files or scripted faults, for download tests.

A test scripts the responses for a path in order, and the last response repeats::

    server = FaultServer(MNIST_DIR)
    server.script("t10k-labels-idx1-ubyte.gz", status(503), serve())   # 503 once, then the file
    server.script("t10k-images-idx3-ubyte.gz", hang())                  # never responds
    ...
    server.labels("t10k-labels-idx1-ubyte.gz")  # ['503', 'serve']

An unscripted path gets the file of that name from the root folder, or 404.
Every request is recorded with the label of the response it got. close() wakes
every handler that waits in hang() or pause(), so shutdown never blocks.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Maximum wait of a paused or hanging handler, so a forgotten release cannot keep a thread alive.
MAX_WAIT_S = 60


@dataclass
class ScriptedResponse:
    """One scripted response: a label for the request record and the function that writes the response."""

    label: str
    respond: Callable[["FaultHandler", bytes | None], None]
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let a pause() response send the rest of its body."""
        self.released.set()


def _send_bytes(handler: "FaultHandler", data: bytes, declared_length: int | None = None) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(len(data) if declared_length is None else declared_length))
    handler.end_headers()
    handler.wfile.write(data)


def _require(data: bytes | None, handler: "FaultHandler") -> bytes:
    if data is None:
        raise FileNotFoundError(f"fault server: no file {handler.path!r} under {handler.server.root}")
    return data


def serve() -> ScriptedResponse:
    """Send the real file with its full Content-Length."""
    return ScriptedResponse("serve", lambda handler, data: _send_bytes(handler, _require(data, handler)))


def status(code: int) -> ScriptedResponse:
    """ScriptedResponse with an HTTP status and a short text body, such as 403 or 503."""

    def respond(handler: FaultHandler, data: bytes | None) -> None:
        body = f"scripted status {code}\n".encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return ScriptedResponse(str(code), respond)


def cut(size: int) -> ScriptedResponse:
    """Send only the first ``size`` bytes, as a complete response: a mirror that stores a cut file."""
    return ScriptedResponse(f"cut {size}", lambda handler, data: _send_bytes(handler, _require(data, handler)[:size]))


def drop(size: int) -> ScriptedResponse:
    """Declare the full Content-Length, send ``size`` bytes, then close the connection."""

    def respond(handler: FaultHandler, data: bytes | None) -> None:
        data = _require(data, handler)
        _send_bytes(handler, data[:size], declared_length=len(data))
        handler.close_connection = True

    return ScriptedResponse(f"drop {size}", respond)


def empty() -> ScriptedResponse:
    """Send a 200 response with a 0-byte body."""
    return ScriptedResponse("empty", lambda handler, data: _send_bytes(handler, b""))


def body(content: bytes) -> ScriptedResponse:
    """Send other bytes than the file, so the md5 differs."""
    return ScriptedResponse(f"body {len(content)}", lambda handler, data: _send_bytes(handler, content))


def hang() -> ScriptedResponse:
    """Read the request and never respond until the server closes."""

    def respond(handler: FaultHandler, data: bytes | None) -> None:
        handler.server.closing.wait(MAX_WAIT_S)
        handler.close_connection = True

    return ScriptedResponse("hang", respond)


def pause(after_bytes: int) -> ScriptedResponse:
    """Send the headers and the first ``after_bytes`` bytes, then wait for release() before the rest."""
    released = threading.Event()

    def respond(handler: FaultHandler, data: bytes | None) -> None:
        data = _require(data, handler)
        _send_bytes(handler, data[:after_bytes], declared_length=len(data))
        handler.wfile.flush()
        for _ in range(MAX_WAIT_S * 10):
            if released.wait(0.1) or handler.server.closing.is_set():
                break
        handler.wfile.write(data[after_bytes:])

    return ScriptedResponse(f"pause {after_bytes}", respond, released)


class FaultHandler(http.server.BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:
        name = self.path.lstrip("/").split("?")[0]
        response = self.server.owner.next_response(name)
        path = self.server.root / name
        data = path.read_bytes() if name and path.is_file() else None
        if response is None:
            response = serve() if data is not None else status(404)
        self.server.owner.record(name, response.label)
        try:
            response.respond(self, data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first, as a client that timed out does.
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: "FaultServer"
    root: Path
    closing: threading.Event


class FaultServer:
    """A threaded HTTP server on 127.0.0.1 with a free port. Use it as a context manager or call close()."""

    def __init__(self, root: Path):
        self._lock = threading.Lock()
        self._scripts: dict[str, list[ScriptedResponse]] = {}
        self._requests: list[tuple[str, str]] = []
        self._server = _Server(("127.0.0.1", 0), FaultHandler)
        self._server.owner = self
        self._server.root = Path(root)
        self._server.closing = threading.Event()
        # A short poll interval keeps shutdown() fast, because the default waits up to 0.5 s.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"

    def script(self, name: str, *responses: ScriptedResponse) -> None:
        """Respond to requests for ``name`` with ``responses`` in order. The last one repeats."""
        if not responses:
            raise ValueError("script() needs at least one response")
        with self._lock:
            self._scripts[name] = list(responses)

    def next_response(self, name: str) -> ScriptedResponse | None:
        with self._lock:
            queue = self._scripts.get(name)
            if not queue:
                return None
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def record(self, name: str, label: str) -> None:
        with self._lock:
            self._requests.append((name, label))

    def labels(self, name: str) -> list[str]:
        """List the response labels of the requests for ``name`` so far, in order."""
        with self._lock:
            return [label for requested, label in self._requests if requested == name]

    def count(self, name: str) -> int:
        """Count the requests for ``name`` so far."""
        return len(self.labels(name))

    def close(self) -> None:
        """Wake waiting handlers, stop serving and free the port. A second call does nothing."""
        if self._server.closing.is_set():
            return
        self._server.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FaultServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
