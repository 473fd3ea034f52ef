"""Compare gradients entry by entry: relative errors that stay meaningful near zero.

The relative error of an entry is ``|a - r| / max(|a|, |r|, atol / rtol)``: relative
where the gradient is large, absolute (scaled by 1/rtol) where both values are near zero,
so it never blows up on a zero gradient. An entry mismatches when its relative error
exceeds ``rtol``, i.e. when ``|a - r| > max(rtol * max(|a|, |r|), atol)``.

Structural problems (a missing key, a transposed shape, NaN) are findings with a message,
never exceptions: the functions here take whatever student code returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .tolerances import Tolerance

__all__ = [
    "Status",
    "ParameterReport",
    "Bracket",
    "compare_gradients",
    "compare_parameter",
    "describe_value",
    "structural_problem",
    "relative_error",
    "norm_difference",
]

Status = Literal[
    "ok", "kink", "mismatch", "missing", "unexpected", "wrong_shape", "not_array", "not_finite"
]
PASSING: frozenset[str] = frozenset({"ok", "kink"})
STRUCTURAL: frozenset[str] = frozenset({"missing", "unexpected", "wrong_shape", "not_array", "not_finite"})
"""Statuses of a gradient that could not be compared value by value."""


@dataclass(frozen=True)
class Bracket:
    """Values accepted where the loss has a kink: [left, right] (see :mod:`gradcheck.kinks`).

    From the checks, ``left <= right`` at kinks: both one-sided slopes for a kink at the point,
    the smooth side's slope alone for a kink off the point.
    """

    left: np.ndarray
    right: np.ndarray
    kink: np.ndarray
    """Boolean mask: the loss is not differentiable within the step at this entry."""


@dataclass(frozen=True)
class ParameterReport:
    """How one parameter's analytic gradient compares with the reference gradient."""

    name: str
    status: Status
    expected_shape: tuple[int, ...] | None = None
    returned_shape: tuple[int, ...] | None = None
    max_relative_error: float = 0.0
    """Largest per-entry relative error (inf when the values could not be compared)."""
    norm_difference: float = 0.0
    """``||a - r|| / (||a|| + ||r||)``, the figure course notebooks print."""
    mismatched: int = 0
    """Entries whose relative error exceeds rtol (all of them for a structural problem)."""
    size: int = 0
    worst_index: tuple[int, ...] | None = None
    analytic: float | None = None
    """The student's value at the worst index."""
    reference: float | None = None
    """The reference (numerical or solution) value at the worst index."""
    kinks: int = 0
    """Entries accepted because the loss has a kink there and the value is in the bracket."""
    message: str = ""
    """One sentence for a person: what is wrong, or empty when all is well."""
    hint: str = ""
    """The likely cause, when a pattern is recognised (see gradcheck.diagnosis)."""
    scale: float | None = None
    """Best-fit alpha = <a, r> / <r, r>: -1 for a flipped sign, m for a missing 1/m."""
    cosine: float | None = None
    """Cosine between the analytic and reference gradients."""
    extras: Mapping[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in PASSING


def relative_error(a: np.ndarray, r: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """Per-entry relative error, bounded near zero by the absolute tolerance.

    Example:
        >>> import numpy as np
        >>> from gradcheck.tolerances import Tolerance
        >>> relative_error(np.array([1.0, 0.0]), np.array([1.1, 1e-12]), Tolerance(1e-5, 1e-8, 1e-6))
        array([9.09090909e-02, 1.00000000e-09])
    """
    floor = tolerance.atol / tolerance.rtol
    return np.abs(a - r) / np.maximum(np.maximum(np.abs(a), np.abs(r)), floor)


def norm_difference(a: np.ndarray, r: np.ndarray) -> float:
    """``||a - r|| / (||a|| + ||r||)``, 0 when both are zero."""
    return _fit(np.asarray(a, dtype=np.float64), np.asarray(r, dtype=np.float64))[2]


def compare_gradients(
    analytic: object,
    reference: Mapping[str, np.ndarray],
    tolerance: Tolerance,
    *,
    brackets: Mapping[str, Bracket] | None = None,
    what: str = "bprop",
) -> tuple[tuple[ParameterReport, ...], tuple[str, ...]]:
    """Compare whatever ``bprop`` returned with reference gradients, key by key.

    Args:
        analytic: the value bprop returned (anything: it is validated here).
        reference: the gradients to compare with (numerical or a reference solution's).
        tolerance: rtol/atol to apply.
        brackets: one-sided quotients per parameter, to accept values at kinks.
        what: how to name the function in messages.

    Returns:
        One report per expected parameter (and per unexpected key), and report-level
        problems (e.g. bprop did not return a dict).
    """
    if not isinstance(analytic, Mapping):
        # Every parameter's line says why: "returned no gradient for W1" hid that a tuple
        # (dW1, db1, ...) came back, the usual slip, or a dict with a key that is not a str.
        entries = ", ".join(f"{k!r}: d{k}" for k in reference)
        problem = (f"{what} returned {describe_value(analytic)}, not a dict of gradients: "
                   f"return {{{entries}}}, one entry per parameter")
        reports = tuple(
            ParameterReport(name, "missing", expected_shape=r.shape, size=r.size, mismatched=r.size,
                            max_relative_error=np.inf, message=problem)
            for name, r in reference.items()
        )
        return reports, (problem,)
    reports = [
        compare_parameter(name, analytic.get(name), expected, tolerance,
                          bracket=(brackets or {}).get(name), what=what, present=name in analytic)
        for name, expected in reference.items()
    ]
    for name in analytic:
        if name not in reference:
            reports.append(ParameterReport(
                str(name), "unexpected",
                message=f"{what} returned a gradient for {name!r}, which is not a parameter "
                        f"(the parameters are {', '.join(reference)})",
            ))
    return tuple(reports), ()


def compare_parameter(
    name: str,
    value: object,
    expected: np.ndarray,
    tolerance: Tolerance,
    *,
    bracket: Bracket | None = None,
    what: str = "bprop",
    present: bool = True,
) -> ParameterReport:
    """Validate one returned gradient and compare it with the reference entry by entry."""
    base = dict(name=name, expected_shape=tuple(expected.shape), size=int(expected.size))
    problem = structural_problem(name, value, expected, what, present)
    if problem is not None:
        status, returned_shape, message = problem
        return ParameterReport(status=status, returned_shape=returned_shape,
                               max_relative_error=np.inf, mismatched=int(expected.size),
                               message=message, **base)  # type: ignore[arg-type]
    analytic = np.array(value, dtype=np.float64)  # a copy: later perturbations cannot alias it
    reference = np.asarray(expected, dtype=np.float64)
    errors = relative_error(analytic, reference, tolerance)
    failing = errors > tolerance.rtol
    kinks = 0
    if bracket is not None:
        accepted = failing & bracket.kink & _inside(analytic, bracket, tolerance)
        kinks, failing = int(accepted.sum()), failing & ~accepted
        errors = np.where(accepted, 0.0, errors)
    worst = np.unravel_index(int(np.argmax(errors)), errors.shape) if errors.size else ()
    scale, cosine, difference = _fit(analytic, reference)
    mismatched = int(np.count_nonzero(failing))
    status: Status = "mismatch" if mismatched else ("kink" if kinks else "ok")
    return ParameterReport(
        status=status,
        returned_shape=tuple(analytic.shape),
        max_relative_error=float(errors[worst]) if errors.size else 0.0,
        norm_difference=difference,
        mismatched=mismatched,
        worst_index=tuple(int(i) for i in worst),
        analytic=float(analytic[worst]) if errors.size else None,
        reference=float(reference[worst]) if errors.size else None,
        kinks=kinks,
        message=_mismatch_message(name, mismatched, int(expected.size), kinks),
        scale=scale,
        cosine=cosine,
        **base,  # type: ignore[arg-type]
    )


def structural_problem(
    name: str, value: object, expected: np.ndarray, what: str, present: bool
) -> tuple[Status, tuple[int, ...] | None, str] | None:
    """(status, returned shape, message) when ``value`` cannot be compared with ``expected``."""
    if not present or value is None:
        reason = "no key" if not present else "None"
        return "missing", None, f"{what} returned {reason} for {name!r}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (np.ndarray, np.generic, int, float, list, tuple)):
        return "not_array", None, f"{what} returned {describe_value(value)} for {name!r}, not an array"
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return "not_array", None, f"{what} returned {describe_value(value)} for {name!r}, which is not numeric"
    if array.shape != expected.shape:
        if array.size == expected.size == 1:
            return None  # a scalar bias gradient of shape () or (1,) for (1, 1) is fine
        transposed = array.ndim == 2 and array.shape == expected.shape[::-1]
        note = " (the transpose)" if transposed else ""
        return ("wrong_shape", tuple(array.shape),
                f"{what} returned {name!r} with shape {array.shape}{note}; expected {expected.shape}, "
                f"the shape of {name} itself")  # a layer's x is an input, not a parameter
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        return ("not_finite", tuple(array.shape),
                f"{what} returned {int(bad.sum())} non-finite value(s) in {name!r}, first at index "
                f"{index}: {array[index]}")
    return None


def _inside(analytic: np.ndarray, bracket: Bracket, tolerance: Tolerance) -> np.ndarray:
    low = np.minimum(bracket.left, bracket.right)
    high = np.maximum(bracket.left, bracket.right)
    slack = np.maximum(tolerance.rtol * np.maximum(np.abs(low), np.abs(high)), tolerance.atol)
    return (analytic >= low - slack) & (analytic <= high + slack)


def _fit(analytic: np.ndarray, reference: np.ndarray) -> tuple[float | None, float | None, float]:
    """Least-squares scale of analytic on reference, their cosine, and norm_difference.

    One set of dot products for the three (the comparison runs for every parameter of every
    example of every student).
    """
    a, r = analytic.reshape(-1), reference.reshape(-1)
    d = a - r
    rr, aa, dd = float(r @ r), float(a @ a), float(d @ d)
    denominator = math.sqrt(aa) + math.sqrt(rr)
    difference = math.sqrt(dd) / denominator if denominator > 0 else 0.0
    if rr == 0.0 or aa == 0.0:
        return None, None, difference
    ar = float(a @ r)
    return ar / rr, ar / math.sqrt(aa * rr), difference


def _mismatch_message(name: str, mismatched: int, size: int, kinks: int) -> str:
    kink_note = f"; {kinks} entr{'y' if kinks == 1 else 'ies'} at a kink accepted" if kinks else ""
    if not mismatched:
        return f"{name}: within tolerance{kink_note}" if kinks else ""
    return f"{name}: {mismatched} of {size} entries differ from the reference{kink_note}"


def describe_value(value: object) -> str:
    """A few words for any value: "None", "a list of 3 items", "an array of shape (2, 3)"."""
    if value is None:
        return "None"
    marked = getattr(value, "type_name", None)  # a value the process boundary could not carry
    if isinstance(marked, str):
        summary = getattr(value, "summary", "")
        if marked == "numpy.ndarray" and summary:
            return f"an {summary} (gradients must be float arrays)"
        if marked in ("list", "tuple", "dict") and isinstance(summary, str) and summary.startswith(marked):
            return f"a {summary}"  # too long to send back, or a dict with a key that is not a str
        return f"a {marked}"
    kind = type(value).__name__
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (list, tuple)):
        return f"a {kind} of {len(value)} items"
    return f"a {kind}"


# Former private names, kept for modules that import them.
_structural_problem = structural_problem
_describe_value = describe_value
