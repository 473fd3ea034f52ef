"""Check CS231n-style layers and losses, as they are, against finite differences.

A layer library written in the CS231n convention needs no adapter:

- a layer is ``forward(*inputs) -> (out, cache)`` and ``backward(dout, cache) -> grads``,
  with ``grads`` one gradient per differentiable input in input order (``(dx, dw, db)``),
  a single array (one differentiable input), or a dict (``{"x": ...}`` or ``{"dx": ...}``);
- a layer with several outputs returns ``(out1, ..., outk, cache)`` and its backward takes
  ``backward(dout1, ..., doutk, cache)`` (CS231n's ``lstm_step_forward`` /
  ``lstm_step_backward``): the last element of what forward returns is always the cache;
- a loss is ``loss(x, y, ...) -> (loss, dx)`` (``softmax_loss``, ``svm_loss``), or
  ``(loss, grads)`` for several inputs (``svm_loss_naive(W, X, y, reg) -> (loss, dW)``
  with ``wrt="W"``).

:func:`check_layer` differentiates ``L = sum_k sum(out_k * dout_k)`` for a seeded random
``dout`` of out's shape (or the one given), whose gradient is exactly what ``backward(dout,
cache)`` returns; :func:`check_loss` differentiates the loss itself. Both return the same
:class:`gradcheck.GradientReport` as :func:`gradcheck.check_gradients` (worst index with
both values, diagnosis, fast mode, float32 tolerances), one row per differentiable input.

Which inputs are differentiated: every floating-point numpy array among the inputs, unless
``wrt`` names them (by name or position). Everything else (``conv_param`` and ``bn_param``
dicts, integer labels, ``reg``) is passed through: containers are copied for every call
(``batchnorm_forward`` may update ``bn_param``'s running averages as it likes), arrays
once. The caller's values are never modified; a layer that modifies an input array in
place, or ``dout``, fails the check, and so does a loss that is not reproducible.

Example:
    >>> import numpy as np, gradcheck
    >>> def affine_forward(x, w, b):
    ...     out = x.reshape(x.shape[0], -1) @ w + b
    ...     return out, (x, w)
    >>> def affine_backward(dout, cache):
    ...     x, w = cache
    ...     dx = (dout @ w.T).reshape(x.shape)
    ...     return dx, x.reshape(x.shape[0], -1).T @ dout, dout.sum(axis=0)
    >>> rng = np.random.default_rng(0)
    >>> x, w, b = rng.normal(size=(4, 2, 3)), rng.normal(size=(6, 5)), rng.normal(size=5)
    >>> report = gradcheck.check_layer(affine_forward, affine_backward, (x, w, b))
    >>> report.ok, [p.name for p in report.parameters]
    (True, ['x', 'w', 'b'])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from .checking import raise_unless_ok, run_check
from .comparison import describe_value
from .differentiation import Method
from .errors import InvalidArgument
from .evaluation import CheckOptions, LossCalls, StudentError, scalar_loss
from .gradient_report import GradientReport
from .tolerances import Tolerance

__all__ = ["assert_layer_close", "assert_loss_close", "check_layer", "check_loss"]

Inputs = Sequence[object] | Mapping[str, object] | np.ndarray
Wrt = str | int | Sequence[str | int] | None
Mode = Literal["full", "fast"]
_DOUT_TAG = 2  # seeds [seed, 2]: apart from the fast check's directions (0) and samples (1)


def check_layer(
    forward: Callable[..., object],
    backward: Callable[..., object],
    inputs: Inputs,
    dout: np.ndarray | Sequence[np.ndarray] | None = None,
    *,
    wrt: Wrt = None,
    mode: Mode = "full",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    tolerance: Tolerance | None = None,
    method: Method = "central",
    max_entries: int | Literal["all"] | None = None,
    seed: int = 0,
    name: str = "",
) -> GradientReport:
    """Compare ``backward(dout, cache)`` with finite differences of ``sum(forward(...)[0] * dout)``.

    Args:
        forward: ``forward(*inputs) -> (out, cache)``, or ``forward(**inputs)`` when
            ``inputs`` is a dict; ``(out1, ..., outk, cache)`` for k outputs.
        backward: ``backward(dout, cache) -> grads`` (``backward(dout1, ..., doutk, cache)``):
            a tuple with one gradient per differentiable input in input order, a single
            array, or a dict keyed by input name (``"x"`` or ``"dx"``).
        inputs: the arguments of forward: a tuple (or list) for positional arguments, a
            dict for keyword arguments, or one array.
        dout: the upstream gradient, of out's shape (a tuple of them for several
            outputs); default: standard normal, drawn from ``seed``.
        wrt: the inputs to differentiate, by name (the parameter names of forward's
            signature) or position; default: every floating-point array.
        mode: ``"full"`` (every entry, 2 forward calls each) or ``"fast"`` (random
            directional derivatives: a few calls per input, whatever its size).
        eps, rtol, atol: override the step and tolerances of the inputs' dtype.
        tolerance: a :class:`gradcheck.Tolerance` to start from instead of the dtype's.
        method, max_entries: as for :func:`gradcheck.check_gradients`.
        seed: seeds dout, the sample of entries and the fast mode's directions.
        name: what is checked, for messages (default: backward's name).

    Returns:
        A :class:`gradcheck.GradientReport` with one row per differentiable input.

    Raises:
        InvalidArgument: the call is wrong (no floating-point input, an unknown ``wrt``,
            ``dout`` not an array, a bad mode); what the layer does wrong is in the report.

    Example:
        >>> import numpy as np, gradcheck
        >>> def relu_forward(x):
        ...     return np.maximum(x, 0), x
        >>> def relu_backward(dout, x):
        ...     return dout * (x > 0)
        >>> x = np.array([[-1.0, 2.0, 0.5], [3.0, -0.2, 1.0]])
        >>> gradcheck.check_layer(relu_forward, relu_backward, (x,)).ok
        True
        >>> wrong = gradcheck.check_layer(relu_forward, lambda dout, x: dout * (x < 0), (x,))
        >>> wrong.ok, wrong["x"].status, wrong["x"].mismatched
        (False, 'mismatch', 6)
    """
    arguments = _Arguments.of(forward, inputs, wrt, default_first=False)
    layer = _Layer(forward, backward, arguments, _douts_given(dout), seed)
    return _run(layer, arguments, _options(layer, name, mode, eps, rtol, atol, tolerance, method,
                                           max_entries, seed))


def check_loss(
    loss_fn: Callable[..., object],
    x: object,
    y: object,
    *args: object,
    wrt: Wrt = None,
    mode: Mode = "full",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    tolerance: Tolerance | None = None,
    method: Method = "central",
    max_entries: int | Literal["all"] | None = None,
    seed: int = 0,
    name: str = "",
) -> GradientReport:
    """Compare the gradient ``loss_fn(x, y, *args)`` returns with finite differences of its loss.

    Args:
        loss_fn: ``loss_fn(x, y, *args) -> (loss, grad)``: a scalar loss and the gradient
            with respect to the differentiated inputs (a tuple of them, or a dict, for
            several). Keyword options: bind them with :func:`functools.partial`.
        x, y, args: the arguments of loss_fn (integer labels are passed through).
        wrt: the inputs to differentiate, by name or position; default: the first (x).
            ``check_loss(svm_loss_naive, W, X, y, reg)`` checks dW.
        mode, eps, rtol, atol, tolerance, method, max_entries, seed, name: as for
            :func:`check_layer`.

    Returns:
        A :class:`gradcheck.GradientReport` with one row per differentiated input.

    Raises:
        InvalidArgument: the call is wrong (the input to differentiate is not a
            floating-point array, an unknown ``wrt``).

    Example:
        >>> import numpy as np, gradcheck
        >>> def softmax_loss(x, y):
        ...     shifted = x - x.max(axis=1, keepdims=True)
        ...     p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        ...     n = x.shape[0]
        ...     loss = -np.log(p[np.arange(n), y]).sum() / n
        ...     dx = p.copy()
        ...     dx[np.arange(n), y] -= 1
        ...     return loss, dx / n
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
        >>> gradcheck.check_loss(softmax_loss, x, y).ok
        True
    """
    arguments = _Arguments.of(loss_fn, (x, y, *args), wrt, default_first=True)
    loss = _Loss(loss_fn, arguments)
    return _run(loss, arguments, _options(loss, name, mode, eps, rtol, atol, tolerance, method,
                                          max_entries, seed))


def assert_layer_close(forward: Callable[..., object], backward: Callable[..., object],
                       inputs: Inputs, dout: np.ndarray | Sequence[np.ndarray] | None = None,
                       **options: Any) -> GradientReport:
    """:func:`check_layer`, raising :class:`gradcheck.GradientMismatchError` (an AssertionError) unless ok.

    Example:
        >>> import numpy as np, gradcheck
        >>> square = lambda x: (x**2, x)
        >>> _ = gradcheck.assert_layer_close(square, lambda dout, x: 2 * x * dout, (np.ones(3),))
    """
    return raise_unless_ok(check_layer(forward, backward, inputs, dout, **options))


def assert_loss_close(loss_fn: Callable[..., object], x: object, y: object, *args: object,
                      **options: Any) -> GradientReport:
    """:func:`check_loss`, raising :class:`gradcheck.GradientMismatchError` (an AssertionError) unless ok.

    Example:
        >>> import numpy as np, gradcheck
        >>> l2 = lambda x, y: (0.5 * np.sum((x - y) ** 2), x - y)
        >>> _ = gradcheck.assert_loss_close(l2, np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    """
    return raise_unless_ok(check_loss(loss_fn, x, y, *args, **options))


# -- the inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Arguments:
    """The inputs of the function under test: names, values, which are differentiated."""

    names: tuple[str, ...]
    values: tuple[object, ...]
    """The caller's values, never passed to the code under test."""
    keyword: bool
    differentiable: tuple[str, ...]
    floats: tuple[str, ...]
    """Every floating-point array input: what a backward that returns them all returns."""

    @classmethod
    def of(cls, function: Callable[..., object], inputs: Inputs, wrt: Wrt,
           *, default_first: bool) -> _Arguments:
        if isinstance(inputs, Mapping):
            names, values, keyword = tuple(map(str, inputs)), tuple(inputs.values()), True
        else:
            values = (inputs,) if isinstance(inputs, np.ndarray) else tuple(_sequence(inputs))
            names, keyword = _positional_names(function, len(values)), False
        floats = tuple(n for n, v in zip(names, values) if _is_float_array(v))
        chosen = _chosen(names, values, wrt, floats[:1] if default_first else floats)
        return cls(names, values, keyword, chosen, floats)

    def private_copies(self) -> dict[str, object]:
        """What the code under test gets: one copy of each array that is not differentiated."""
        return {n: np.array(v, copy=True) for n, v in zip(self.names, self.values)
                if isinstance(v, np.ndarray) and n not in self.differentiable}

    def caller(self, function: Callable[..., object], private: Mapping[str, object]
               ) -> Callable[[Mapping[str, np.ndarray]], object]:
        """``call(params)``: function on params (differentiated), private copies and the rest.

        The plan is made once: a call costs a list of arguments, the hot path of a check.
        """
        plan = tuple((n, 0 if n in self.differentiable else 1 if n in private else
                      3 if _flat_options(v) else 2, v) for n, v in zip(self.names, self.values))
        names, keyword = self.names, self.keyword

        def call(params: Mapping[str, np.ndarray]) -> object:
            args = [params[n] if kind == 0 else private[n] if kind == 1 else
                    v.copy() if kind == 3 else _fresh(v) for n, kind, v in plan]  # type: ignore[attr-defined]
            return function(**dict(zip(names, args))) if keyword else function(*args)

        return call


def _sequence(inputs: object) -> Sequence[object]:
    if isinstance(inputs, (tuple, list)):
        return inputs
    raise InvalidArgument(f"inputs must be a tuple of forward's arguments (x, w, b), a dict of "
                          f"them, or one array; not {describe_value(inputs)}")


def _positional_names(function: Callable[..., object], count: int) -> tuple[str, ...]:
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # builtins and some C functions have no signature
        parameters = []
    named = [p.name for p in parameters
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:count]
    return (*named, *(f"input{i}" for i in range(len(named), count)))


def _is_float_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _chosen(names: tuple[str, ...], values: tuple[object, ...], wrt: Wrt,
            default: tuple[str, ...]) -> tuple[str, ...]:
    if wrt is None:
        if not default:
            raise InvalidArgument(
                f"none of the inputs ({', '.join(names) or 'none'}) is a floating-point numpy "
                "array, so there is nothing to differentiate; pass x as np.asarray(x, dtype=float)")
        return default
    wanted = [wrt] if isinstance(wrt, (str, int)) else list(wrt)
    chosen = []
    for item in wanted:
        name = _resolve(item, names)
        value = values[names.index(name)]
        if not _is_float_array(value):
            raise InvalidArgument(
                f"wrt={item!r}: input {name!r} is {describe_value(value)}"
                f"{' of dtype ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}; only "
                f"floating-point numpy arrays can be differentiated (np.asarray({name}, dtype=float))")
        if name not in chosen:
            chosen.append(name)
    return tuple(n for n in names if n in chosen)  # input order, as backward returns them


def _resolve(item: str | int, names: tuple[str, ...]) -> str:
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        if -len(names) <= item < len(names):
            return names[item]
    elif isinstance(item, str):
        if item in names:
            return item
        if item.startswith("d") and item[1:] in names:  # wrt="dw" for w
            return item[1:]
    raise InvalidArgument(f"wrt={item!r} is not one of the inputs: name one of "
                          f"{', '.join(map(repr, names))} or give its position (0 to {len(names) - 1})")


def _flat_options(value: object) -> bool:
    """A dict of plain numbers and strings (conv_param): a shallow copy is a full copy."""
    return isinstance(value, dict) and all(
        isinstance(v, (int, float, str, bool, type(None))) for v in value.values())


def _fresh(value: object) -> object:
    """A copy for one call of containers (dicts of options such as bn_param): state stays out."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


# -- the code under test ------------------------------------------------------------------


class _Subject:
    """What run_check needs: evaluate(params) -> {"loss", ...} and backprop(cache) -> dict."""

    who: str
    backward_name: str
    findings: list[str]
    notes: tuple[str, ...] = ()
    arguments: _Arguments
    private: dict[str, object]
    call: Callable[[Mapping[str, np.ndarray]], object]

    def evaluate(self, params: Mapping[str, np.ndarray]) -> dict[str, object]:
        raise NotImplementedError

    def backprop(self, cache: object) -> object:
        raise NotImplementedError


class _Layer(_Subject):
    def __init__(self, forward: Callable[..., object], backward: Callable[..., object],
                 arguments: _Arguments, dout: tuple[np.ndarray, ...] | None, seed: int) -> None:
        self.forward, self.backward, self.arguments = forward, backward, arguments
        self.who, self.backward_name = _name(forward, "forward"), _name(backward, "backward")
        self.dout, self.seed, self.findings = dout, seed, []
        self.private = arguments.private_copies()
        self.call = arguments.caller(forward, self.private)
        self.evaluated = False

    def evaluate(self, params: Mapping[str, np.ndarray]) -> dict[str, object]:
        result = self.call(params)
        if not isinstance(result, tuple) or len(result) < 2:
            raise StudentError(
                f"{self.who} returned {describe_value(result)}, not (out, cache): a layer returns "
                "its output and the cache its backward needs (several outputs: (out1, out2, cache))")
        if self.evaluated and len(result) == 2:  # the hot path: one output, dout known
            out, dout = result[0], self.dout[0]  # type: ignore[index]
            if type(out) is np.ndarray and out.shape == dout.shape:
                return {"loss": _dot(out, dout), "cache": result[1]}
        # NaN is looked for in the first call's outputs; later, a NaN loss says it.
        first = not self.evaluated
        outputs = tuple(_output(self.who, i, out, finite=first) for i, out in enumerate(result[:-1]))
        douts = self._douts(outputs)
        self.evaluated = True
        loss = sum(map(_dot, outputs, douts))
        if not first:
            return {"loss": loss, "cache": result[-1]}
        # Summed in float64, but rounded as the outputs were: the comparison's noise floor.
        return {"loss": loss, "cache": result[-1], "loss_dtype": np.result_type(*outputs)}

    def backprop(self, cache: object) -> object:
        assert self.dout is not None and isinstance(cache, dict)  # set by the first evaluate
        given = tuple(d.copy() for d in self.dout)
        grads = self.backward(*given, cache["cache"])
        if not all(np.array_equal(a, b) for a, b in zip(given, self.dout)):
            self.findings.append(
                f"{self.backward_name} modified dout in place; the upstream gradient belongs to the "
                "layer above (write dx = dout * ..., not dout *= ...)")
        return _gradients(grads, self.arguments, self.backward_name)

    def _douts(self, outputs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        if self.dout is None:
            rng = np.random.default_rng([self.seed, _DOUT_TAG])
            self.dout = tuple(rng.standard_normal(out.shape).astype(np.result_type(out.dtype, np.float32))
                              for out in outputs)  # float32 for a float32 layer, else float64
            shapes = ", ".join(str(out.shape) for out in outputs)
            self.notes = (f"dout: standard normal of shape {shapes}, drawn from seed {self.seed}",)
        if len(self.dout) != len(outputs):
            raise StudentError(
                f"{self.who} returned {len(outputs)} output(s) before its cache, but "
                f"{len(self.dout)} dout array(s) were given; give one dout per output")
        for i, (out, d) in enumerate(zip(outputs, self.dout)):
            if out.shape != d.shape:
                which = "out" if len(outputs) == 1 else f"output {i}"
                raise StudentError(
                    f"{self.who} returned {which} of shape {out.shape}, but dout has shape {d.shape}: "
                    "a layer's output has the shape of its upstream gradient")
        return self.dout


class _Loss(_Subject):
    def __init__(self, loss_fn: Callable[..., object], arguments: _Arguments) -> None:
        self.loss_fn, self.arguments, self.findings = loss_fn, arguments, []
        self.who = self.backward_name = _name(loss_fn, "loss_fn")
        self.private = arguments.private_copies()
        self.call = arguments.caller(loss_fn, self.private)

    def evaluate(self, params: Mapping[str, np.ndarray]) -> dict[str, object]:
        result = self.call(params)
        if not isinstance(result, tuple) or len(result) < 2:
            raise StudentError(
                f"{self.who} returned {describe_value(result)}, not (loss, grad): a loss function "
                "returns the loss and its gradient, as softmax_loss returns (loss, dx)")
        return {"loss": scalar_loss(result[0], self.who), "grads": result[1:]}

    def backprop(self, cache: object) -> object:
        assert isinstance(cache, dict)
        grads = cache["grads"]
        return _gradients(grads[0] if len(grads) == 1 else grads, self.arguments, self.who)


def _name(function: Callable[..., object], default: str) -> str:
    name = getattr(function, "__name__", "")
    return name if name and name != "<lambda>" else default


def _output(who: str, index: int, out: object, *, finite: bool) -> np.ndarray:
    array = np.asarray(out) if isinstance(out, (np.ndarray, np.generic, float, int)) else None
    if array is None or array.dtype.kind not in "fiu":
        raise StudentError(f"{who} returned {describe_value(out)} as output {index}, not a float "
                           "array; the last element of what it returns must be the cache")
    bad = ~np.isfinite(array) if finite else None
    if bad is not None and bad.any():
        raise StudentError(f"{who} returned {int(bad.sum())} non-finite value(s) in output {index}, "
                           f"first at index {tuple(int(i) for i in np.argwhere(bad)[0])}")
    return array


def _dot(out: np.ndarray, dout: np.ndarray) -> float:
    if out.dtype == np.float64 and dout.dtype == np.float64:
        return float(np.vdot(out, dout))  # one BLAS call, no temporary
    return float(np.sum(out * dout, dtype=np.float64))


def _gradients(grads: object, arguments: _Arguments, who: str) -> dict[str, object]:
    """What backward returned, keyed by input name, or a StudentError saying what is off."""
    wanted = arguments.differentiable
    expected = ", ".join(f"d{n}" for n in wanted)
    if isinstance(grads, Mapping):
        return _keyed(grads, arguments)
    if isinstance(grads, (tuple, list)):
        for names in (wanted, arguments.floats, arguments.names):
            if len(grads) == len(names):
                by_name = dict(zip(names, grads))
                return {n: by_name[n] for n in wanted if n in by_name}
        raise StudentError(
            f"{who} returned {len(grads)} gradient(s); expected {len(wanted)} ({expected}), one per "
            f"differentiable input in input order")
    if len(wanted) == 1 and grads is not None:
        return {wanted[0]: grads}
    raise StudentError(f"{who} returned {describe_value(grads)}; expected the gradients ({expected})"
                       f"{', a tuple in input order' if len(wanted) > 1 else ''}")


def _keyed(grads: Mapping[object, object], arguments: _Arguments) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in grads.items():
        name = str(key)
        if name not in arguments.names and name.startswith("d") and name[1:] in arguments.names:
            name = name[1:]  # {"dx": ...} for input x
        if name in arguments.differentiable or name not in arguments.names:
            out[name] = value  # a key that is no input at all is reported as unexpected
    return out


# -- running ------------------------------------------------------------------------------


def _options(subject: _Subject, name: str, mode: Mode, eps: float | None, rtol: float | None,
             atol: float | None, tolerance: Tolerance | None, method: Method,
             max_entries: int | Literal["all"] | None, seed: int) -> CheckOptions:
    return CheckOptions(mode=mode, eps=eps, method=method, rtol=rtol, atol=atol, tolerance=tolerance,
                        max_entries=max_entries, seed=seed, name=name or subject.backward_name,
                        backward=subject.backward_name, noun="inputs", mutation_fails=True,
                        context=_diagnosis_context(subject))


def _diagnosis_context(subject: _Subject) -> dict[str, object]:
    """What the grader tells the diagnosis of a layer: its inputs by name, and the batch size
    (x's first axis, the CS231n convention), so that 1/N, the batch-norm terms and ReLU's gate
    are named through the API as in the grader's feedback."""
    arguments = subject.arguments
    inputs = dict(zip(arguments.names, arguments.values))
    batch = inputs.get("x", next((v for v in inputs.values() if _is_float_array(v)), None))
    shape = np.shape(batch) if batch is not None else ()
    return {"inputs": inputs, "batch_size": int(shape[0]) if shape else None,
            "functions": (subject.who, subject.backward_name)}


def _run(subject: _Subject, arguments: _Arguments, options: CheckOptions) -> GradientReport:
    params = {n: np.asarray(v) for n, v in zip(arguments.names, arguments.values)
              if n in arguments.differentiable}
    calls = LossCalls(subject.evaluate, who=subject.who)
    report = run_check(calls, subject.backprop, params, options)
    changed = [n for n, copy in subject.private.items()
               if not np.array_equal(copy, arguments.values[arguments.names.index(n)], equal_nan=True)]
    findings = list(subject.findings)
    if changed:
        findings.append(f"{subject.who} or {subject.backward_name} modified input {changed[0]!r} in "
                        "place; a layer must not change its arguments")
    return replace(report, problems=(*report.problems, *findings),
                   warnings=(*subject.notes, *report.warnings))


def _douts_given(dout: object) -> tuple[np.ndarray, ...] | None:
    if dout is None:
        return None
    parts = dout if isinstance(dout, (tuple, list)) else (dout,)
    arrays = []
    for part in parts:
        if not isinstance(part, (np.ndarray, float, int)) or np.asarray(part).dtype.kind not in "fiu":
            raise InvalidArgument(f"dout must be a float array of out's shape (a tuple of them for "
                                  f"several outputs), not {describe_value(part)}")
        arrays.append(np.array(part, dtype=np.result_type(np.asarray(part).dtype, np.float32)))
    return tuple(arrays)
