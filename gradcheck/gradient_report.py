"""The report every check returns (:class:`GradientReport`) and its table.

A module of its own so that the full check (``checking``), the fast check (``fast``) and the
layer checks (``layers``) build the same report without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .comparison import ParameterReport
from .tolerances import Tolerance, tolerance_for

__all__ = ["GradientReport", "format_report"]


@dataclass(frozen=True)
class GradientReport:
    """The result of a gradient check: per-parameter findings and the settings used.

    Returned by :func:`gradcheck.check_gradients`, :func:`gradcheck.check_layer` and
    :func:`gradcheck.check_loss` alike.
    """

    parameters: tuple[ParameterReport, ...]
    problems: tuple[str, ...] = ()
    """Findings that fail the check on their own (fprop raised, loss not reproducible, ...)."""
    warnings: tuple[str, ...] = ()
    """Findings that do not fail the check (e.g. fprop modified its inputs)."""
    loss: float | None = None
    dtype: str = "float64"
    tolerance: Tolerance = field(default_factory=lambda: tolerance_for(np.float64))
    method: str = "central"
    eps: float = 1e-6
    evaluations: int = 0
    """How many times fprop (or forward, or the loss function) was called."""
    name: str = ""
    """What was checked, e.g. the network's name; used in messages."""
    noun: str = "parameters"
    """What the entries of ``parameters`` are called in the table: parameters or inputs."""

    @property
    def ok(self) -> bool:
        """True when there is no problem and every parameter is within tolerance."""
        return not self.problems and all(p.ok for p in self.parameters)

    @property
    def max_relative_error(self) -> float:
        """The largest relative error over all parameters (inf for a structural problem)."""
        if self.problems and not self.parameters:
            return float("inf")
        return max((p.max_relative_error for p in self.parameters), default=0.0)

    def __getitem__(self, name: str) -> ParameterReport:
        for report in self.parameters:
            if report.name == name:
                return report
        raise KeyError(name)

    def __str__(self) -> str:
        return format_report(self)


def format_report(report: GradientReport) -> str:
    """The per-parameter table: status, worst entry with both values, error, likely cause."""
    subject = f"gradient check of {report.name}" if report.name else "gradient check"
    t = report.tolerance
    settings = (f"{report.dtype}, {report.method} differences, eps={report.eps:g}, "
                f"rtol={t.rtol:g}, atol={t.atol:g}")
    failing = [p for p in report.parameters if not p.ok]
    noun = report.noun
    if report.ok:
        size = len(report.parameters)
        agree = f"1 {noun.removesuffix('s')} agrees" if size == 1 else f"{size} {noun} agree"
        head = f"{subject} passed: {agree} ({settings})"
    else:
        count = (f"{len(failing)} of {len(report.parameters)} {noun} disagree"
                 if report.parameters and failing else "could not compare" if not report.parameters
                 else f"{len(report.problems)} problem{'s' if len(report.problems) > 1 else ''}")
        head = f"{subject} failed: {count} ({settings})"
    lines = [head]
    lines += [f"  problem: {problem}" for problem in report.problems]
    if report.parameters:
        lines += ["", *_table(report.parameters, "param" if noun == "parameters" else "input")]
    for p in report.parameters:
        for text in (p.message if p.status != "ok" else "", p.hint):
            if text:
                lines.append(f"  {p.name}: {text.removeprefix(p.name + ': ')}")
    lines += [f"  note: {warning}" for warning in report.warnings]
    return "\n".join(lines)


def _table(parameters: tuple[ParameterReport, ...], first: str) -> list[str]:
    header = (first, "shape", "status", "max rel err", "mismatched", "worst index", "analytic", "numerical")
    rows = [header]
    for p in parameters:
        rows.append((
            p.name,
            _shape(p.expected_shape),
            p.status.upper() if not p.ok else p.status,
            f"{p.max_relative_error:.2e}" if np.isfinite(p.max_relative_error) else "-",
            f"{p.mismatched}/{p.size}" if p.size else "-",
            str(p.worst_index) if p.worst_index is not None and p.mismatched else "",
            f"{p.analytic:.8g}" if p.analytic is not None and p.mismatched else "",
            f"{p.reference:.8g}" if p.reference is not None and p.mismatched else "",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _shape(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "(" + ", ".join(map(str, shape)) + ")"
