"""Name the likely cause of a wrong gradient from the pattern of the mismatch.

Evidence per parameter is the best-fit scale alpha = <a, r> / <r, r> and the cosine
between the student's gradient a and the reference r: a flipped sign is alpha = -1 with
cosine -1, a missing 1/m is alpha = m with cosine 1, a transposed square matrix matches
r.T exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from .comparison import ParameterReport

__all__ = ["annotate", "hint_for"]

# alpha values a student is likely to be off by, with how to say it.
_KNOWN_FACTORS = ((2.0, "2 (the 1/2 of the squared loss, or a doubled term)"),
                  (0.5, "1/2 (the derivative of 0.5 * e**2 is e, not e / 2)"))


def annotate(
    reports: tuple[ParameterReport, ...],
    analytic: object,
    reference: Mapping[str, np.ndarray],
    *,
    batch_size: int | None = None,
) -> tuple[ParameterReport, ...]:
    """Return the reports with a ``hint`` on every failing parameter whose pattern is clear."""
    values = analytic if isinstance(analytic, Mapping) else {}
    return tuple(
        report if report.ok or report.hint else
        replace(report, hint=hint_for(report, values.get(report.name), reference.get(report.name),
                                      batch_size=batch_size))
        for report in reports
    )


def hint_for(
    report: ParameterReport,
    analytic: object,
    reference: np.ndarray | None,
    *,
    batch_size: int | None = None,
) -> str:
    """One plain sentence naming the likely cause, or '' when no simple pattern fits."""
    name = report.name
    if report.status == "wrong_shape" and report.returned_shape == (report.expected_shape or ())[::-1]:
        return (f"d{name} has the transposed shape: in a column-vector network dW = delta @ a_prev.T, "
                "in a row-vector network dW = a_prev.T @ delta")
    if report.status == "wrong_shape" and name.startswith("b"):
        return (f"d{name} has shape {report.returned_shape}: the bias gradient must be summed over the "
                "batch (np.sum(delta, axis=..., keepdims=True))")
    if report.status != "mismatch" or reference is None or analytic is None:
        return ""
    a = np.asarray(analytic, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if not np.any(a):
        return f"d{name} is all zeros: is it computed at all, or overwritten?"
    if a.ndim == 2 and a.shape[0] == a.shape[1] and np.allclose(a, r.T, rtol=1e-4, atol=1e-8):
        return (f"d{name} equals the reference transposed: swap the operands of the product "
                "(delta @ a_prev.T vs a_prev.T @ delta)")
    if report.cosine is None or report.scale is None:
        return ""
    alpha, cosine = report.scale, report.cosine
    if cosine < -0.9999 and abs(alpha + 1) < 1e-3:
        return f"d{name} has the sign flipped: the error term is (prediction - target), not (target - prediction)"
    if cosine > 0.9999:
        return _factor_hint(name, alpha, batch_size)
    return ""


def _factor_hint(name: str, alpha: float, batch_size: int | None) -> str:
    candidates = list(_KNOWN_FACTORS)
    if batch_size and batch_size > 1:
        candidates += [(float(batch_size), f"m = {batch_size} (the batch size: a sum where a mean is expected?)"),
                       (1.0 / batch_size, f"1/m = 1/{batch_size} (divided by the batch size, but the loss is a sum)")]
    for factor, words in candidates:
        if abs(alpha - factor) < 1e-3 * factor:
            return f"d{name} is the reference times {words}"
    return f"d{name} points the right way but is scaled by {alpha:.4g}"
