"""Check a hand-written ``bprop`` against finite differences of its own ``fprop``.

``check_gradients`` never raises because student code misbehaves: a bprop that crashes,
returns a list, or the transpose is a finding in the report. It raises
:class:`InvalidArgument` only when *it* is called wrongly.

:func:`run_check` is the engine behind it and behind :func:`gradcheck.check_layer` and
:func:`gradcheck.check_loss`: any ``evaluate(params) -> {"loss": ...}`` and any
``backprop(cache) -> {name: gradient}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np

from .comparison import Bracket, compare_gradients
from .diagnosis import annotate
from .differentiation import Method, central_differences, numerical_gradient, validate_params
from .errors import GradientMismatchError, InvalidArgument
from .evaluation import (
    CheckOptions,
    LossCalls,
    StudentError,
    copy_arrays,
    first_pass,
    loss_of,
    not_reproducible,
    scalar_loss,
)
from .fast import run_fast_check
from .gradient_report import GradientReport, format_report
from .kinks import bracket, noise_tolerance
from .sampling import default_sample, on_entries, restrict_to_entries, sampling_notes
from .tolerances import Tolerance

__all__ = [
    "GradientReport",
    "assert_gradients_close",
    "check_gradients",
    "format_report",
    "loss_of",
    "run_check",
    "scalar_loss",
    "validate_max_entries",
]

Params = Mapping[str, np.ndarray]


def check_gradients(
    fprop: Callable[..., object],
    bprop: Callable[[object], object],
    x: np.ndarray,
    y: np.ndarray,
    params: Params,
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

    The caller's arrays are never modified: fprop and bprop work on copies. The loss is
    evaluated again at the starting point after bprop and after the numerical gradient:
    a loss that moved (state kept between calls, inputs changed in place) fails the
    check, since finite differences of it mean nothing.

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

    Raises:
        InvalidArgument: bad ``params``, ``mode`` or ``max_entries``.

    Example:
        >>> import numpy as np, gradcheck
        >>> net = gradcheck.networks.get("three_node")
        >>> sol, ex = net.solution(), net.worked_examples[0]
        >>> gradcheck.check_gradients(sol.fprop, sol.bprop, ex.x, ex.y, ex.params).ok
        True
    """
    validate_params(params)
    options = CheckOptions(mode=mode, eps=eps, method=method, rtol=rtol, atol=atol,
                           max_entries=max_entries, seed=seed, name=name)
    kwargs = dict(fprop_kwargs or {})

    def evaluate(p: Params) -> object:
        # Fresh x and y each call: an fprop that modifies them cannot skew later calls.
        return fprop(x.copy(), y.copy(), p, **kwargs)

    return run_check(LossCalls(evaluate, who="fprop"), bprop, params, options)


def assert_gradients_close(
    fprop: Callable[..., object],
    bprop: Callable[[object], object],
    x: np.ndarray,
    y: np.ndarray,
    params: Params,
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
    return raise_unless_ok(check_gradients(fprop, bprop, x, y, params, **options))  # type: ignore[arg-type]


def raise_unless_ok(report: GradientReport) -> GradientReport:
    """``report`` when it passed; else raise :class:`GradientMismatchError` with its table."""
    if not report.ok:
        raise GradientMismatchError(format_report(report), report)
    return report


def validate_max_entries(max_entries: object) -> None:
    """Raise :class:`InvalidArgument` unless ``max_entries`` is None, a count or ``"all"``."""
    counted = isinstance(max_entries, int) and not isinstance(max_entries, bool)
    if max_entries is not None and max_entries != "all" and not counted:
        raise InvalidArgument(f"max_entries must be a number of entries or 'all', not {max_entries!r}")


def run_check(calls: LossCalls, backprop: Callable[[object], object], params: Params,
              options: CheckOptions) -> GradientReport:
    """The full or the fast check of ``backprop`` against finite differences of ``calls``.

    ``calls`` evaluates the code under test at a dict of arrays (perturbed in place);
    ``backprop(cache)`` returns the analytic gradients of the first call's cache.
    """
    validate_max_entries(options.max_entries)
    if options.mode == "fast":
        return run_fast_check(calls, backprop, params, options)
    if options.mode != "full":
        raise InvalidArgument(f"mode={options.mode!r} is not 'full' or 'fast'")
    tolerance, settings = options.settings(params)
    work = copy_arrays(params)
    first = first_pass(calls, backprop, work, tolerance, settings, who=options.backward)
    if isinstance(first, GradientReport):
        return first
    cache, loss, analytic = first
    both = f"{calls.who} or {options.backward}"
    problems, warnings = options.mutations(params, work, both)
    del work
    fresh = copy_arrays(params)
    entries = default_sample(params, options.max_entries, options.seed)
    noisy = noise_tolerance(tolerance, loss, cache)
    del cache  # it may hold large activations
    try:
        drift = not_reproducible(calls, fresh, loss, f"after {options.backward}", options.backward)
        numerical, brackets = _numerical(calls, fresh, loss, noisy, options.method, entries)
        drift = drift or not_reproducible(calls, fresh, loss, "after the numerical gradient",
                                          options.backward)
    except StudentError as error:
        return GradientReport((), problems=(*problems, f"while differentiating numerically: {error}"),
                              loss=loss, tolerance=tolerance, evaluations=calls.count, **settings)
    problems = (*problems, drift) if drift else problems
    later, _ = options.mutations(params, fresh, calls.who)
    reports, returned = compare_gradients(analytic, numerical, noisy, brackets=brackets, what=options.backward)
    if entries:
        reports = restrict_to_entries(reports, analytic, numerical, entries, noisy, brackets)
        warnings = (*warnings, *sampling_notes(entries, params))
    reports = annotate(reports, *on_entries(analytic, numerical, entries), tolerance=noisy,
                       **options.context)
    return GradientReport(reports, problems=(*problems, *returned, *later), warnings=warnings,
                          loss=loss, tolerance=noisy, evaluations=calls.count, **settings)


def _numerical(
    calls: LossCalls, params: dict[str, np.ndarray], loss: float, tolerance: Tolerance, method: Method,
    entries: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Bracket]]:
    if method != "central":
        return numerical_gradient(calls.loss, params, tolerance.eps, method=method, entries=entries or None), {}
    samples = central_differences(calls.loss, params, tolerance.eps, entries or None)
    brackets = {
        key: bracket(calls.loss, params, key, samples.loss_plus[key], samples.loss_minus[key],
                     loss, tolerance.eps, noise=tolerance.atol)
        for key in params
    }
    return samples.gradient, brackets
