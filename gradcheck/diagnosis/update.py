"""Name what an update step did instead of p - lr * dp: gradient ascent, lr missing or twice...

Each hypothesis is a formula in p, dp and lr, tested against the new parameters the
student returned, as :mod:`~gradcheck.diagnosis.core` tests gradients: "gradient ascent"
means the new value equals p + lr * dp to the tolerance.

Example:
    >>> import numpy as np
    >>> p, dp = {"W": np.array([1.0, 2.0])}, {"W": np.array([0.5, -1.0])}
    >>> diagnose_update({"W": p["W"] + 0.1 * dp["W"]}, p, dp, 0.1)["W"].cause
    'gradient_ascent'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..tolerances import Tolerance, tolerance_for
from .arrays import aligned, as_array, close
from .core import fit
from .model import Diagnosis
from .sentences import make

__all__ = ["diagnose_update"]


@dataclass(frozen=True)
class _Step:
    """One wrong update: its cause, the new value it computes, and how to fix it."""

    cause: str
    new: Callable[[np.ndarray, np.ndarray, float], np.ndarray]
    """new(p, dp, lr): what this mistake returns."""
    sentence: str
    """With {function} and {name}; always ends by pointing at p - lr * dp."""


# In the order they are tried: with lr = 1 several coincide, and the first is named.
_STEPS = (
    _Step(
        "gradient_ascent",
        lambda p, dp, lr: p + lr * dp,
        "{function} adds the step to {name}: p + lr * dp is gradient ascent; use p - lr * dp.",
    ),
    _Step(
        "learning_rate_missing",
        lambda p, dp, lr: p - dp,
        "{function} subtracts the whole gradient from {name} (p - dp): the step is the "
        "gradient times the learning rate, p - lr * dp.",
    ),
    _Step(
        "learning_rate_twice",
        lambda p, dp, lr: p - lr * lr * dp,
        "{function} applies the learning rate twice to {name} (p - lr**2 * dp): use "
        "p - lr * dp, with lr once.",
    ),
    _Step(
        "not_updated",
        lambda p, dp, lr: p,
        "{function} returned {name} unchanged: return the new value p - lr * dp.",
    ),
    _Step(
        "returned_step",
        lambda p, dp, lr: -lr * dp,
        "{function} returned the step -lr * dp for {name}, not the new value: return p - lr * dp.",
    ),
    _Step(
        "returned_step",
        lambda p, dp, lr: lr * dp,
        "{function} returned lr * dp for {name}, not the new value: subtract it from the "
        "parameter, return p - lr * dp.",
    ),
)


def diagnose_update(
    new_params: Mapping[str, object] | BaseException | None,
    params: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    lr: float,
    *,
    tolerance: Tolerance | None = None,
    function: str = "update",
) -> dict[str, Diagnosis]:
    """Diagnose every parameter whose new value is not p - lr * dp; right ones get no entry.

    Args:
        new_params: what the student's update returned (or the exception it raised).
        params, grads, lr: what it was called with (``params`` as they were before the call).
        tolerance: when two values count as equal (default: by the parameters' dtype).
        function: the update function's name, for the sentences.

    Returns:
        ``{parameter: Diagnosis}``: ``gradient_ascent`` (p + lr * dp),
        ``learning_rate_missing`` (p - dp), ``learning_rate_twice`` (p - lr**2 * dp),
        ``not_updated`` (p), ``returned_step`` (-lr * dp), ``scaled`` (a step of another
        size), else ``missing``, ``wrong_shape``, ``not_finite`` or ``no_simple_pattern``.

    Example:
        >>> import numpy as np
        >>> p, dp = {"b": np.array([1.0, -1.0])}, {"b": np.array([2.0, 4.0])}
        >>> diagnose_update({"b": p["b"] - dp["b"]}, p, dp, 0.5)["b"].sentence[:47]
        'update subtracts the whole gradient from b (p -'
    """
    if not isinstance(new_params, Mapping):
        return {name: _not_returned(name, new_params, function) for name in params}
    dtype = np.result_type(*params.values()) if params else np.dtype(np.float64)
    tolerance = tolerance or tolerance_for(dtype)
    found = {
        name: _diagnose(name, new_params.get(name), params, grads, lr, tolerance, function)
        for name in params
    }
    return {name: diagnosis for name, diagnosis in found.items() if diagnosis is not None}


def _diagnose(
    name: str,
    value: object,
    params: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    lr: float,
    tolerance: Tolerance,
    function: str,
) -> Diagnosis | None:
    p = np.asarray(params[name], dtype=np.float64)
    dp = np.asarray(grads[name], dtype=np.float64)
    new = None if value is None else as_array(value)
    if new is None:
        return make(
            name,
            "missing",
            f"{function} returned no new value for {name}: return a dict with p - lr * dp "
            f"under every parameter's name.",
        )
    new = aligned(new, p)
    if new.shape != p.shape:
        return make(
            name,
            "wrong_shape",
            f"{function} returned {name} with shape {new.shape}, but {name} has shape "
            f"{p.shape}: p - lr * dp keeps the parameter's shape.",
        )
    if not np.all(np.isfinite(new)):
        return make(
            name,
            "not_finite",
            f"{function} returned NaN or infinite values for {name}: the step p - lr * dp "
            f"of finite values is finite.",
        )
    if close(new, p - lr * dp, tolerance):
        return None
    return _wrong_step(name, new, p, dp, lr, tolerance, function)


def _wrong_step(
    name: str,
    new: np.ndarray,
    p: np.ndarray,
    dp: np.ndarray,
    lr: float,
    tolerance: Tolerance,
    function: str,
) -> Diagnosis:
    # The step taken against the step expected: its alpha is what the student multiplied by.
    evidence = {"lr": float(lr), **fit(p - new, lr * dp, tolerance)}
    for step in _STEPS:
        if close(new, step.new(p, dp, lr), tolerance):
            return make(
                name, step.cause, step.sentence.format(function=function, name=name), evidence
            )
    alpha = evidence["alpha"]
    if alpha and close(new, p - alpha * lr * dp, tolerance):
        return make(
            name,
            "scaled",
            f"{function}'s step for {name} is {alpha:.4g} times lr * dp: use p - lr * dp, "
            f"with no other factor.",
            evidence,
        )
    return make(
        name,
        "no_simple_pattern",
        f"{function}'s new {name} differs from p - lr * dp with no simple pattern (the step "
        f"is alpha = {alpha:.3g} times lr * dp, cosine = {evidence['cosine']:.3f}): compute "
        f"p - lr * dp for every parameter.",
        evidence,
    )


def _not_returned(name: str, value: object, function: str) -> Diagnosis:
    if value is None:
        # No return statement: most often the loop updated params in place and stopped there.
        return make(
            name,
            "missing",
            f"{function} returned None instead of the new parameters: updating params in place "
            f"(params[key] -= lr * grads[key]) is not enough, the grader uses what {function} "
            f"returns; return the new dict, {{key: params[key] - lr * grads[key] for key in "
            f"params}}.",
        )
    what = (
        f"raised {type(value).__name__}"
        if isinstance(value, BaseException)
        else f"returned {type(value).__name__}"
    )
    return make(
        name,
        "missing",
        f"{function} {what} instead of the new parameters: return a dict with p - lr * dp "
        f"for every parameter, {name} included.",
    )
