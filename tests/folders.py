"""Hostile folder shapes, made without recursion (the point is that nothing may recurse)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def nest(folder: Path, levels: int, name: str = "d") -> None:
    """Make ``folder/d/d/.../d``, ``levels`` deep, through directory descriptors."""
    current = os.open(folder, os.O_RDONLY)
    for _ in range(levels):
        os.mkdir(name, dir_fd=current)
        below = os.open(name, os.O_RDONLY, dir_fd=current)
        os.close(current)
        current = below
    os.close(current)


def remove(path: Path) -> None:
    """Delete a tree too deep for shutil.rmtree (which recurses)."""
    subprocess.run(["rm", "-rf", str(path)], check=True)
