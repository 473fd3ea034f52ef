"""Name the most likely cause of a wrong gradient, with the numbers that support it.

Every hypothesis is tested, not guessed: "sign flipped" means the student's gradient a
equals -r to the tolerance, "missing 1/m" means a equals m * r, "sigma'(a) instead of
sigma'(z)" means a equals the reference recomputed with that very mistake. When nothing
fits exactly, the diagnosis says so ("no_simple_pattern") and still gives the evidence:
the best-fit scale alpha = <a, r> / <r, r>, the cosine, and where the mismatch sits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..comparison import relative_error
from ..networks import Architecture, Example, Network
from ..tolerances import Tolerance, tolerance_for
from . import backprop, sentences
from .arrays import aligned, as_array, close
from .model import Diagnosis
from .sentences import Factor, Wording, keyed_by_gradients

__all__ = ["diagnose_gradients", "fit"]


@dataclass(frozen=True)
class _Context:
    analytic: Mapping[str, object]
    reference: Mapping[str, np.ndarray]
    tolerance: Tolerance
    wording: Wording
    factors: tuple[Factor, ...]
    arch: Architecture | None = None
    example: Example | None = None
    numerical_own: Mapping[str, np.ndarray] | None = None
    batch_size: int | None = None
    inputs: Mapping[str, object] | None = None

    def close(self, a: np.ndarray, b: np.ndarray) -> bool:
        return close(a, b, self.tolerance)


def diagnose_gradients(
    analytic: Mapping[str, object] | BaseException | None,
    reference: Mapping[str, np.ndarray],
    *,
    network: Network | Architecture | None = None,
    example: Example | None = None,
    numerical_own: Mapping[str, np.ndarray] | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    tolerance: Tolerance | None = None,
    loss: str | None = None,
    functions: tuple[str, str] = ("fprop", "bprop"),
    dims: Mapping[str, int] | None = None,
    inputs: Mapping[str, object] | None = None,
) -> dict[str, Diagnosis]:
    """Diagnose every gradient that is wrong; correct ones get no entry.

    Works on a document network's parameters (``W1``, ``b1``...) and on any layer's
    gradients, keyed by the inputs' names (``x``, ``w``, ``b``) or by the gradients' own
    (``dx``, ``dw``, ``db``). Causes that need the network (a missing activation
    derivative, an unsummed bias) are only tried when ``network`` is given.

    Args:
        analytic: what the student's backward function returned, or the exception it raised.
        reference: the reference gradients (from ``solutions/``), one array per name.
        network: the network (or its architecture), to test the activation hypotheses and
            to check bias gradients against the per-example errors; needs ``example``.
            Its architecture also declares the loss and the notation of the sentences.
        example: the example bprop was run on (x, y, params, options, lr).
        numerical_own: finite differences of the student's *own* forward function, to
            recognise a backward that is right for a wrong forward.
        batch_size: the batch size, to name a factor of it (default: from ``example``).
        learning_rate: to name a gradient scaled by it (default: ``example.lr``).
        tolerance: when two gradients count as equal (default: by the student's dtype).
        loss: the declared loss, e.g. ``"squared"`` (default: the network's). Only a
            squared loss explains a factor 2 or 1/2 by its 0.5; otherwise the factor is
            said neutrally.
        functions: the names of the forward and backward functions, for the sentences,
            e.g. ``("affine_forward", "affine_backward")``.
        dims: the assignment's named sizes, e.g. ``{"N": 5, "D": 3}``: a gradient scaled
            by one of them is named by its symbol (the batch size's symbol too).
        inputs: the forward function's inputs by name (``{"x": x, "w": w, "b": b}``), to
            tell gradient names (``dx``) from the variables' names (``x``).

    Returns:
        ``{name: Diagnosis}`` for each wrong gradient, in the order of ``reference``.

    Example:
        >>> import numpy as np
        >>> r = {"W": np.array([[1.0, 2.0], [3.0, 4.0]])}
        >>> d = diagnose_gradients({"W": -r["W"]}, r)
        >>> d["W"].cause, d["W"].evidence["alpha"]
        ('sign_flipped', -1.0)
        >>> r = {"dx": np.arange(1.0, 7.0).reshape(2, 3)}
        >>> diagnose_gradients({"dx": r["dx"] / 2}, r)["dx"].sentence[:48]
        'dx is scaled by 1/2: it is half the expected gra'
    """
    wording = _wording(network, example, reference, loss, functions, inputs)
    if analytic is None or isinstance(analytic, BaseException):
        return {name: sentences.not_implemented(name, analytic, wording) for name in reference}
    if not isinstance(analytic, Mapping):
        return {name: sentences.not_a_dict(name, analytic, wording) for name in reference}
    context = _context(
        analytic,
        reference,
        wording,
        network=network,
        example=example,
        numerical_own=numerical_own,
        batch_size=batch_size,
        learning_rate=learning_rate,
        tolerance=tolerance,
        dims=dims,
        inputs=inputs,
    )
    exchanged = _exchanges(context)
    found = {
        name: exchanged[name] if name in exchanged else _diagnose(name, context)
        for name in reference
    }
    return {name: diagnosis for name, diagnosis in found.items() if diagnosis is not None}


def _wording(
    network: Network | Architecture | None,
    example: Example | None,
    reference: Mapping[str, object],
    loss: str | None,
    functions: tuple[str, str],
    inputs: Mapping[str, object] | None,
) -> Wording:
    base = network if isinstance(network, Architecture) or network is None else network.default
    if loss is None and base is not None:
        loss = str((example.options if example else {}).get("loss", base.loss))
    forward, backward = functions
    return Wording(
        forward,
        backward,
        loss,
        base.layout if base else None,
        keyed_by_gradients(reference, inputs),
    )


def _context(
    analytic: Mapping[str, object],
    reference: Mapping[str, np.ndarray],
    wording: Wording,
    *,
    network: Network | Architecture | None,
    example: Example | None,
    numerical_own: Mapping[str, np.ndarray] | None,
    batch_size: int | None,
    learning_rate: float | None,
    tolerance: Tolerance | None,
    dims: Mapping[str, int] | None,
    inputs: Mapping[str, object] | None = None,
) -> _Context:
    arch = None
    if network is not None and example is not None:
        arch = backprop.architecture_for(network, example.params, example.options)
    if batch_size is None and arch is not None and example is not None:
        batch_size = int(np.shape(example.x)[1 if arch.layout == "columns" else 0])
    if learning_rate is None and example is not None:
        learning_rate = example.lr
    if tolerance is None:
        tolerance = tolerance_for(_dtype(analytic))
    reference = {key: np.asarray(value, dtype=np.float64) for key, value in reference.items()}
    factors = _factors(batch_size, dims or {}, learning_rate, wording)
    return _Context(
        analytic,
        reference,
        tolerance,
        wording,
        factors,
        arch,
        example,
        numerical_own,
        batch_size,
        inputs,
    )


def _dtype(analytic: Mapping[str, object]) -> np.dtype:
    kinds = [
        value.dtype
        for value in analytic.values()
        if isinstance(value, np.ndarray) and value.dtype.kind == "f"
    ]
    return np.result_type(*kinds) if kinds else np.dtype(np.float64)


def _diagnose(name: str, ctx: _Context) -> Diagnosis | None:
    r, wording = ctx.reference[name], ctx.wording
    if name not in ctx.analytic:
        return _misfiled(name, ctx) or sentences.missing(name, list(ctx.reference), wording)
    value = ctx.analytic[name]
    if value is None or value is Ellipsis:
        return sentences.not_implemented(name, None, wording)
    a = as_array(value)
    if a is None:
        return sentences.not_a_dict(name, value, wording)
    a = aligned(a, r)
    if a.shape != r.shape:
        return _shape(name, a, r, ctx)
    if not np.all(np.isfinite(a)):
        return sentences.not_finite(name, int(np.sum(~np.isfinite(a))), wording)
    if ctx.close(a, r):
        return None
    return _values(name, a, r, ctx)


# -- gradients under each other's names ------------------------------------------------------


def _exchanges(ctx: _Context) -> dict[str, Diagnosis]:
    """Gradients returned under another's name: pairs and cycles of any shapes, or one-way.

    Tried before any shape or value check, so that two swapped biases of different shapes
    get this diagnosis instead of two shape errors.
    """
    moved = {name: other for name in ctx.reference if (other := _holds(name, ctx)) is not None}
    found = {}
    for name, other in moved.items():
        a = as_array(ctx.analytic[name])
        r = ctx.reference[other]
        evidence = fit(a, r, ctx.tolerance) if a is not None and a.shape == r.shape else {}
        cycle = _cycle(name, moved)
        found[name] = (
            sentences.swapped(cycle, evidence, ctx.wording)
            if cycle
            else sentences.misfiled(name, other, evidence, ctx.wording)
        )
    return found


def _holds(name: str, ctx: _Context) -> str | None:
    """The other name whose expected gradient the student returned under ``name``, if any."""
    value, r = ctx.analytic.get(name), ctx.reference[name]
    a = None if value is None else as_array(value)
    if a is None or ctx.close(aligned(a, r), r):
        return None
    for other, expected in ctx.reference.items():
        if other != name and np.any(expected) and ctx.close(aligned(a, expected), expected):
            return other
    return None


def _cycle(start: str, moved: Mapping[str, str]) -> list[str]:
    """[start, moved[start], ...] when following ``moved`` leads back to start, else []."""
    path = [start]
    while (following := moved.get(path[-1])) is not None and following not in path:
        path.append(following)
    return path if moved.get(path[-1]) == start and len(path) > 1 else []


def _misfiled(name: str, ctx: _Context) -> Diagnosis | None:
    """A missing gradient found under a key the reference does not have: by value, or by name."""
    extra = [key for key in ctx.analytic if key not in ctx.reference]
    r = ctx.reference[name]
    for key in extra:
        a = as_array(ctx.analytic[key])
        if a is not None and ctx.close(aligned(a, r), r):
            return sentences.wrong_key(name, str(key), ctx.wording)
    for key in extra:
        if _alias(str(key), name):
            return sentences.wrong_key(name, str(key), ctx.wording)
    return None


def _alias(key: str, name: str) -> bool:
    """'dW1', 'w1', 'grad_W1' for W1; 'x' for dx: the same name, spelt another way."""
    k, n = key.lower(), name.lower()
    return k in (n, f"d{n}", f"d_{n}", f"grad_{n}", f"{n}_grad") or f"d{k}" == n


# -- wrong shapes -------------------------------------------------------------------------


def _shape(name: str, a: np.ndarray, r: np.ndarray, ctx: _Context) -> Diagnosis:
    wording = ctx.wording
    if ctx.arch is not None and name.startswith("b"):
        found = _bias_shape(name, a, ctx)
        if found is not None:
            return found
    if a.ndim == 2 and a.shape == r.shape[::-1]:
        return sentences.transposed(
            name, wording.layout, _layer(name), ctx.close(a.T, r), shape=a.shape, wording=wording
        )
    if ctx.arch is None and a.ndim == 1 and ctx.batch_size and ctx.batch_size > 1 and (
        a.shape[0] == ctx.batch_size
    ):
        # One entry per example: the sum went over the features, not over the examples.
        return sentences.summed_over_features(name, a.shape, r.shape, wording)
    summed = _summed_axis(a, r, ctx)
    if summed is not None:
        return sentences.not_summed(
            name,
            a.shape,
            summed,
            summed_over_batch=(a.shape[summed] == ctx.batch_size),
            wording=wording,
        )
    if a.size == r.size and ctx.close(a.reshape(r.shape), r):
        return sentences.flattened(name, a.shape, r.shape, wording)
    pad = _padding(a, r, ctx)
    if pad:
        padded = sum(1 for x, y in zip(a.shape, r.shape) if x != y)
        return sentences.padding_not_removed(name, a.shape, pad, padded, wording)
    return sentences.wrong_shape(name, a.shape, r.shape, wording)


def _padding(a: np.ndarray, r: np.ndarray, ctx: _Context) -> int:
    """p when ``a`` is ``r`` with p more entries on both sides of its trailing axes, whose
    middle is ``r``: a convolution's dx returned with the padding still on; else 0."""
    grown = [axis for axis in range(a.ndim) if a.ndim == r.ndim and a.shape[axis] != r.shape[axis]]
    if not grown or grown != list(range(a.ndim - len(grown), a.ndim)):
        return 0
    extra = {a.shape[axis] - r.shape[axis] for axis in grown}
    if len(extra) != 1 or (p2 := extra.pop()) <= 0 or p2 % 2:
        return 0
    p = p2 // 2
    middle = a[(Ellipsis, *(slice(p, -p) for _ in grown))]
    return p if ctx.close(middle, r) else 0


def _summed_axis(a: np.ndarray, r: np.ndarray, ctx: _Context) -> int | None:
    """The axis of ``a`` whose sum is ``r`` (a gradient left per example), if there is one.

    A pure fact about the numbers, so it needs no network: ``db = dout`` of an affine layer
    has shape (N, M) and sums over axis 0 to the expected (M,).
    """
    for axis in range(a.ndim):
        if a.shape[axis] < 2:
            continue
        kept = a.ndim == r.ndim  # np.sum(..., keepdims=True) would give r's shape
        total = a.sum(axis=axis, keepdims=kept)
        if total.shape == r.shape and ctx.close(total, r):
            return axis
    return None


def _bias_shape(name: str, a: np.ndarray, ctx: _Context) -> Diagnosis | None:
    """A bias gradient left per example, or summed over the wrong axis: needs the network."""
    per_example = _per_example_bias(name, ctx)
    if per_example is None or ctx.arch is None:
        return None
    columns = ctx.arch.layout == "columns"
    if ctx.close(a, per_example):
        return sentences.bias_not_summed(name, a.shape, columns)
    summed_wrong = per_example.sum(axis=0 if columns else 1, keepdims=True)
    if a.size == summed_wrong.size and ctx.close(a.reshape(-1), summed_wrong.reshape(-1)):
        return sentences.bias_wrong_axis(name, a.shape, columns)
    return None


def _per_example_bias(name: str, ctx: _Context) -> np.ndarray | None:
    if ctx.arch is None or ctx.example is None or not ctx.arch.bias:
        return None
    ex = ctx.example
    found, _ = backprop.deltas(ctx.arch, ex.x, ex.y, ex.params)
    layer = _layer(name)
    return found[layer - 1] if layer and layer <= len(found) else None


# -- same shape, wrong values --------------------------------------------------------------


def _values(name: str, a: np.ndarray, r: np.ndarray, ctx: _Context) -> Diagnosis:
    evidence = {**fit(a, r, ctx.tolerance), **_pattern(name, a, r, ctx)}
    checks: tuple[
        Callable[[str, np.ndarray, np.ndarray, _Context, dict], Diagnosis | None], ...
    ] = (
        _zeros,
        _square_transpose,
        _own_fprop,
        _sign,
        _activation,
        _named_factor,
        _unnamed_factor,
        _batch_mean_term,
        _batch_variance_term,
        _not_gated,
        _label_entries,
    )
    for check in checks:
        found = check(name, a, r, ctx, evidence)
        if found is not None:
            return found
    return sentences.no_simple_pattern(name, evidence, ctx.wording)


def fit(a: np.ndarray, r: np.ndarray, tolerance: Tolerance | None = None) -> dict[str, float]:
    """Best-fit scale alpha = <a, r> / <r, r>, the cosine, and how consistently alpha holds.

    ``consistency`` is the fraction of entries (where r is not negligible) whose own ratio
    a / r is within rtol of alpha: 1.0 for a clean factor, low for a factor that only holds
    on average; absent when no entry is above the noise floor.

    Example:
        >>> import numpy as np
        >>> fit(np.array([2.0, 4.0]), np.array([1.0, 2.0]))
        {'alpha': 2.0, 'cosine': 1.0, 'consistency': 1.0}
    """
    tolerance = tolerance or tolerance_for(np.float64)
    a, r = a.reshape(-1).astype(np.float64), r.reshape(-1).astype(np.float64)
    rr, aa = float(r @ r), float(a @ a)
    if rr == 0.0 or aa == 0.0:
        return {"alpha": 0.0, "cosine": 0.0, "consistency": 0.0}
    alpha = float(a @ r) / rr
    cosine = float(a @ r) / float(np.sqrt(aa * rr))
    visible = np.abs(r) > tolerance.atol / tolerance.rtol
    ratios = a[visible] / r[visible]
    held = np.abs(ratios - alpha) <= 10 * tolerance.rtol * abs(alpha) + tolerance.atol
    found = {"alpha": round(alpha, 12), "cosine": round(cosine, 12)}
    if ratios.size:  # no entry above the noise floor (float32): nothing to say how it holds
        found["consistency"] = float(held.mean())
    return found


def _pattern(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context
) -> dict[str, float | int | str]:
    wrong = relative_error(a, r, ctx.tolerance) > ctx.tolerance.rtol
    evidence: dict[str, float | int | str] = {
        "max_relative_error": float(np.max(relative_error(a, r, ctx.tolerance))),
        "mismatched": int(wrong.sum()),
        "entries": int(wrong.size),
    }
    where = _where(wrong)
    if where:
        evidence["pattern"] = where
    near = _near_kink(name, wrong, ctx)
    if near:
        evidence["near_kink"] = near
    return evidence


def _where(wrong: np.ndarray) -> str:
    if wrong.sum() == 1 and wrong.size > 1:
        return f"entry {[int(i) for i in np.argwhere(wrong)[0]]}"
    if wrong.ndim != 2 or wrong.all() or not wrong.any():
        return "all entries" if wrong.all() else ""
    rows = [i for i in range(wrong.shape[0]) if wrong[i].any()]
    columns = [j for j in range(wrong.shape[1]) if wrong[:, j].any()]
    if all(wrong[i].all() for i in rows) and len(rows) < wrong.shape[0]:
        return (
            "row " + ", ".join(map(str, rows))
            if len(rows) == 1
            else "rows " + ", ".join(map(str, rows))
        )
    if all(wrong[:, j].all() for j in columns) and len(columns) < wrong.shape[1]:
        label = "column " if len(columns) == 1 else "columns "
        return label + ", ".join(map(str, columns))
    return f"{int(wrong.sum())} of {wrong.size} entries"


def _near_kink(name: str, wrong: np.ndarray, ctx: _Context) -> str:
    layer, arch, ex = _layer(name), ctx.arch, ctx.example
    if arch is None or ex is None or not layer or layer > len(arch.activations) or wrong.ndim != 2:
        return ""
    if arch.activations[layer - 1] != "relu":
        return ""
    z = arch.preactivations(np.asarray(ex.x, dtype=np.float64), ex.params)[layer - 1]
    columns = arch.layout == "columns"
    closest = np.min(np.abs(z), axis=1 if columns else 0)
    near = set(np.nonzero(closest < _KINK)[0].tolist())
    units = set(np.nonzero(wrong.any(axis=1 if columns else 0))[0].tolist())
    if not units or not units <= near:
        return ""
    return f"layer {layer} unit{'s' if len(units) > 1 else ''} {', '.join(map(str, sorted(units)))}"


# A ReLU input this close to 0 is where finite differences and analytic derivatives part.
_KINK = 1e-2


def _zeros(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    return sentences.zeros(name, evidence, ctx.wording) if not np.any(a) else None


def _square_transpose(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    if a.ndim == 2 and a.shape[0] == a.shape[1] and ctx.close(a, r.T):
        return sentences.transposed(
            name,
            ctx.wording.layout,
            _layer(name),
            True,
            shape=a.shape,
            evidence=evidence,
            wording=ctx.wording,
        )
    return None


def _own_fprop(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    own = (ctx.numerical_own or {}).get(name)
    if own is None or np.shape(own) != a.shape:
        return None
    own = np.asarray(own, dtype=np.float64)
    # Finite differences carry their own error: compare at ten times the tolerance.
    loose = Tolerance(
        rtol=10 * ctx.tolerance.rtol, atol=10 * ctx.tolerance.atol, eps=ctx.tolerance.eps
    )
    if np.all(relative_error(a, own, loose) <= loose.rtol) and not ctx.close(own, r):
        return sentences.consistent_with_own_fprop(name, evidence, ctx.wording)
    return None


def _sign(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    return sentences.sign_flipped(name, evidence, ctx.wording) if ctx.close(a, -r) else None


def _activation(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    if ctx.arch is None or ctx.example is None:
        return None
    ex, arch = ctx.example, ctx.arch
    for variant in backprop.variants(arch):
        if variant.layer < (_layer(name) or 0):
            continue  # a bug at layer l only reaches the gradients of layers 1..l
        buggy = backprop.gradients(arch, ex.x, ex.y, ex.params, variant).get(name)
        if buggy is not None and ctx.close(a, buggy) and not ctx.close(buggy, r):
            return sentences.activation(name, variant, arch, evidence)
    return None


def _named_factor(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    for factor in ctx.factors:
        if factor.value not in (0.0, 1.0) and ctx.close(a, factor.value * r):
            return sentences.scaled(name, factor, evidence, ctx.wording)
    return None


def _factors(
    batch_size: int | None, dims: Mapping[str, int], learning_rate: float | None, wording: Wording
) -> tuple[Factor, ...]:
    """The factors a student knows by name, in the order they are tried (2 before m = 2)."""
    found = [Factor(2.0, "2"), Factor(0.5, "1/2")]
    for symbol, size, batch in _named_sizes(batch_size, dims, wording):
        inverse, times = ("1/m", "m") if batch else (f"1/{symbol}", symbol)
        found += [
            Factor(1.0 / size, inverse, symbol, size, batch),
            Factor(float(size), times, symbol, size, batch),
        ]
    if learning_rate:
        found += [Factor(learning_rate, "lr"), Factor(-learning_rate, "-lr")]
    return tuple(found)


def _named_sizes(
    batch_size: int | None, dims: Mapping[str, int], wording: Wording
) -> list[tuple[str, int, bool]]:
    """(symbol, size, is the batch) for the batch size first, then every other named size.

    The batch keeps the caller's symbol for it (``N`` in ``dims``), else the documents' m
    for a network and N for other code; of several sizes that are equal, the first names it.
    """
    named = {int(size): str(symbol) for symbol, size in reversed(list(dims.items()))}
    found = []
    if batch_size and batch_size > 1:
        default = "m" if wording.network else "N"
        found.append((named.pop(int(batch_size), default), int(batch_size), True))
    found += [(symbol, size, False) for size, symbol in named.items() if size > 1]
    return found


def _unnamed_factor(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    # One entry always "fits" a scale: claim a constant factor only where it is checkable.
    alpha = evidence["alpha"]
    if np.count_nonzero(np.abs(r) > ctx.tolerance.atol) < 2 or alpha == 0.0:
        return None
    if not ctx.close(a, alpha * r):
        return None
    return sentences.scaled(name, Factor(alpha, ""), evidence, ctx.wording)


def _label_entries(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    # A softmax loss's dx wrong exactly at each example's own class: the - 1 of p - 1[y].
    y = (ctx.inputs or {}).get("y")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or a.ndim != 2:
        return None
    if y.shape != (a.shape[0],) or y.min() < 0 or y.max() >= a.shape[1]:
        return None
    own = np.zeros(a.shape, dtype=bool)
    own[np.arange(a.shape[0]), y] = True
    wrong = relative_error(a, r, ctx.tolerance) > ctx.tolerance.rtol
    if not np.array_equal(wrong, own):
        return None
    return sentences.label_entries(name, evidence, ctx.wording)


def _not_gated(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    # A ReLU's dx that lets the gradient through where x <= 0: the reference is zero exactly
    # there, and only there is the gradient wrong.
    key = name[1:] if name.startswith("d") and name[1:] in (ctx.inputs or {}) else name
    x = (ctx.inputs or {}).get(key)
    if not isinstance(x, np.ndarray) or x.shape != a.shape or x.dtype.kind != "f":
        return None
    wrong = relative_error(a, r, ctx.tolerance) > ctx.tolerance.rtol
    inactive = x <= 0
    if not wrong.any() or (wrong & ~inactive).any() or np.any(r[inactive] != 0):
        return None
    return sentences.not_gated(name, key, evidence, ctx.wording)


def _batch_mean_term(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    # Off by the same row for every example: a term through the batch mean (batchnorm's
    # - sum_n dxhat_n / N) is missing or wrong. Layers only: their examples are rows.
    n = ctx.batch_size
    if ctx.arch is not None or not n or n < 3 or a.ndim < 2 or a.shape[0] != n:
        return None
    offset = (a - r).mean(axis=0, keepdims=True)
    if not ctx.close(a - offset, r) or ctx.close(np.broadcast_to(offset, a.shape) + r, r):
        return None
    return sentences.batch_mean_term(name, n, evidence, ctx.wording)


def _batch_variance_term(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    # Off, in each column, by a multiple of the standardised input xhat (plus a constant):
    # the term through the batch variance (batchnorm's - xhat * sum_n dxhat_n xhat_n / N).
    n, key = ctx.batch_size, name[1:] if name.startswith("d") else name
    x = (ctx.inputs or {}).get(key)
    if ctx.arch is not None or not n or n < 4 or not isinstance(x, np.ndarray):
        return None
    if x.shape != a.shape or a.ndim != 2 or a.shape[0] != n or x.dtype.kind != "f":
        return None
    spread = x.std(axis=0)
    if np.any(spread == 0):
        return None
    xhat = (x - x.mean(axis=0)) / spread
    d = a - r
    offset = d.mean(axis=0)
    slope = (d * xhat).sum(axis=0) / (xhat * xhat).sum(axis=0)
    fitted = offset + slope * xhat
    if not ctx.close(r + fitted, a) or ctx.close(r + slope * xhat, r):
        return None
    with_mean = not ctx.close(r + offset + 0 * xhat, r)
    return sentences.batch_variance_term(name, with_mean, evidence, ctx.wording)


_NAME = re.compile(r"^[A-Za-z]+(\d+)$")


def _layer(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None
