"""Array helpers the diagnosis modules share: what a student returned, and when two agree."""

from __future__ import annotations

import numpy as np

from ..comparison import relative_error
from ..tolerances import Tolerance

__all__ = ["aligned", "as_array", "close"]


def as_array(value: object) -> np.ndarray | None:
    """``value`` as a float64 array, or None when it is not numbers (a string, a dict...)."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None


def aligned(a: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``a`` in the shape of ``r`` when both hold one number: a scalar for a (1, 1) bias is fine."""
    return a.reshape(r.shape) if a.shape != r.shape and a.size == r.size == 1 else a


def close(a: np.ndarray, b: np.ndarray, tolerance: Tolerance) -> bool:
    """True when ``a`` and ``b`` have one shape and agree entry by entry to ``tolerance``."""
    return a.shape == b.shape and bool(np.all(relative_error(a, b, tolerance) <= tolerance.rtol))
