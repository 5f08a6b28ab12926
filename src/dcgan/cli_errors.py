"""Turn UserError into one line on stderr and exit status 2, unless a traceback is requested."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from dcgan.errors import UserError

TRACEBACK_ENV = "DCGAN_TRACEBACK"


class _HideUserErrorTraceback(logging.Filter):
    """Drop the traceback from log records about a UserError; the message is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UserError):
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_errors() -> None:
    """Keep Prefect's run loggers from printing tracebacks for user errors."""
    if os.environ.get(TRACEBACK_ENV):
        return
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(_HideUserErrorTraceback())


def show_project_logs() -> None:
    """Print the project's INFO logs on stderr.

    Importing Prefect configures the root logger first, so ``basicConfig`` alone would leave them hidden.
    """
    logger = logging.getLogger("dcgan")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run_main(main: Callable[[], None]) -> None:
    """Run ``main``; on UserError print 'error: ...' and exit 2 (traceback with DCGAN_TRACEBACK=1)."""
    show_project_logs()
    quiet_user_errors()
    try:
        main()
    except UserError as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        # A requested stop (SIGTERM, Ctrl-C) carries the shell's exit code for that signal.
        exit_code = getattr(exc, "exit_code", 2)
        print(f"{'stopped' if exit_code != 2 else 'error'}: {exc}", file=sys.stderr)
        sys.exit(exit_code)
