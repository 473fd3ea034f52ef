"""Verdicts from measured noise: is a mismatch a bug, finite-difference noise, float32 noise, or a kink?

A fixed threshold cannot tell these apart; the numbers can. The numerical estimate is
recomputed at h/2: a smooth loss moves it by about its own truncation error, so an
analytic value that differs by no more than that is noise. Rounding in the loss sets a
floor (the same floor ``check_gradients`` uses). At a kink, the one-sided differences
[left, right] bracket every valid subgradient; an analytic value inside is accepted and
the unit whose pre-activation crossed 0 is named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..kinks import bracket as kink_bracket
from ..kinks import noise_tolerance
from ..comparison import Bracket
from ..differentiation import central_differences
from ..networks import Architecture, Example, Network
from ..tolerances import Tolerance, tolerance_for
from . import backprop

__all__ = ["Label", "Verdict", "judge_mismatches"]

Label = Literal["bug", "finite_difference_noise", "float32_noise", "kink"]


@dataclass(frozen=True)
class Verdict:
    """What one mismatching entry is, with the numbers that decide it."""

    parameter: str
    index: tuple[int, ...]
    label: Label
    analytic: float
    numerical: float
    """Central difference at step h."""
    numerical_half: float
    """Central difference at step h/2: how far it moves measures the estimate's own error."""
    left: float
    right: float
    """One-sided differences (loss - loss(-h)) / h and (loss(+h) - loss) / h."""
    unit: str = ""
    """At a kink: the unit whose pre-activation crossed 0, e.g. "layer 1 unit 0 (example 2)"."""
    sentence: str = ""


class _Calls:
    """The ``calls.loss`` interface that checking's kink bracket expects."""

    def __init__(self, loss_fn: Callable[[Mapping[str, np.ndarray]], object]) -> None:
        self._loss_fn = loss_fn

    def loss(self, params: Mapping[str, np.ndarray]) -> float:
        return float(np.asarray(self._loss_fn(params), dtype=np.float64).reshape(-1)[0])


def judge_mismatches(
    loss_fn: Callable[[Mapping[str, np.ndarray]], object],
    params: Mapping[str, np.ndarray],
    analytic: Mapping[str, np.ndarray],
    *,
    eps: float | None = None,
    tolerance: Tolerance | None = None,
    network: Network | Architecture | None = None,
    example: Example | None = None,
) -> tuple[Verdict, ...]:
    """Label every entry where the analytic gradient and central differences disagree.

    Args:
        loss_fn: ``loss_fn(params) -> float``, e.g. the loss of the student's fprop.
        params: the point to check at (copied; never modified).
        analytic: the gradients to judge, one array per parameter.
        eps: the step h (default: by dtype).
        tolerance: the strict tolerance a mismatch is measured against (default: by dtype).
        network, example: to name the unit that crossed a ReLU kink (x and options of the
            example are used with ``params``).

    Returns:
        One :class:`Verdict` per mismatching entry, in parameter order.

    Example:
        >>> import numpy as np
        >>> loss = lambda p: float(np.sum(p["w"] ** 3))
        >>> p = {"w": np.array([1.0, 2.0])}
        >>> [v.label for v in judge_mismatches(loss, p, {"w": np.array([3.0, 13.0])})]
        ['bug']
    """
    work = {key: np.array(value, copy=True) for key, value in params.items()}
    dtype = np.result_type(*work.values())
    tolerance = tolerance or tolerance_for(dtype)
    h = eps or tolerance.eps
    calls, raw = _Calls(loss_fn), loss_fn(work)
    loss = calls.loss(work)
    floor = noise_tolerance(tolerance, loss, {"loss": np.asarray(raw)}).atol
    samples = central_differences(calls.loss, work, h)
    verdicts: list[Verdict] = []
    for key, value in analytic.items():
        a, n = np.asarray(value, dtype=np.float64), samples.gradient[key]
        wrong = np.abs(a - n) > np.maximum(
            tolerance.rtol * np.maximum(np.abs(a), np.abs(n)), tolerance.atol
        )
        if not wrong.any():
            continue
        # The raw one-sided quotients (capped=False): the diagnosis reasons about them.
        bracket = kink_bracket(calls.loss, work, key, samples.loss_plus[key],
                               samples.loss_minus[key], loss, h, capped=False)
        flat = np.flatnonzero(wrong)
        only: dict[str, np.ndarray | list[int]] = {
            other: (flat if other == key else []) for other in work
        }
        half = central_differences(calls.loss, work, h / 2, only).gradient[key]
        for index in zip(*np.unravel_index(flat, a.shape)):
            verdicts.append(
                _judge(
                    key,
                    index,
                    a,
                    n,
                    half,
                    bracket,
                    floor,
                    dtype,
                    tolerance,
                    _kink_unit(network, example, work, key, index, h),
                )
            )
    return tuple(verdicts)


def _judge(
    key: str,
    index: tuple[int, ...],
    a: np.ndarray,
    n: np.ndarray,
    half: np.ndarray,
    bracket: Bracket,
    floor: float,
    dtype: np.dtype,
    tolerance: Tolerance,
    unit: str,
) -> Verdict:
    index = tuple(int(i) for i in index)
    value, estimate, estimate_half = float(a[index]), float(n[index]), float(half[index])
    left, right = float(bracket.left[index]), float(bracket.right[index])
    low, high = min(left, right), max(left, right)
    slack = max(tolerance.rtol * max(abs(low), abs(high)), tolerance.atol)
    difference, drift = abs(value - estimate), abs(estimate - estimate_half)
    # Rounding alone makes the one-sided quotients differ by up to the floor, at any step:
    # only a gap above it is a kink (in float32 it otherwise looks like one).
    # A named crossing is a kink even when the halved step still straddles it.
    kink = (bool(bracket.kink[index]) or bool(unit)) and high - low > floor
    if kink and low - slack <= value <= high + slack:
        label: Label = "kink"
    elif difference <= 2.0 * drift + floor:
        label = "float32_noise" if np.dtype(dtype).itemsize < 8 else "finite_difference_noise"
    else:
        label = "bug"
    verdict = Verdict(key, index, label, value, estimate, estimate_half, left, right, unit)
    return _with_sentence(verdict, drift, floor)


def _with_sentence(v: Verdict, drift: float, floor: float) -> Verdict:
    where = f"d{v.parameter}{list(v.index)}: analytic {v.analytic:.6g}, numerical {v.numerical:.6g}"
    if v.label == "kink":
        crossing = f" ({v.unit} crosses ReLU's 0 within the step)" if v.unit else ""
        text = (
            f"{where}: the loss has a kink here{crossing}; the analytic value lies in the one-sided "
            f"bracket [{min(v.left, v.right):.6g}, {max(v.left, v.right):.6g}], so it is accepted."
        )
    elif v.label == "float32_noise":
        text = (
            f"{where}: within float32 rounding noise (about {floor:.1g}); not a bug, check in "
            f"float64 to be sure."
        )
    elif v.label == "finite_difference_noise":
        text = (
            f"{where}: within the finite-difference error (the estimate moves by {drift:.1g} when "
            f"the step is halved); not a bug."
        )
    else:
        text = (
            f"{where} ({v.numerical_half:.6g} at half the step): the numerical estimates agree "
            f"with each other, so the difference is a bug in the analytic gradient."
        )
    return Verdict(**{**v.__dict__, "sentence": text})


def _kink_unit(
    network: Network | Architecture | None,
    example: Example | None,
    params: dict[str, np.ndarray],
    key: str,
    index: tuple[int, ...],
    h: float,
) -> str:
    if network is None or example is None:
        return ""
    arch = backprop.architecture_for(network, params, example.options)
    if "relu" not in arch.activations:
        return ""
    original = params[key][index].copy()
    try:
        params[key][index] = original + h
        upper = arch.preactivations(np.asarray(example.x, dtype=np.float64), params)
        params[key][index] = original - h
        lower = arch.preactivations(np.asarray(example.x, dtype=np.float64), params)
    finally:
        params[key][index] = original
    return _crossing(arch, upper, lower)


def _crossing(arch: Architecture, upper: list[np.ndarray], lower: list[np.ndarray]) -> str:
    for layer, (activation, above, below) in enumerate(
        zip(arch.activations, upper, lower), start=1
    ):
        if activation != "relu":
            continue
        crossed = np.argwhere((above > 0) != (below > 0))
        if crossed.size:
            unit, sample = crossed[0] if arch.layout == "columns" else crossed[0][::-1]
            return f"layer {layer} unit {int(unit)} (example {int(sample)})"
    return ""
