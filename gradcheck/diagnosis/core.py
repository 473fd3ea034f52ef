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
from .model import Diagnosis

__all__ = ["diagnose_gradients", "fit"]


@dataclass(frozen=True)
class _Context:
    analytic: Mapping[str, object]
    reference: Mapping[str, np.ndarray]
    tolerance: Tolerance
    arch: Architecture | None = None
    example: Example | None = None
    numerical_own: Mapping[str, np.ndarray] | None = None
    batch_size: int | None = None
    learning_rate: float | None = None

    def close(self, a: np.ndarray, b: np.ndarray) -> bool:
        return a.shape == b.shape and bool(
            np.all(relative_error(a, b, self.tolerance) <= self.tolerance.rtol)
        )


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
) -> dict[str, Diagnosis]:
    """Diagnose every parameter whose gradient is wrong; correct ones get no entry.

    Args:
        analytic: what the student's bprop returned, or the exception it raised.
        reference: the reference gradients (from ``solutions/``), one array per parameter.
        network: the network (or its architecture), to test the activation hypotheses and
            to check bias gradients against the per-example errors; needs ``example``.
        example: the example bprop was run on (x, y, params, options, lr).
        numerical_own: finite differences of the student's *own* fprop, to recognise a
            bprop that is right for a wrong fprop.
        batch_size: m, to name factors m and 1/m (default: from ``example``).
        learning_rate: to name a gradient scaled by it (default: ``example.lr``).
        tolerance: when two gradients count as equal (default: by the student's dtype).

    Returns:
        ``{parameter: Diagnosis}`` for each wrong parameter, in the order of ``reference``.

    Example:
        >>> import numpy as np
        >>> r = {"W": np.array([[1.0, 2.0], [3.0, 4.0]])}
        >>> d = diagnose_gradients({"W": -r["W"]}, r)
        >>> d["W"].cause, d["W"].evidence["alpha"]
        ('sign_flipped', -1.0)
    """
    if analytic is None or isinstance(analytic, BaseException):
        return {name: sentences.not_implemented(name, analytic) for name in reference}
    if not isinstance(analytic, Mapping):
        return {name: sentences.not_a_dict(name, analytic) for name in reference}
    context = _context(
        analytic, reference, network, example, numerical_own, batch_size, learning_rate, tolerance
    )
    found = {name: _diagnose(name, context) for name in reference}
    return {name: diagnosis for name, diagnosis in found.items() if diagnosis is not None}


def _context(
    analytic: Mapping[str, object],
    reference: Mapping[str, np.ndarray],
    network: Network | Architecture | None,
    example: Example | None,
    numerical_own: Mapping[str, np.ndarray] | None,
    batch_size: int | None,
    learning_rate: float | None,
    tolerance: Tolerance | None,
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
    return _Context(
        analytic, reference, tolerance, arch, example, numerical_own, batch_size, learning_rate
    )


def _dtype(analytic: Mapping[str, object]) -> np.dtype:
    kinds = [
        value.dtype
        for value in analytic.values()
        if isinstance(value, np.ndarray) and value.dtype.kind == "f"
    ]
    return np.result_type(*kinds) if kinds else np.dtype(np.float64)


def _diagnose(name: str, ctx: _Context) -> Diagnosis | None:
    r = ctx.reference[name]
    if name not in ctx.analytic:
        return _misfiled(name, ctx) or sentences.missing(name, list(ctx.reference))
    value = ctx.analytic[name]
    if value is None or value is Ellipsis:
        return sentences.not_implemented(name, None)
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return sentences.not_a_dict(name, value)
    if a.shape != r.shape and a.size == r.size == 1:
        a = a.reshape(r.shape)  # a scalar bias gradient for a (1, 1) bias is fine
    if a.shape != r.shape:
        return _shape(name, a, r, ctx)
    if not np.all(np.isfinite(a)):
        return sentences.not_finite(name, int(np.sum(~np.isfinite(a))))
    if ctx.close(a, r):
        return None
    return _values(name, a, r, ctx)


# -- wrong shapes -------------------------------------------------------------------------


def _shape(name: str, a: np.ndarray, r: np.ndarray, ctx: _Context) -> Diagnosis:
    layout = ctx.arch.layout if ctx.arch else None
    if name.startswith("b"):
        found = _bias_shape(name, a, r, ctx)
        if found is not None:
            return found
    if a.ndim == 2 and a.shape == r.shape[::-1]:
        return sentences.transposed(name, layout, _layer(name), ctx.close(a.T, r), shape=a.shape)
    return sentences.wrong_shape(name, a.shape, r.shape)


def _bias_shape(name: str, a: np.ndarray, r: np.ndarray, ctx: _Context) -> Diagnosis | None:
    columns = (ctx.arch.layout if ctx.arch else "columns") == "columns"
    batch_axis = 1 if columns else 0
    per_example = _per_example_bias(name, ctx)
    m = ctx.batch_size
    if per_example is not None:
        if ctx.close(a, per_example):
            return sentences.bias_not_summed(name, a.shape, columns)
        summed_wrong = per_example.sum(axis=1 - batch_axis, keepdims=True)
        if a.size == summed_wrong.size and ctx.close(a.reshape(-1), summed_wrong.reshape(-1)):
            return sentences.bias_wrong_axis(name, a.shape, columns)
    elif (
        m
        and m > 1
        and a.ndim == 2
        and a.shape[batch_axis] == m
        and a.shape[1 - batch_axis] == r.size
    ):
        if ctx.close(a.sum(axis=batch_axis, keepdims=True).reshape(r.shape), r):
            return sentences.bias_not_summed(name, a.shape, columns)
    elif m and m > 1 and m != r.size and a.size == m:
        return sentences.bias_wrong_axis(name, a.shape, columns)
    if a.size == r.size and ctx.close(a.reshape(r.shape), r) and a.ndim != 2:
        return sentences.flattened(name, a.shape, r.shape)
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
        _swapped,
        _own_fprop,
        _sign,
        _activation,
        _named_factor,
        _unnamed_factor,
    )
    for check in checks:
        found = check(name, a, r, ctx, evidence)
        if found is not None:
            return found
    return sentences.no_simple_pattern(name, evidence)


def fit(a: np.ndarray, r: np.ndarray, tolerance: Tolerance | None = None) -> dict[str, float]:
    """Best-fit scale alpha = <a, r> / <r, r>, the cosine, and how consistently alpha holds.

    ``consistency`` is the fraction of entries (where r is not negligible) whose own ratio
    a / r is within rtol of alpha: 1.0 for a clean factor, low for a factor that only holds
    on average.

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
    consistency = float(held.mean()) if ratios.size else 0.0
    return {"alpha": round(alpha, 12), "cosine": round(cosine, 12), "consistency": consistency}


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
    return sentences.zeros(name, evidence) if not np.any(a) else None


def _square_transpose(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    if a.ndim == 2 and a.shape[0] == a.shape[1] and ctx.close(a, r.T):
        return sentences.transposed(
            name,
            ctx.arch.layout if ctx.arch else None,
            _layer(name),
            True,
            shape=a.shape,
            evidence=evidence,
        )
    return None


def _swapped(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    for other, expected in ctx.reference.items():
        if other == name or expected.shape != a.shape or not np.any(expected):
            continue
        if ctx.close(a, expected):
            theirs = ctx.analytic.get(other)
            back = theirs is not None and _close_to(theirs, r, ctx)
            return (
                sentences.swapped(name, other, evidence)
                if back
                else sentences.misfiled(name, other, evidence)
            )
    return None


def _close_to(value: object, r: np.ndarray, ctx: _Context) -> bool:
    try:
        return ctx.close(np.asarray(value, dtype=np.float64), r)
    except (TypeError, ValueError):
        return False


def _misfiled(name: str, ctx: _Context) -> Diagnosis | None:
    r = ctx.reference[name]
    for key, value in ctx.analytic.items():
        if key in ctx.reference:
            continue
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if a.shape == r.shape and ctx.close(a, r):
            return sentences.wrong_key(name, str(key))
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
        return sentences.consistent_with_own_fprop(name, evidence)
    return None


def _sign(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    return sentences.sign_flipped(name, evidence) if ctx.close(a, -r) else None


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
    for factor, label in _factors(ctx):
        if factor not in (0.0, 1.0) and ctx.close(a, factor * r):
            return sentences.scaled(name, factor, label, evidence)
    return None


def _factors(ctx: _Context) -> list[tuple[float, str]]:
    factors = [(2.0, "2"), (0.5, "1/2")]
    m = ctx.batch_size
    if m and m > 1:
        factors += [(1.0 / m, "1/m"), (float(m), "m")]
    if ctx.learning_rate:
        factors += [(ctx.learning_rate, "lr"), (-ctx.learning_rate, "-lr")]
    return factors


def _unnamed_factor(
    name: str, a: np.ndarray, r: np.ndarray, ctx: _Context, evidence: dict
) -> Diagnosis | None:
    # One entry always "fits" a scale: claim a constant factor only where it is checkable.
    if np.count_nonzero(np.abs(r) > ctx.tolerance.atol) < 2 or evidence["alpha"] == 0.0:
        return None
    return (
        sentences.scaled(name, evidence["alpha"], "", evidence)
        if ctx.close(a, evidence["alpha"] * r)
        else None
    )


_NAME = re.compile(r"^[A-Za-z]+(\d+)$")


def _layer(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None
