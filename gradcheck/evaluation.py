"""Calling the code under test: counted calls, failures as findings, reproducibility.

Shared by the full check (``checking``), the fast check (``fast``) and the layer and loss
checks (``layers``). Code under test may raise anything or return anything: what it did
wrong becomes a :class:`StudentError` whose message goes into the report as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .comparison import describe_value
from .differentiation import Method
from .gradient_report import GradientReport
from .tolerances import Tolerance, tolerance_for

__all__ = [
    "CheckOptions",
    "LossCalls",
    "StudentError",
    "changed_inputs",
    "copy_arrays",
    "exception_text",
    "first_pass",
    "loss_of",
    "not_reproducible",
    "resolve_settings",
    "rounding_of_loss",
    "scalar_loss",
]

Params = Mapping[str, np.ndarray]


class StudentError(Exception):
    """Code under test raised or returned something unusable; the message says which."""


class LossCalls:
    """Calls ``evaluate(params) -> cache``, counting calls and wrapping its failures.

    ``who`` names the function in messages ("fprop", "affine_forward", ...).
    """

    def __init__(self, evaluate: Callable[[Params], object], *, who: str = "fprop") -> None:
        self._evaluate, self.who = evaluate, who
        self.count = 0

    def fprop(self, params: Params) -> object:
        """The cache of one call (a dict with a ``"loss"`` key)."""
        self.count += 1
        try:
            return self._evaluate(params)
        except StudentError:
            raise
        except Exception as error:
            raise StudentError(f"{self.who} raised {exception_text(error)}") from error

    def loss(self, params: Params) -> float:
        """The scalar loss of one call."""
        return loss_of(self.fprop(params), self.who)


def loss_of(cache: object, who: str = "fprop") -> float:
    """The scalar loss in an fprop cache, or a clear error saying what is wrong with it."""
    if not isinstance(cache, Mapping):
        raise StudentError(
            f"{who} returned {type(cache).__name__}, not a dict (the cache with a 'loss' key)"
        )
    if "loss" not in cache:
        keys = ", ".join(map(repr, list(cache)[:8])) or "none"
        raise StudentError(f"{who}'s cache has no 'loss' key (its keys: {keys})")
    return scalar_loss(cache["loss"], who)


def scalar_loss(value: object, who: str = "fprop") -> float:
    """``value`` as one finite float, or a clear error saying why it is not a usable loss."""
    if type(value) is float:  # the common case, kept cheap
        loss = value
    else:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise StudentError(f"{who}'s loss is {describe_value(value)}, not a number") from None
        if array.size != 1:
            raise StudentError(
                f"{who}'s loss has shape {array.shape}, not a scalar: sum the loss over the batch "
                "(np.sum) so it is one number"
            )
        loss = float(array.reshape(-1)[0])
    if not np.isfinite(loss):
        raise StudentError(f"{who}'s loss is {loss}")
    return loss


def first_pass(calls: LossCalls, backprop: Callable[[object], object], work: dict[str, np.ndarray],
               tolerance: Tolerance, settings: Mapping[str, Any], *, who: str = "bprop"
               ) -> tuple[object, float, object] | GradientReport:
    """Run fprop then bprop once: (cache, loss, analytic), or the report of what failed."""
    try:
        cache = calls.fprop(work)
        loss = loss_of(cache, calls.who)
    except StudentError as error:
        return GradientReport((), problems=(str(error),), tolerance=tolerance,
                              evaluations=calls.count, **settings)
    try:
        analytic = backprop(cache)
    except StudentError as error:  # an adapter's finding about what backprop returned
        return GradientReport((), problems=(str(error),), loss=loss, tolerance=tolerance,
                              evaluations=calls.count, **settings)
    except Exception as error:  # noqa: BLE001 - student code may raise anything
        return GradientReport((), problems=(f"{who} raised {exception_text(error)}",), loss=loss,
                              tolerance=tolerance, evaluations=calls.count, **settings)
    return cache, loss, analytic


def not_reproducible(calls: LossCalls, params: Params, first: float, when: str,
                     who_backward: str = "bprop") -> str | None:
    """Evaluate the loss at the starting point again; a sentence when it moved, else None.

    A loss that changes between calls at the same point (state kept between calls, a
    backward that modifies its inputs or the cache, unseeded randomness) makes every finite
    difference meaningless: the differences measure the drift, not the slope. The same
    code on the same inputs gives the same bits; the rounding of the parameters' dtype is
    allowed (BLAS kernels may depend on memory alignment), the same allowance as the
    rounding floor of the comparison, so a drift this small moves no difference quotient
    by more than that floor.
    """
    again = calls.loss(params)
    if abs(again - first) <= rounding_of_loss(first, params):
        return None
    return (f"the loss is not reproducible: {calls.who} gave {first!r} at the starting point, "
            f"then {again!r} at the same point {when} (difference {again - first:.3g}); the "
            f"inputs or the cache changed between calls, or state is kept between calls. Make "
            f"{calls.who} and {who_backward} leave their arguments unchanged (no in-place "
            "updates such as x -= ..., dout += ...), keep no state between calls, and seed any "
            "randomness (dropout masks)")


def rounding_of_loss(loss: float, params: Params) -> float:
    """How far rounding alone may move a loss of this size computed from these parameters."""
    dtype = np.result_type(*params.values()) if params else np.dtype(np.float64)
    machine = np.finfo(dtype).eps if dtype.kind in "fc" else np.finfo(np.float64).eps
    return 10.0 * float(machine) * max(abs(loss), 1.0)


def resolve_settings(params: Params, eps: float | None, rtol: float | None, atol: float | None,
                     name: str, method: str, tolerance: Tolerance | None = None
                     ) -> tuple[Tolerance, dict[str, Any]]:
    """The tolerance (dtype defaults unless overridden) and the report's settings fields."""
    dtype = np.result_type(*params.values()) if params else np.dtype(np.float64)
    defaults = tolerance or tolerance_for(dtype, warn=True)
    chosen = Tolerance(
        rtol=rtol if rtol is not None else defaults.rtol,
        atol=atol if atol is not None else defaults.atol,
        eps=eps if eps is not None else defaults.eps,
    )
    return chosen, dict(dtype=str(dtype), method=method, eps=chosen.eps, name=name)


def changed_inputs(original: Params, used: Params, who: str, *, noun: str = "params",
                   advice: str = "fprop/bprop should not change their inputs (update must return "
                                 "new arrays)") -> tuple[str, ...]:
    """One sentence naming the first array of ``used`` that differs from ``original``."""
    if all(np.array_equal(original[key], used[key]) for key in original):
        return ()  # the cheap look first: NaN masks only when something differs
    changed = [key for key in original if not np.array_equal(original[key], used[key], equal_nan=True)]
    if not changed:
        return ()
    return (f"{who} modified {noun}[{changed[0]!r}] in place; {advice}",)


def copy_arrays(params: Params) -> dict[str, np.ndarray]:
    """C-ordered copies: perturbed in place, never the caller's arrays."""
    return {key: np.array(value, order="C", copy=True) for key, value in params.items()}


def exception_text(error: BaseException) -> str:
    """``TypeName: message`` (or the type's name alone when the message is empty)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class CheckOptions:
    """How a check runs; the public functions fill it from their keyword arguments."""

    mode: Literal["full", "fast"] = "full"
    eps: float | None = None
    method: Method = "central"
    rtol: float | None = None
    atol: float | None = None
    tolerance: Tolerance | None = None
    """Overrides the dtype's default tolerance (rtol, atol, eps override its fields)."""
    max_entries: int | Literal["all"] | None = None
    seed: int = 0
    probes: int | None = None
    """Fast mode: random directions per parameter (None: ``gradcheck.fast.DEFAULT_PROBES``)."""
    name: str = ""
    backward: str = "bprop"
    """How messages name the function that returns the gradients."""
    noun: str = "params"
    """What the differentiated arrays are called in messages: params or inputs."""
    mutation_fails: bool = False
    """An input changed in place by forward/backward fails the check (else it is a note)."""
    context: Mapping[str, Any] = field(default_factory=dict)
    """What the diagnosis may know besides the gradients (``batch_size``, ``inputs``,
    ``functions``: see :func:`gradcheck.diagnosis.diagnose_gradients`)."""

    def settings(self, params: Params, method: str | None = None) -> tuple[Tolerance, dict[str, Any]]:
        """The tolerance and the report's settings fields for these parameters."""
        tolerance, settings = resolve_settings(params, self.eps, self.rtol, self.atol, self.name,
                                               method or self.method, self.tolerance)
        noun = "parameters" if self.noun == "params" else self.noun
        return tolerance, {**settings, "noun": noun}

    def mutations(self, original: Params, used: Params, who: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(problems, warnings): the sentence about an input changed in place, where it belongs."""
        if self.noun == "params":
            found = changed_inputs(original, used, who)
        else:
            found = changed_inputs(original, used, who, noun=self.noun,
                                   advice="a layer must not change its arguments (write out = x + ..., "
                                          "not x += ...), or the layers before it see wrong values")
        return (found, ()) if self.mutation_fails else ((), found)
