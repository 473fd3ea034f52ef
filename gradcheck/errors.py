"""Exceptions raised by gradcheck: a mismatch is an AssertionError, misuse is a TypeError."""

from __future__ import annotations

__all__ = ["GradientMismatchError", "InvalidArgument"]


class GradientMismatchError(AssertionError):
    """Analytic and numerical gradients disagree.

    Subclasses ``AssertionError`` so that pytest reports it as a test failure, with the
    per-parameter table as its message. ``report`` holds the full
    :class:`gradcheck.GradientReport`.
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class InvalidArgument(TypeError):
    """gradcheck was called wrongly; the message says how to fix the call."""
