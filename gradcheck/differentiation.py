"""Numerical differentiation of a scalar loss with respect to a dict of arrays.

Every method perturbs one entry at a time *in place* and restores the original value
bit for bit afterwards (also when the loss raises), so a check costs no copy of the
parameters per entry: central differences make exactly 2P calls for P entries, which
is the limit for a black-box loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import InvalidArgument
from .tolerances import tolerance_for

__all__ = ["numerical_gradient", "directional_derivative", "validate_params", "Method", "METHODS"]

Method = Literal["central", "forward", "backward", "complex", "richardson"]
METHODS: tuple[str, ...] = ("central", "forward", "backward", "complex", "richardson")

Params = Mapping[str, np.ndarray]
LossFn = Callable[[Params], object]
# Flat indices per parameter; None means every entry.
Entries = Mapping[str, Sequence[int] | np.ndarray] | None


def numerical_gradient(
    loss_fn: LossFn,
    params: Params,
    eps: float | None = None,
    *,
    method: Method = "central",
    entries: Entries = None,
) -> dict[str, np.ndarray]:
    """Estimate d loss / d params by finite differences.

    Args:
        loss_fn: ``loss_fn(params) -> float`` (a 0-d or one-element array is accepted).
        params: dict of floating-point arrays; perturbed in place and restored exactly.
        eps: the step; ``None`` picks the step of the parameters' dtype (1e-6 for float64,
            1e-3 for float32; 1e-20 for ``method="complex"``).
        method: ``"central"`` (2 calls per entry, error O(eps^2)), ``"forward"`` or
            ``"backward"`` (1 call per entry plus one, error O(eps)), ``"complex"``
            (complex step: 1 call per entry, exact to rounding, needs a loss that accepts
            complex parameters), ``"richardson"`` (4 calls per entry, error O(eps^4)).
        entries: optional flat indices per parameter to differentiate; the other entries
            of the result are NaN. Used to sample very large parameters.

    Returns:
        A dict with the keys of ``params`` and float64 arrays of their shapes.

    Raises:
        InvalidArgument: ``params`` is not a dict of floating-point arrays, or ``method``
            is unknown.

    Example:
        >>> import numpy as np
        >>> p = {"w": np.array([1.0, 2.0])}
        >>> g = numerical_gradient(lambda q: float(np.sum(q["w"] ** 2)), p)
        >>> np.allclose(g["w"], [2.0, 4.0])
        True
    """
    validate_params(params)
    if method not in METHODS:
        raise InvalidArgument(f"method={method!r} is not one of {', '.join(METHODS)}")
    if method == "complex":
        return _complex_step(loss_fn, params, eps or 1e-20, entries)
    step = eps if eps is not None else _default_eps(params)
    if method == "central":
        return central_differences(loss_fn, params, step, entries).gradient
    if method == "richardson":
        # An O(h^4) stencil balances rounding at a larger step: about eps ** (1/2).
        return _richardson(loss_fn, params, eps or step**0.5, entries)
    return _one_sided(loss_fn, params, step, entries, sign=1.0 if method == "forward" else -1.0)


@dataclass(frozen=True)
class CentralDifferences:
    """The central-difference gradient and the two loss values behind each entry."""

    gradient: dict[str, np.ndarray]
    loss_plus: dict[str, np.ndarray]
    """Loss with the entry increased by the step."""
    loss_minus: dict[str, np.ndarray]
    """Loss with the entry decreased by the step."""
    eps: float


def central_differences(
    loss_fn: LossFn, params: Params, eps: float, entries: Entries = None
) -> CentralDifferences:
    """Central differences, keeping L(p + h) and L(p - h) for the kink test."""
    gradient, plus, minus = {}, {}, {}
    for key, array in params.items():
        gradient[key] = np.full(array.shape, np.nan)
        plus[key] = np.full(array.shape, np.nan)
        minus[key] = np.full(array.shape, np.nan)
        if array.dtype == np.float64 and array.flags.c_contiguous:
            _central_flat(loss_fn, params, array.reshape(-1), eps, _flat_indices(array, entries, key),
                          gradient[key].reshape(-1), plus[key].reshape(-1), minus[key].reshape(-1))
            continue
        for index in _indices(array, entries, key):
            with _perturbed(array, index, +eps) as step_up:
                f_plus = _scalar(loss_fn(params))
            with _perturbed(array, index, -eps) as step_down:
                f_minus = _scalar(loss_fn(params))
            # Divide by the steps actually taken: x + h is rounded to the dtype.
            gradient[key][index] = (f_plus - f_minus) / (step_up - step_down)
            plus[key][index], minus[key][index] = f_plus, f_minus
    return CentralDifferences(gradient, plus, minus, eps)


def _central_flat(
    loss_fn: LossFn, params: Params, flat: np.ndarray, eps: float, indices: Iterable[int],
    gradient: np.ndarray, plus: np.ndarray, minus: np.ndarray,
) -> None:
    # The hot loop of a full check, for float64 C-contiguous arrays: Python floats on a
    # flat view cost far less per entry than a context manager, a tuple index and 0-d
    # array copies. float64 + float is float64 arithmetic either way, so the perturbed
    # values, the steps and the restored value are bit for bit those of the general path.
    # A memoryview reads and writes Python floats in the array's own memory at a fraction of
    # the cost of numpy's scalar indexing. The loop only perturbs and calls; the steps and
    # quotients are computed afterwards for all entries at once, with the same float64
    # arithmetic (x + h is rounded to the dtype: divide by the steps actually taken).
    values = memoryview(flat)
    chosen = list(indices)
    ups, downs = [], []
    for i in chosen:
        original = values[i]
        try:
            values[i] = original + eps
            ups.append(_scalar(loss_fn(params)))
            values[i] = original - eps
            downs.append(_scalar(loss_fn(params)))
        finally:
            values[i] = original
    at = np.array(chosen, dtype=np.intp)
    originals = flat[at]
    steps = ((originals + eps) - originals) - ((originals - eps) - originals)
    plus[at], minus[at] = ups, downs
    gradient[at] = (plus[at] - minus[at]) / steps


def _flat_indices(array: np.ndarray, entries: Entries, key: str) -> Iterable[int]:
    if entries is None or key not in entries:
        return range(array.size)
    return [int(flat) for flat in entries[key]]


def directional_derivative(
    loss_fn: LossFn, params: Params, direction: Params, eps: float | None = None
) -> float:
    """Central difference of the loss along ``direction``: (L(p + h u) - L(p - h u)) / 2h.

    Two loss calls, whatever the number of parameters. ``params`` is restored exactly.

    Example:
        >>> import numpy as np
        >>> p = {"w": np.array([1.0, 2.0])}
        >>> u = {"w": np.array([1.0, 0.0])}
        >>> round(directional_derivative(lambda q: float(np.sum(q["w"] ** 2)), p, u), 6)
        2.0
    """
    validate_params(params)
    step = eps if eps is not None else _default_eps(params)
    saved = {key: params[key].copy() for key in direction}
    try:
        for key, u in direction.items():
            params[key] += step * u
        f_plus = _scalar(loss_fn(params))
        for key, u in direction.items():
            np.copyto(params[key], saved[key])
            params[key] -= step * u
        f_minus = _scalar(loss_fn(params))
    finally:
        for key, original in saved.items():
            np.copyto(params[key], original)
    return (f_plus - f_minus) / (2.0 * step)


def _one_sided(
    loss_fn: LossFn, params: Params, eps: float, entries: Entries, *, sign: float
) -> dict[str, np.ndarray]:
    f_zero = _scalar(loss_fn(params))
    gradient = {}
    for key, array in params.items():
        gradient[key] = np.full(array.shape, np.nan)
        for index in _indices(array, entries, key):
            with _perturbed(array, index, sign * eps) as step:
                gradient[key][index] = (_scalar(loss_fn(params)) - f_zero) / step
    return gradient


def _richardson(
    loss_fn: LossFn, params: Params, eps: float, entries: Entries
) -> dict[str, np.ndarray]:
    # The five-point stencil is Richardson extrapolation of central differences at h and
    # 2h: the O(h^2) error terms cancel, leaving O(h^4).
    gradient = {}
    for key, array in params.items():
        gradient[key] = np.full(array.shape, np.nan)
        for index in _indices(array, entries, key):
            f = {}
            for multiple in (-2, -1, 1, 2):
                with _perturbed(array, index, multiple * eps):
                    f[multiple] = _scalar(loss_fn(params))
            gradient[key][index] = (8 * (f[1] - f[-1]) - (f[2] - f[-2])) / (12 * eps)
    return gradient


def _complex_step(
    loss_fn: LossFn, params: Params, eps: float, entries: Entries
) -> dict[str, np.ndarray]:
    # Im L(p + i h e_k) / h has no subtractive cancellation, so h can be tiny and the
    # result is exact to rounding; the loss must be analytic and accept complex input.
    work = {key: np.asarray(value, dtype=np.complex128).copy() for key, value in params.items()}
    gradient = {}
    for key, array in work.items():
        gradient[key] = np.full(array.shape, np.nan)
        for index in _indices(array, entries, key):
            original = array[index]
            array[index] = original + 1j * eps
            try:
                loss = np.asarray(loss_fn(work))
            finally:
                array[index] = original
            if not np.iscomplexobj(loss):
                raise InvalidArgument(
                    "method='complex' needs a loss that keeps complex input complex, but the "
                    f"loss returned {loss.dtype}; drop np.real/abs/float() from the loss or use "
                    "method='central'"
                )
            gradient[key][index] = float(np.imag(loss).reshape(-1)[0]) / eps
    return gradient


class _perturbed:
    """Context manager: add ``delta`` to one entry, yield the step taken, restore exactly."""

    def __init__(self, array: np.ndarray, index: tuple[int, ...], delta: float) -> None:
        self.array, self.index, self.delta = array, index, delta

    def __enter__(self) -> float:
        self.original = self.array[self.index].copy()
        self.array[self.index] = self.original + self.delta
        return float(self.array[self.index]) - float(self.original)

    def __exit__(self, *exc_info: object) -> None:
        self.array[self.index] = self.original


def _indices(array: np.ndarray, entries: Entries, key: str) -> Iterator[tuple[int, ...]]:
    if entries is None or key not in entries:
        yield from np.ndindex(array.shape)
        return
    for flat in entries[key]:
        yield tuple(int(i) for i in np.unravel_index(int(flat), array.shape))


def _scalar(value: object) -> float:
    if isinstance(value, float):  # also np.float64: the common case, kept cheap
        return float(value)
    array = np.asarray(value)
    if array.size != 1:
        raise InvalidArgument(
            f"the loss must be a scalar, but it has shape {array.shape}; sum it "
            "(e.g. return float(np.sum(loss)))"
        )
    return float(array.reshape(-1)[0].real)


def _default_eps(params: Params) -> float:
    return max(tolerance_for(value.dtype).eps for value in params.values()) if params else 1e-6


def validate_params(params: Params) -> None:
    """Raise :class:`InvalidArgument` unless ``params`` is a dict of writeable float arrays."""
    if not isinstance(params, Mapping):
        raise InvalidArgument(
            f"params must be a dict of numpy arrays, not {type(params).__name__}"
        )
    for key, value in params.items():
        if not isinstance(value, np.ndarray):
            raise InvalidArgument(
                f"params[{key!r}] is a {type(value).__name__}; pass a numpy array "
                f"(np.asarray(params[{key!r}], dtype=float))"
            )
        if value.dtype.kind not in "fc":
            raise InvalidArgument(
                f"params[{key!r}] has dtype {value.dtype}: finite differences need "
                f"floating-point parameters; pass params[{key!r}].astype(float)"
            )
        if not value.flags.writeable:
            raise InvalidArgument(
                f"params[{key!r}] is read-only; gradcheck perturbs entries in place and "
                "restores them, so pass a writeable array (a .copy())"
            )


_check_params = validate_params  # the former private name, kept for modules that import it
