"""Numerical care shared by every check: the rounding floor of the loss, and kinks.

Rounding. ``L(p + h) - L(p - h)`` carries a rounding error of about machine-epsilon * |L|;
divided by 2h it is the smallest difference of slopes central differences can resolve, so
the comparison's absolute tolerance is raised to it (:func:`noise_tolerance`).

Kinks. Where the loss is not differentiable within the step (a ReLU input within h of 0,
a max with a near tie), the one-sided quotients ``left = (L - L(p - h)) / h`` and
``right = (L(p + h) - L) / h`` disagree, and every valid (sub)gradient lies between them.
:func:`bracket` accepts an entry as a kink only when the numbers look like one kink:

- the gap between ``left`` and ``right`` does not shrink when the step is halved (a
  smooth loss's gap is about ``h * f''`` and halves with h): the kink is within h/5;
- on one side, the quotient at h/2 equals the quotient at h: that side is smooth (at a
  kink at the point itself, both sides are);
- the other side's quotient moves by exactly what the gap loses, as it does when one kink
  at distance u h moves the far quotient from s2 - J u to s2 - 2 J u.

What a kink accepts is capped: a kink at the point itself (within h/20: neither side's
quotient moves) accepts any value between the two slopes, every one a valid subgradient;
a kink measurably off the point accepts only the smooth side's slope, which is the
derivative at the point. So no bracket accepts an error of the size of the jump in slope,
let alone of the gradient, unless the loss really is not differentiable at the point.

A loss that is not reproducible between calls (state kept between calls, inputs changed
by a backward pass, unseeded randomness) fails these equalities: its quotients move by the
drift on both sides.
The checks also re-evaluate the loss at the starting point and fail outright when it moved
(see :func:`gradcheck.evaluation.not_reproducible`), so a bracket is never built from a
stale centre.

Example:
    >>> import numpy as np
    >>> relu_sum = lambda p: float(np.sum(np.maximum(p["z"], 0.0)))
    >>> p = {"z": np.array([1e-9, 2.0])}  # entry 0 sits 1e-9 above the kink
    >>> h, f = 1e-6, relu_sum(p)
    >>> plus = np.array([relu_sum({"z": p["z"] + h * e}) for e in np.eye(2)])
    >>> minus = np.array([relu_sum({"z": p["z"] - h * e}) for e in np.eye(2)])
    >>> found = bracket(relu_sum, p, "z", plus, minus, f, h)
    >>> found.kink.tolist(), [round(float(found.left[0]), 6), round(float(found.right[0]), 6)]
    ([True, False], [0.001, 1.0])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .comparison import Bracket
from .tolerances import Tolerance

__all__ = ["bracket", "noise_tolerance"]

Params = Mapping[str, np.ndarray]


def noise_tolerance(tolerance: Tolerance, loss: float, cache: object) -> Tolerance:
    """``tolerance`` with atol raised to the rounding noise of central differences of ``loss``.

    The precision is the loss's own dtype, or ``cache["loss_dtype"]`` when the cache says in
    what precision the loss's terms were computed (a float32 layer's output, summed in float64).
    """
    loss_value = cache["loss"] if isinstance(cache, Mapping) and "loss" in cache else loss
    given = cache.get("loss_dtype") if isinstance(cache, Mapping) else None
    dtype = np.dtype(given) if given is not None else np.asarray(loss_value).dtype
    machine = np.finfo(dtype).eps if dtype.kind == "f" else np.finfo(np.float64).eps
    noise = 10.0 * machine * max(abs(loss), 1.0) / tolerance.eps
    if noise <= tolerance.atol:
        return tolerance
    return Tolerance(rtol=tolerance.rtol, atol=noise, eps=tolerance.eps)


def bracket(loss_fn: Callable[[Params], float], params: dict[str, np.ndarray], key: str,
            plus: np.ndarray, minus: np.ndarray, center: float, eps: float,
            *, noise: float = 0.0, capped: bool = True) -> Bracket:
    """One-sided quotients of ``params[key]`` and which entries are kinks (see the module).

    Args:
        loss_fn: the loss; called twice for every entry whose one-sided quotients differ.
        params: the point; entries are perturbed in place and restored exactly.
        key: the parameter.
        plus, minus: ``L(p + h e_k)`` and ``L(p - h e_k)`` per entry (NaN: not sampled).
        center: ``L(p)``, evaluated after every other call that could have changed state.
        eps: the step h.
        noise: the rounding floor of a quotient (``noise_tolerance(...).atol``): gaps below
            it are rounding, not kinks.
        capped: return, at kinks, the interval of values to accept (``left <= right``; one
            point, the smooth side's slope, for a kink off the point); ``False``: the raw
            one-sided quotients ``left`` and ``right`` everywhere.
    """
    right, left = (plus - center) / eps, (center - minus) / eps
    gap = np.abs(right - left)
    scale = np.maximum(np.maximum(np.abs(left), np.abs(right)), 1.0)
    kink = np.zeros(plus.shape, dtype=bool)
    low, high = np.minimum(left, right), np.maximum(left, right)
    visible = gap > np.maximum(1e-6 * scale, 2.0 * noise)
    for index in zip(*np.nonzero(visible)):
        half_left, half_right = _half_step(loss_fn, params, key, index, center, eps)
        found = _one_kink(left[index], right[index], half_left, half_right, noise)
        if found is not None:
            kink[index] = True
            low[index], high[index] = found
    if not capped:
        return Bracket(left=left, right=right, kink=kink)
    return Bracket(left=low, right=high, kink=kink)


def _one_kink(left: float, right: float, half_left: float, half_right: float,
              noise: float) -> tuple[float, float] | None:
    """The interval of derivatives to accept at one kink, or None when this is not one kink.

    One kink at distance u * h from the point (0 <= u < 1/2), slopes s1 and s2, J = s2 - s1:
    the far side's quotient is s2 - J u at h and s2 - 2 J u at h/2; the near side's is s1 at
    both. So the gap is J (1 - u), the half-step gap J (1 - 2 u), one side does not move,
    and the other moves by exactly the gap's loss. Drift, noise and jumps break these
    equalities. A kink at the point (u about 0: both sides still) accepts every value between
    the slopes (a subgradient: relu'(0) may be 0 or 1); a kink measurably off the point
    accepts only the smooth side's slope, the derivative at the point itself, so the bracket
    never accepts the jump J as an error.
    """
    gap, half_gap = abs(right - left), abs(half_right - half_left)
    moves = (abs(half_left - left), abs(half_right - right))
    still, moved = min(moves), max(moves)
    slack = 0.05 * gap + 4.0 * noise
    if not (half_gap > 0.75 * gap  # the kink is within h/5: the gap does not shrink
            and still <= slack  # one side is smooth
            and abs((gap - half_gap) - moved) <= slack):  # the other moved as one kink moves it
        return None
    if moved <= slack:  # at the point
        return min(left, right), max(left, right)
    smooth = left if moves[0] <= moves[1] else right
    truncation = 2.0 * still + 4.0 * noise  # the one-sided quotient's own error, about h f''/2
    return smooth - truncation, smooth + truncation


def _half_step(loss_fn: Callable[[Params], float], params: dict[str, np.ndarray], key: str,
               index: tuple[int, ...], center: float, eps: float) -> tuple[float, float]:
    array = params[key]
    original = array[index].copy()
    try:
        array[index] = original + eps / 2
        half_right = (loss_fn(params) - center) / (eps / 2)
        array[index] = original - eps / 2
        half_left = (center - loss_fn(params)) / (eps / 2)
    finally:
        array[index] = original
    return half_left, half_right
