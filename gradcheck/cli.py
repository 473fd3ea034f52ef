"""Command line behind grader.py (the grader lands with its own issue)."""

from __future__ import annotations

import sys


def main() -> int:
    print("grader.py: the grader is coming (issue 3); use gradcheck.check_gradients meanwhile", file=sys.stderr)
    return 2
