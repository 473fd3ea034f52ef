"""A randomized gradient check whose cost does not grow with the number of entries.

The full check differentiates every entry: 2P loss calls for P entries, two million for a
network of a million parameters. The fast check compares *directional derivatives*
instead: for a random direction u over one parameter,

    a = u . g_analytic          (exact, from bprop)
    d = (L(p + h u) - L(p - h u)) / 2h   (two loss calls, whatever the size)

Each parameter gets its own probes, so a failure names the parameter; a parameter that
fails is then checked entry by entry (all of it when small, otherwise a seeded sample plus
the entry found by bisecting the failing direction), so the report gives a worst index
with both values like the full check.

Directions. Each entry of u is a random sign times a magnitude uniform in [1/2, 3/2):
signed and zero-mean, never non-negative, never tiny, density at most 1/2 everywhere. They
come from ``np.random.default_rng([seed, ...])`` per 65,536-entry chunk, so they are
regenerated from the seed instead of stored (memory stays O(chunk)), and the global numpy
state is never touched.

Tolerance. A probe fails when ``|a - d| > tau`` with ``tau = max(rtol * ||g_analytic||_2,
atol)`` (atol raised to the rounding noise of the loss, as in the full check). tau does
not depend on u, and in particular does not grow with ``sum(u)``: PyTorch's first fast
mode used non-negative directions and a tolerance scaled by ``sum(u) * sum(v)``, which let
a gradient wrong in a few entries pass (pytorch PR #59615, issue #57166, PR #59650).

Detection guarantee. Let e = g_analytic - g be the error of one parameter and
``e_max = max_j |e_j|`` its largest entry (ignoring the finite-difference error of d,
about 1e-10 of the loss for float64). Fix every entry of u but the j-th: the probe passes
only if u_j falls in an interval of length ``2 tau / |e_j|``, which has probability at most
``(1/2) * 2 tau / |e_j|``. The k probes are independent, so

    P(a wrong gradient passes all k probes) <= (tau / e_max) ** k.

Moreover, since ``|u_j| >= 1/2``, an error confined to one entry with ``|e_j| > 2 tau`` is
caught by every probe (probability 1). With the default 4 probes, an entry wrong by
10 tau passes with probability at most 1e-4, by 100 tau at most 1e-8. The price of
projecting is resolution: tau is relative to the *norm* of the whole parameter's
gradient, so an error smaller than ``rtol * ||g||_2`` in a single entry can pass, where
the full check resolves ``rtol * |g_j|``. Student bugs (transposes, signs, factors, wrong
derivatives, a few wrong entries) are errors of the order of the entries themselves.

Example:
    >>> import numpy as np, gradcheck
    >>> net = gradcheck.networks.get("mlp")
    >>> ex = net.random_example(np.random.default_rng(0), m=4, widths=(30, 20, 1))
    >>> sol = net.solution()
    >>> report = fast_check(sol.fprop, sol.bprop, ex.x, ex.y, ex.params, fprop_kwargs=ex.options)
    >>> report.ok, report.evaluations
    (True, 29)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
import sys
from dataclasses import dataclass, replace

import numpy as np

from .comparison import ParameterReport, compare_gradients, compare_parameter, structural_problem
from .differentiation import central_differences, validate_params
from .diagnosis import annotate
from .errors import InvalidArgument
from .evaluation import CheckOptions, LossCalls, StudentError, copy_arrays, first_pass, not_reproducible
from .gradient_report import GradientReport
from .kinks import noise_tolerance
from .sampling import compare_sampled, restrict_to_entries, sample_entries, sampling_notes  # noqa: F401
from .tolerances import Tolerance

__all__ = [
    "DEFAULT_PROBES",
    "DEFAULT_SAMPLE",
    "Probe",
    "direction",
    "fast_check",
    "restrict_to_entries",
    "run_fast_check",
    "sample_entries",
]
# compare_sampled, restrict_to_entries, sample_entries and sampling_notes live in
# gradcheck.sampling; they are importable from here as before.

DEFAULT_PROBES = 4
"""Probes per parameter: a network of L layers with biases costs 3 + 16 L loss calls."""
DEFAULT_SAMPLE = 100
"""Entries checked one by one in a failing parameter larger than this."""
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Probe:
    """One comparison of a directional derivative: ``u . g_analytic`` against the loss."""

    parameter: str
    index: int
    """Which probe of this parameter (its direction is regenerated from the seed and this)."""
    analytic: float
    """``u . g_analytic``."""
    numerical: float
    """``(L(p + h u) - L(p - h u)) / 2h``."""
    tolerance: float
    """tau: the probe fails when ``|analytic - numerical| > tolerance``."""

    @property
    def discrepancy(self) -> float:
        return self.analytic - self.numerical

    @property
    def ok(self) -> bool:
        return abs(self.discrepancy) <= self.tolerance


def fast_check(
    fprop: Callable[..., object],
    bprop: Callable[[object], object],
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    *,
    probes: int = DEFAULT_PROBES,
    seed: int = 0,
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_entries: int | None = None,
    fprop_kwargs: Mapping[str, object] | None = None,
    name: str = "",
) -> GradientReport:
    """Check ``bprop`` with ``probes`` random directional derivatives per parameter.

    Costs ``3 + 2 * probes * (number of parameters)`` fprop calls when the gradients are
    right, whatever the parameters' sizes (a parameter with at most ``probes`` entries is
    checked entry by entry instead, which is cheaper). A failing parameter costs more: it
    is checked entry by entry (at most ``max_entries`` of them, plus ``2 log2(size)`` calls
    to bisect to a wrong entry). The 3 are the first call (with bprop) and two calls at the
    starting point, after bprop and at the end, that fail the check when the loss is not
    reproducible. See the module docstring for the detection guarantee:
    a wrong gradient passes with probability at most ``(tau / max|error|) ** probes``.

    Args:
        fprop, bprop, x, y, params, eps, rtol, atol, fprop_kwargs, name: as for
            :func:`gradcheck.check_gradients`.
        probes: random directions per parameter (>= 1).
        seed: seeds the directions and samples (``np.random.default_rng``); the same seed
            gives the same report.
        max_entries: entries checked one by one in a failing parameter (default
            :data:`DEFAULT_SAMPLE`); smaller parameters are checked in full.

    Returns:
        A :class:`gradcheck.GradientReport` with ``method="directional"``; each parameter's
        ``extras["probes"]`` holds its :class:`Probe` results.

    Raises:
        InvalidArgument: bad ``params``, ``probes`` < 1 or ``max_entries`` < 1.

    Example:
        >>> import numpy as np, gradcheck
        >>> net = gradcheck.networks.get("two_hidden")
        >>> sol, ex = net.solution(), net.worked_examples[0]
        >>> gradcheck.check_gradients(sol.fprop, sol.bprop, ex.x, ex.y, ex.params, mode="fast").ok
        True
    """
    validate_params(params)
    options = CheckOptions(mode="fast", eps=eps, rtol=rtol, atol=atol, seed=seed, name=name,
                           probes=probes, max_entries=max_entries)
    kwargs = dict(fprop_kwargs or {})

    def evaluate(p: Mapping[str, np.ndarray]) -> object:
        return fprop(x.copy(), y.copy(), p, **kwargs)

    return run_fast_check(LossCalls(evaluate, who="fprop"), bprop, params, options)


def run_fast_check(calls: LossCalls, backprop: Callable[[object], object],
                   params: Mapping[str, np.ndarray], options: CheckOptions) -> GradientReport:
    """The fast check of ``backprop`` against directional derivatives of ``calls``.

    The engine of :func:`fast_check`, for any ``evaluate(params) -> {"loss": ...}`` (see
    :func:`gradcheck.checking.run_check`).
    """
    probes = DEFAULT_PROBES if options.probes is None else options.probes
    max_entries = sys.maxsize if options.max_entries == "all" else options.max_entries
    if probes < 1 or (max_entries is not None and max_entries < 1):  # type: ignore[operator]
        raise InvalidArgument(
            f"probes={probes} and max_entries={max_entries} must be at least 1; "
            f"the default is probes={DEFAULT_PROBES}, max_entries={DEFAULT_SAMPLE}"
        )
    tolerance, settings = options.settings(params, "directional")
    # One C-ordered copy for everything: fprop/bprop run on it, then the probes perturb
    # it in place through flat views and restore it from the caller's arrays.
    work = copy_arrays(params)
    first = first_pass(calls, backprop, work, tolerance, settings, who=options.backward)
    if isinstance(first, GradientReport):
        return first
    cache, loss, analytic = first
    noisy = noise_tolerance(tolerance, loss, cache)
    del cache  # the cache may hold large activations; the probes do not need it
    problems, warnings = options.mutations(params, work, f"{calls.who} or {options.backward}")
    if not isinstance(analytic, Mapping):
        reports, returned = compare_gradients(analytic, params, noisy, what=options.backward)
        return GradientReport(reports, problems=(*problems, *returned), warnings=warnings, loss=loss,
                              tolerance=noisy, evaluations=calls.count, **settings)
    for key in work:  # reuse the one copy: probes perturb it in place and restore it
        np.copyto(work[key], params[key])
    prober = _Prober(calls, work, params, noisy, options.seed)
    try:
        drift = not_reproducible(calls, work, loss, f"after {options.backward}", options.backward)
        reports = [_check_parameter(prober, key, analytic, probes, max_entries or DEFAULT_SAMPLE,
                                    options.backward) for key in params]
        drift = drift or not_reproducible(calls, work, loss, "after the directional derivatives",
                                          options.backward)
    except StudentError as error:
        return GradientReport((), problems=(*problems, f"while differentiating numerically: {error}"),
                              loss=loss, tolerance=noisy, evaluations=calls.count, **settings)
    later, _ = options.mutations(params, work, calls.who)
    reports = _diagnosed(reports, analytic, noisy)
    reports += [_unexpected(key, params, options.backward) for key in analytic if key not in params]
    note = (f"fast check: {probes} random directional derivatives per parameter (seed {options.seed}); "
            "a failing parameter is then checked entry by entry")
    return GradientReport(tuple(reports), problems=(*problems, *((drift,) if drift else ()), *later),
                          warnings=(*warnings, note), loss=loss, tolerance=noisy,
                          evaluations=calls.count, **settings)


def direction(seed: int, parameter: int, probe: int, size: int,
              start: int = 0, stop: int | None = None) -> np.ndarray:
    """Entries ``start:stop`` of the random direction of probe ``probe`` of a parameter.

    Each entry is a random sign times a magnitude uniform in [1/2, 3/2). Chunks of 65,536
    entries have their own generator, so any slice is regenerated without the rest.

    Example:
        >>> u = direction(0, 0, 0, 10)
        >>> bool(np.all((np.abs(u) >= 0.5) & (np.abs(u) < 1.5))), bool(np.array_equal(u[3:7], direction(0, 0, 0, 10, 3, 7)))
        (True, True)
    """
    stop = size if stop is None else stop
    pieces = []
    for chunk in range(start // _CHUNK, (stop - 1) // _CHUNK + 1) if stop > start else ():
        first = chunk * _CHUNK
        u = _chunk(seed, parameter, probe, chunk, min(_CHUNK, size - first))
        pieces.append(u[max(start, first) - first: min(stop, first + u.size) - first])
    return np.concatenate(pieces) if pieces else np.empty(0)


def _chunk(seed: int, parameter: int, probe: int, chunk: int, length: int,
           out: np.ndarray | None = None, work: np.ndarray | None = None) -> np.ndarray:
    """One chunk of a direction, in ``out`` when given (``work``: scratch of the same size).

    Reusing buffers matters: a fresh half-megabyte array costs a page fault per 4 KiB when it
    is first written, more than drawing its random numbers.
    """
    rng = np.random.default_rng([seed, 0, parameter, probe, chunk])  # tag 0: directions
    u = rng.random(length, out=None if out is None else out[:length])
    u *= 2.0
    # [0, 2) -> [-1.5, -0.5) U [0.5, 1.5): density 1/2, |u| >= 1/2.
    high = np.floor(u, out=None if work is None else work[:length])
    u -= 1.5
    u += high
    return u


class _Prober:
    """Directional derivatives over a slice of one parameter, in place, restored exactly."""

    def __init__(self, calls: LossCalls, work: dict[str, np.ndarray],
                 original: Mapping[str, np.ndarray], tolerance: Tolerance, seed: int) -> None:
        self.calls, self.work, self.tolerance, self.seed = calls, work, tolerance, seed
        self.flat = {key: value.reshape(-1) for key, value in work.items()}  # views: work is C-ordered
        self.original = {key: np.ascontiguousarray(value).reshape(-1) for key, value in original.items()}
        self.index = {key: i for i, key in enumerate(work)}
        self.scratch = np.empty(_CHUNK, dtype=np.float64)
        self.chunk, self.work_chunk = np.empty(_CHUNK), np.empty(_CHUNK)

    def measure(self, key: str, probe: int, gradient: np.ndarray,
                start: int = 0, stop: int | None = None) -> tuple[float, float]:
        """(u . gradient, central difference along u) for u restricted to ``start:stop``."""
        flat, original = self.flat[key], self.original[key]
        stop = flat.size if stop is None else stop
        h = self.tolerance.eps
        analytic = 0.0
        try:
            for lo, hi, u in self._pieces(key, probe, start, stop):
                analytic += float(u @ gradient[lo:hi])
                u *= h
                flat[lo:hi] += u
            f_plus = self.calls.loss(self.work)
            for lo, hi, _ in self._spans(start, stop):
                # Reflect p + h u through p: 2p - (p + h u) is p - h u up to one rounding,
                # without regenerating u or holding a copy of it.
                twice = np.multiply(original[lo:hi], 2.0, out=self.scratch[: hi - lo])
                np.subtract(twice, flat[lo:hi], out=flat[lo:hi])
            f_minus = self.calls.loss(self.work)
        finally:
            np.copyto(flat[start:stop], original[start:stop])
        return analytic, (f_plus - f_minus) / (2.0 * h)

    def _spans(self, start: int, stop: int) -> Iterable[tuple[int, int, None]]:
        for chunk in range(start // _CHUNK, (stop - 1) // _CHUNK + 1):
            yield max(start, chunk * _CHUNK), min(stop, (chunk + 1) * _CHUNK), None

    def _pieces(self, key: str, probe: int, start: int, stop: int) -> Iterable[tuple[int, int, np.ndarray]]:
        size = self.flat[key].size
        for lo, hi, _ in self._spans(start, stop):
            first = (lo // _CHUNK) * _CHUNK
            u = _chunk(self.seed, self.index[key], probe, lo // _CHUNK, min(_CHUNK, size - first),
                       out=self.chunk, work=self.work_chunk)
            yield lo, hi, u[lo - first: hi - first]


def _check_parameter(prober: _Prober, key: str, analytic: Mapping[str, object],
                     probes: int, max_entries: int, what: str = "bprop") -> ParameterReport:
    expected = prober.work[key]
    value, present = analytic.get(key), key in analytic
    if structural_problem(key, value, expected, what, present) is not None:
        return compare_parameter(key, value, expected, prober.tolerance, present=present, what=what)
    gradient = np.ascontiguousarray(value, dtype=np.float64).reshape(-1)
    if expected.size <= probes:  # entry by entry is no dearer than probing
        return _entries_report(prober, key, value, range(expected.size))
    tau = max(prober.tolerance.rtol * float(np.linalg.norm(gradient)), prober.tolerance.atol)
    results = tuple(Probe(key, i, *prober.measure(key, i, gradient), tolerance=tau)
                    for i in range(probes))
    scale = tau / prober.tolerance.rtol
    worst = max(abs(p.discrepancy) for p in results) / scale
    if all(p.ok for p in results):
        return ParameterReport(key, "ok", expected_shape=tuple(expected.shape),
                               returned_shape=tuple(np.shape(value)), size=int(expected.size),  # type: ignore[arg-type]
                               max_relative_error=worst, extras={"probes": results})
    return _localise(prober, key, value, gradient, results, max_entries)


def _localise(prober: _Prober, key: str, value: object, gradient: np.ndarray,
              results: tuple[Probe, ...], max_entries: int) -> ParameterReport:
    size = gradient.size
    if size <= max_entries:
        report = _entries_report(prober, key, value, range(size))
    else:
        entries = set(sample_entries({key: prober.work[key]}, max_entries, prober.seed,
                                     index=prober.index[key])[key].tolist())
        entries.add(_bisect(prober, key, gradient, max(results, key=lambda p: abs(p.discrepancy))))
        report = _entries_report(prober, key, value, sorted(entries))
    failed = [p for p in results if not p.ok]
    worst = max(failed, key=lambda p: abs(p.discrepancy))
    projection = (f"{len(failed)} of {len(results)} random directional derivatives disagree "
                  f"(worst: u.d{key} = {worst.analytic:.8g} from bprop, {worst.numerical:.8g} "
                  f"from the loss, tolerance {worst.tolerance:.2g})")
    message = f"{key}: {projection}"
    if report.mismatched:
        message += f"; {report.message.removeprefix(key + ': ')}"
    else:
        message += (f"; none of the {report.size} entries checked one by one does: the error is "
                    "spread thinly over many entries")
    return replace(report, status="mismatch", message=message,
                   max_relative_error=max(report.max_relative_error,
                                          abs(worst.discrepancy) * prober.tolerance.rtol / worst.tolerance),
                   extras={**report.extras, "probes": results})


def _diagnosed(reports: list[ParameterReport], analytic: Mapping[str, object],
               tolerance: Tolerance) -> list[ParameterReport]:
    """Failing parameters with the likely cause, read off the entries checked one by one."""
    analytic_part, numerical_part = {}, {}
    for report in reports:
        checked = report.extras.get("entries")
        if isinstance(checked, tuple):
            indices, numerical = checked
            analytic_part[report.name] = np.asarray(analytic[report.name], dtype=np.float64).reshape(-1)[indices]
            numerical_part[report.name] = numerical
    if not analytic_part:
        return reports
    named = {r.name: r for r in annotate(tuple(r for r in reports if r.name in analytic_part),
                                         analytic_part, numerical_part, tolerance=tolerance)}
    return [named.get(r.name, r) for r in reports]


def _bisect(prober: _Prober, key: str, gradient: np.ndarray, probe: Probe) -> int:
    # The discrepancy u.(g_a - g) over a range is the sum of those over its halves: measure
    # one half (2 calls), deduce the other, follow the larger. 2 log2(size) calls in all.
    lo, hi, discrepancy = 0, gradient.size, probe.discrepancy
    while hi - lo > 1:
        mid = (lo + hi) // 2
        a, d = prober.measure(key, probe.index, gradient, lo, mid)
        left = a - d
        if abs(left) >= abs(discrepancy - left):
            hi, discrepancy = mid, left
        else:
            lo, discrepancy = mid, discrepancy - left
    return lo


def _entries_report(prober: _Prober, key: str, value: object, entries: Iterable[int]) -> ParameterReport:
    indices = np.fromiter(entries, dtype=np.int64)
    array = prober.work[key]
    # Differentiate only this parameter: the loss still sees the whole (shared) dict.
    samples = central_differences(lambda _: prober.calls.loss(prober.work), {key: array},
                                  prober.tolerance.eps, {key: indices})
    if indices.size == array.size:
        report = compare_parameter(key, value, samples.gradient[key], prober.tolerance)
    else:
        report = compare_sampled(key, value, samples.gradient[key], indices, prober.tolerance)
    # The entries differentiated, for the diagnosis of a failing parameter (_diagnosed).
    numerical = samples.gradient[key].reshape(-1)[indices]
    return replace(report, extras={**report.extras, "entries": (indices, numerical)}) \
        if report.mismatched else report


def _unexpected(key: object, params: Mapping[str, np.ndarray], what: str = "bprop") -> ParameterReport:
    return ParameterReport(str(key), "unexpected",
                           message=f"{what} returned a gradient for {key!r}, which is not a parameter "
                                   f"(the parameters are {', '.join(params)})")
