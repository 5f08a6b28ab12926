"""The machine description that every benchmark prints beside its figures."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """Return the CPU model from /proc/cpuinfo, or the architecture where that file is missing."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
