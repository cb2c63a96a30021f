"""The machine a benchmark ran on, for the line above its table."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    """`2 cores, Intel(R) Xeon(R) …, Python 3.11.2`: what a figure is only true for."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return f"{cores} cores, {model}, Python {platform.python_version()}"
