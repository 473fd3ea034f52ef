"""Default tolerances and finite-difference steps, per dtype.

Tolerances are data, not magic numbers scattered through the checker. A float64 loss is
accurate to about 1e-16, so a central difference with step 1e-6 is accurate to about
1e-10 and a relative tolerance of 1e-5 leaves a wide margin. A float32 loss is accurate
to about 1e-7 only: the step must be larger (1e-3) and the tolerance looser (2e-3, as in
jax's ``default_gradient_tolerance``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["Tolerance", "DEFAULT_TOLERANCES", "tolerance_for", "Float32Warning"]


@dataclass(frozen=True)
class Tolerance:
    """How close an analytic gradient must be to the numerical one.

    An entry mismatches when ``|a - n| > atol + rtol * max(|a|, |n|)``.
    """

    rtol: float
    """Relative tolerance, used where the gradient is large."""
    atol: float
    """Absolute tolerance, used where the gradient is near zero."""
    eps: float
    """Finite-difference step that balances truncation and rounding error for this dtype."""


DEFAULT_TOLERANCES: Mapping[np.dtype, Tolerance] = {
    np.dtype(np.float64): Tolerance(rtol=1e-5, atol=1e-8, eps=1e-6),
    np.dtype(np.float32): Tolerance(rtol=2e-3, atol=1e-4, eps=1e-3),
    np.dtype(np.float16): Tolerance(rtol=5e-2, atol=1e-2, eps=1e-2),
    np.dtype(np.complex128): Tolerance(rtol=1e-5, atol=1e-8, eps=1e-6),
}


class Float32Warning(UserWarning):
    """Gradients checked in reduced precision are checked with looser tolerances."""


def tolerance_for(dtype: np.dtype | type, *, warn: bool = False) -> Tolerance:
    """Return the default tolerance for arrays of ``dtype``.

    Args:
        dtype: the dtype of the parameters being checked.
        warn: emit a :class:`Float32Warning` when the dtype is below float64.

    Returns:
        The :class:`Tolerance` for that dtype (float64's for integer and unknown dtypes).

    Example:
        >>> tolerance_for(np.float32).rtol
        0.002
    """
    dtype = np.dtype(dtype)
    tolerance = DEFAULT_TOLERANCES.get(dtype, DEFAULT_TOLERANCES[np.dtype(np.float64)])
    if warn and dtype.kind == "f" and dtype.itemsize < 8:
        warnings.warn(
            f"checking gradients in {dtype}: finite differences are only accurate to about "
            f"{tolerance.rtol:g} relative; use float64 parameters for a sharper check",
            Float32Warning,
            stacklevel=3,
        )
    return tolerance
