"""Check a hand-written ``bprop`` against finite differences of its own ``fprop``.

``check_gradients`` never raises because student code misbehaves: a bprop that crashes,
returns a list, or the transpose is a finding in the report. It raises
:class:`InvalidArgument` only when *it* is called wrongly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .comparison import Bracket, ParameterReport, _describe_value, compare_gradients
from .differentiation import Method, _check_params, central_differences, numerical_gradient
from .errors import GradientMismatchError, InvalidArgument
from .tolerances import Tolerance, tolerance_for

__all__ = ["GradientReport", "assert_gradients_close", "check_gradients", "loss_of", "scalar_loss"]


@dataclass(frozen=True)
class GradientReport:
    """The result of :func:`check_gradients`: per-parameter findings and the settings used."""

    parameters: tuple[ParameterReport, ...]
    problems: tuple[str, ...] = ()
    """Findings that stopped the comparison (fprop raised, loss not a scalar, ...)."""
    warnings: tuple[str, ...] = ()
    """Findings that do not fail the check (e.g. fprop modified its inputs)."""
    loss: float | None = None
    dtype: str = "float64"
    tolerance: Tolerance = field(default_factory=lambda: tolerance_for(np.float64))
    method: str = "central"
    eps: float = 1e-6
    evaluations: int = 0
    """How many times fprop was called."""
    name: str = ""
    """What was checked, e.g. the network's name; used in messages."""

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


def check_gradients(
    fprop: Callable[..., object],
    bprop: Callable[[object], object],
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    *,
    eps: float | None = None,
    method: Method = "central",
    rtol: float | None = None,
    atol: float | None = None,
    fprop_kwargs: Mapping[str, object] | None = None,
    name: str = "",
    mode: Literal["full", "fast"] = "full",
    max_entries: int | Literal["all"] | None = None,
    seed: int = 0,
) -> GradientReport:
    """Compare ``bprop(fprop(x, y, params))`` with numerical gradients of the loss.

    The caller's arrays are never modified: fprop and bprop work on copies.

    Args:
        fprop: ``fprop(x, y, params) -> dict`` with a scalar ``"loss"`` (the cache).
        bprop: ``bprop(cache) -> dict`` of gradients with the keys and shapes of params.
        x, y: a batch of inputs and targets.
        params: dict of floating-point arrays.
        eps: finite-difference step (default: by dtype, see gradcheck.tolerances).
        method: see :func:`gradcheck.numerical_gradient`.
        rtol, atol: override the dtype's default tolerances.
        fprop_kwargs: extra keyword arguments for fprop (the ``mlp`` configuration).
        name: what is checked, for messages.
        mode: ``"full"`` differentiates every entry (2 fprop calls each); ``"fast"``
            compares random directional derivatives, a few calls per parameter whatever
            its size, then checks failing parameters entry by entry (see
            :func:`gradcheck.fast.fast_check` for its detection guarantee).
        max_entries: full mode: check a seeded sample of this many entries of every
            parameter larger than that (biases too), and say so in the report. By default
            a parameter of more than 10,000 entries is checked on a sample of 1,000 (two
            fprop calls an entry would take hours on a million); ``"all"`` checks every
            entry whatever the size. Fast mode: how many entries of a failing parameter to
            check one by one (``"all"``: every one).
        seed: seeds the sample of entries and the fast mode's directions.

    Returns:
        A :class:`GradientReport`; ``report.ok`` tells whether all gradients agree.

    Example:
        >>> import numpy as np, gradcheck
        >>> net = gradcheck.networks.get("three_node")
        >>> sol, ex = net.solution(), net.worked_examples[0]
        >>> gradcheck.check_gradients(sol.fprop, sol.bprop, ex.x, ex.y, ex.params).ok
        True
    """
    _check_params(params)
    counted = isinstance(max_entries, int) and not isinstance(max_entries, bool)
    if max_entries is not None and max_entries != "all" and not counted:
        raise InvalidArgument(f"max_entries must be a number of entries or 'all', not {max_entries!r}")
    if mode == "fast":
        from .fast import fast_check  # local: fast builds on this module

        return fast_check(fprop, bprop, x, y, params, eps=eps, rtol=rtol, atol=atol, seed=seed,
                          max_entries=sys.maxsize if max_entries == "all" else max_entries,
                          fprop_kwargs=fprop_kwargs, name=name)
    if mode != "full":
        raise InvalidArgument(f"mode={mode!r} is not 'full' or 'fast'")
    tolerance, settings = _settings(params, eps, rtol, atol, name, method)
    calls = _Counter(fprop, x, y, dict(fprop_kwargs or {}))

    work = _copy(params)
    first = _first_pass(calls, bprop, work, tolerance, settings)
    if isinstance(first, GradientReport):
        return first
    cache, loss, analytic = first
    warnings = _mutations(params, work, "fprop or bprop")

    fresh = _copy(params)
    entries = _sample(params, max_entries, seed)
    try:
        numerical, brackets = _numerical(calls, fresh, loss, tolerance, method, entries)
    except _StudentError as error:
        return GradientReport((), problems=(f"while differentiating numerically: {error}",),
                              loss=loss, tolerance=tolerance, evaluations=calls.count, **settings)  # type: ignore[arg-type]
    noisy = _noise_tolerance(tolerance, loss, cache)
    reports, problems = compare_gradients(analytic, numerical, noisy, brackets=brackets)
    if entries:
        from .fast import restrict_to_entries, sampling_notes

        reports = restrict_to_entries(reports, analytic, numerical, entries, noisy, brackets)
        warnings = (*warnings, *sampling_notes(entries, params))
    from .diagnosis import annotate  # local: diagnosis depends on comparison, not the reverse

    reports = annotate(reports, analytic, numerical)
    return GradientReport(reports, problems=problems, warnings=warnings, loss=loss,
                          tolerance=noisy, evaluations=calls.count, **settings)  # type: ignore[arg-type]


def assert_gradients_close(
    fprop: Callable[..., object],
    bprop: Callable[[object], object],
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    **options: object,
) -> GradientReport:
    """Like :func:`check_gradients`, but raise when the gradients disagree.

    Raises:
        GradientMismatchError: an ``AssertionError`` whose message is the per-parameter
            table (worst index, both values, relative error, likely cause).

    Example:
        >>> import gradcheck
        >>> net = gradcheck.networks.get("two_hidden")
        >>> sol, ex = net.solution(), net.worked_examples[0]
        >>> _ = gradcheck.assert_gradients_close(sol.fprop, sol.bprop, ex.x, ex.y, ex.params)
    """
    report = check_gradients(fprop, bprop, x, y, params, **options)  # type: ignore[arg-type]
    if not report.ok:
        raise GradientMismatchError(format_report(report), report)
    return report


def loss_of(cache: object) -> float:
    """The scalar loss in an fprop cache, or a clear error saying what is wrong with it."""
    if not isinstance(cache, Mapping):
        raise _StudentError(
            f"fprop returned {type(cache).__name__}, not a dict (the cache with a 'loss' key)"
        )
    if "loss" not in cache:
        keys = ", ".join(map(repr, list(cache)[:8])) or "none"
        raise _StudentError(f"fprop's cache has no 'loss' key (its keys: {keys})")
    return scalar_loss(cache["loss"])


def scalar_loss(value: object) -> float:
    """``value`` as one finite float, or a clear error saying why it is not a usable loss."""
    try:
        loss = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _StudentError(f"fprop's loss is {_describe_value(value)}, not a number") from None
    if loss.size != 1:
        raise _StudentError(
            f"fprop's loss has shape {loss.shape}, not a scalar: sum the loss over the batch "
            "(np.sum) so it is one number"
        )
    number = float(loss.reshape(-1)[0])
    if not np.isfinite(number):
        raise _StudentError(f"fprop's loss is {number}")
    return number


class _StudentError(Exception):
    """Student code raised or returned something unusable; the message says which."""


class _Counter:
    """Calls fprop with fixed x, y and options, counting calls and wrapping its failures."""

    def __init__(self, fprop: Callable[..., object], x: np.ndarray, y: np.ndarray,
                 kwargs: Mapping[str, object]) -> None:
        self._fprop, self._x, self._y, self._kwargs = fprop, x, y, kwargs
        self.count = 0

    def fprop(self, params: Mapping[str, np.ndarray]) -> object:
        self.count += 1
        try:
            # Fresh x and y each call: an fprop that modifies them cannot skew later calls.
            return self._fprop(self._x.copy(), self._y.copy(), params, **self._kwargs)
        except Exception as error:
            raise _StudentError(f"fprop raised {_exception(error)}") from error

    def loss(self, params: Mapping[str, np.ndarray]) -> float:
        return loss_of(self.fprop(params))


# Without max_entries, larger parameters are sampled: the full check of a million entries
# takes two million fprop calls.
AUTO_SAMPLE_ABOVE = 10_000
AUTO_SAMPLE_SIZE = 1_000


def _sample(params: Mapping[str, np.ndarray], max_entries: int | str | None,
            seed: int) -> dict[str, np.ndarray]:
    from .fast import sample_entries

    if max_entries == "all":
        return {}
    if max_entries is not None:
        return sample_entries(params, int(max_entries), seed)
    chosen: dict[str, np.ndarray] = {}
    for position, (key, value) in enumerate(params.items()):
        if value.size > AUTO_SAMPLE_ABOVE:
            chosen.update(sample_entries({key: value}, AUTO_SAMPLE_SIZE, seed, index=position))
    return chosen


def _settings(params: Mapping[str, np.ndarray], eps: float | None, rtol: float | None,
              atol: float | None, name: str, method: str) -> tuple[Tolerance, dict[str, object]]:
    """The tolerance (dtype defaults unless overridden) and the report's settings fields."""
    dtype = np.result_type(*params.values()) if params else np.dtype(np.float64)
    defaults = tolerance_for(dtype, warn=True)
    tolerance = Tolerance(
        rtol=rtol if rtol is not None else defaults.rtol,
        atol=atol if atol is not None else defaults.atol,
        eps=eps if eps is not None else defaults.eps,
    )
    return tolerance, dict(dtype=str(dtype), method=method, eps=tolerance.eps, name=name)


def _first_pass(calls: _Counter, bprop: Callable[[object], object], work: dict[str, np.ndarray],
                tolerance: Tolerance, settings: Mapping[str, object]
                ) -> tuple[object, float, object] | GradientReport:
    """Run fprop then bprop once: (cache, loss, analytic), or the report of what failed."""
    try:
        cache = calls.fprop(work)
        loss = loss_of(cache)
    except _StudentError as error:
        return GradientReport((), problems=(str(error),), tolerance=tolerance,
                              evaluations=calls.count, **settings)  # type: ignore[arg-type]
    try:
        analytic = bprop(cache)
    except Exception as error:  # noqa: BLE001 - student code may raise anything
        return GradientReport((), problems=(f"bprop raised {_exception(error)}",), loss=loss,
                              tolerance=tolerance, evaluations=calls.count, **settings)  # type: ignore[arg-type]
    return cache, loss, analytic


def _numerical(
    calls: _Counter, params: dict[str, np.ndarray], loss: float, tolerance: Tolerance, method: Method,
    entries: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Bracket]]:
    if method != "central":
        return numerical_gradient(calls.loss, params, tolerance.eps, method=method, entries=entries or None), {}
    samples = central_differences(calls.loss, params, tolerance.eps, entries or None)
    brackets = {
        key: _bracket(calls, params, key, samples.loss_plus[key], samples.loss_minus[key],
                      loss, tolerance.eps)
        for key in params
    }
    return samples.gradient, brackets


def _bracket(calls: _Counter, params: dict[str, np.ndarray], key: str, plus: np.ndarray,
             minus: np.ndarray, loss: float, eps: float) -> Bracket:
    # A smooth loss has one-sided quotients that differ by about h * f'': halving the step
    # halves the gap. At a kink (a ReLU input within h of 0) the gap is the jump in slope
    # and does not shrink. Only entries with a visible gap pay the two extra calls.
    right, left = (plus - loss) / eps, (loss - minus) / eps
    gap = np.abs(right - left)
    scale = np.maximum(np.maximum(np.abs(left), np.abs(right)), 1.0)
    kink = np.zeros(plus.shape, dtype=bool)
    for index in zip(*np.nonzero(gap > 1e-6 * scale)):
        array, original = params[key], params[key][index].copy()
        try:
            array[index] = original + eps / 2
            half_right = (calls.loss(params) - loss) / (eps / 2)
            array[index] = original - eps / 2
            half_left = (loss - calls.loss(params)) / (eps / 2)
        finally:
            array[index] = original
        kink[index] = abs(half_right - half_left) > 0.75 * gap[index]
    return Bracket(left=left, right=right, kink=kink)


def _noise_tolerance(tolerance: Tolerance, loss: float, cache: object) -> Tolerance:
    # Rounding in L(p + h) - L(p - h) is about machine-epsilon * |L|; divided by 2h it sets
    # the smallest difference that central differences can resolve.
    loss_value = cache["loss"] if isinstance(cache, Mapping) else loss
    dtype = np.asarray(loss_value).dtype
    machine = np.finfo(dtype).eps if dtype.kind == "f" else np.finfo(np.float64).eps
    noise = 10.0 * machine * max(abs(loss), 1.0) / tolerance.eps
    if noise <= tolerance.atol:
        return tolerance
    return Tolerance(rtol=tolerance.rtol, atol=noise, eps=tolerance.eps)


def _mutations(original: Mapping[str, np.ndarray], used: Mapping[str, np.ndarray], who: str) -> tuple[str, ...]:
    changed = [key for key in original if not np.array_equal(original[key], used[key], equal_nan=True)]
    if not changed:
        return ()
    return (f"{who} modified params[{changed[0]!r}] in place; fprop/bprop should not change their "
            "inputs (update must return new arrays)",)


def _copy(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: np.array(value, copy=True) for key, value in params.items()}


def _exception(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# -- rendering ----------------------------------------------------------------------------


def format_report(report: GradientReport) -> str:
    """The per-parameter table: status, worst entry with both values, error, likely cause."""
    subject = f"gradient check of {report.name}" if report.name else "gradient check"
    t = report.tolerance
    settings = (f"{report.dtype}, {report.method} differences, eps={report.eps:g}, "
                f"rtol={t.rtol:g}, atol={t.atol:g}")
    failing = [p for p in report.parameters if not p.ok]
    if report.ok:
        head = f"{subject} passed: {len(report.parameters)} parameters agree ({settings})"
    else:
        count = f"{len(failing)} of {len(report.parameters)} parameters disagree" if report.parameters else "could not compare"
        head = f"{subject} failed: {count} ({settings})"
    lines = [head]
    lines += [f"  problem: {problem}" for problem in report.problems]
    if report.parameters:
        lines += ["", *_table(report.parameters)]
    for p in report.parameters:
        for text in (p.message if p.status != "ok" else "", p.hint):
            if text:
                lines.append(f"  {p.name}: {text.removeprefix(p.name + ': ')}")
    lines += [f"  note: {warning}" for warning in report.warnings]
    return "\n".join(lines)


def _table(parameters: tuple[ParameterReport, ...]) -> list[str]:
    header = ("param", "shape", "status", "max rel err", "mismatched", "worst index", "analytic", "numerical")
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
