"""Which processes are alive: for tests that check that nothing outlives a run."""

from __future__ import annotations

import os
import time
from pathlib import Path


def processes_with_environment(entry: str) -> list[str]:
    """Living processes whose environment holds ``entry`` ("NAME=value"), as command lines.

    Every process a grading run starts inherits its environment (workers, fork servers,
    monitors, student children), so a variable set for one run finds all of them.
    """
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if entry.encode() in environment and state != "Z":
            found.append(f"{pid}: {command}")
    return found


def survivors(entry: str, wait: float = 5.0) -> list[str]:
    """:func:`processes_with_environment` once they have had ``wait`` seconds to end."""
    deadline = time.monotonic() + wait
    while processes_with_environment(entry) and time.monotonic() < deadline:
        time.sleep(0.05)
    return processes_with_environment(entry)
