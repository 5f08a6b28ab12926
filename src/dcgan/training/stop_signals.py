"""Turn SIGTERM and Ctrl-C into a request that the loop honours after the current step."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class StopRequest:
    """The signal that asked training to stop, or None while none has arrived."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """Return the shell's code for death by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + int(self.signal)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGTERM and SIGINT while training runs; restore the previous handlers afterwards."""
    request = StopRequest()

    def handle(signum: int, frame) -> None:
        request.signal = signal.Signals(signum)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
