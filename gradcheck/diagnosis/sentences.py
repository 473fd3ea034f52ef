"""One plain sentence per cause, pointing at the line of math to look at.

Each function builds a :class:`Diagnosis`; the sentence is written for a student reading
feedback.md: what is wrong with which gradient, then the formula that fixes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from ..networks import Architecture
from .backprop import Variant
from .model import Diagnosis

_SYMBOL = {"sigmoid": "sigma", "tanh": "tanh", "relu": "relu", "identity": "identity"}
_IN_TERMS_OF_A = {"sigmoid": "{a} * (1 - {a})", "tanh": "1 - {a}**2", "relu": "({a} > 0)"}


def _make(
    name: str, cause: str, sentence: str, evidence: Mapping[str, object] | None = None
) -> Diagnosis:
    return Diagnosis(name, cause, sentence, MappingProxyType(dict(evidence or {})))  # type: ignore[arg-type]


def _numbers(evidence: Mapping[str, object]) -> str:
    return f"alpha = {evidence.get('alpha', 0.0):.3g}, cosine = {evidence.get('cosine', 0.0):.3f}"


def _prev(layer: int | None) -> str:
    return "x" if layer in (None, 1) else f"a{layer - 1}"


def not_implemented(name: str, error: BaseException | None) -> Diagnosis:
    if isinstance(error, NotImplementedError):
        return _make(
            name,
            "not_implemented",
            f"bprop raised NotImplementedError: replace the `raise NotImplementedError` "
            f"with the computation of d{name} and return it under the key {name!r}.",
        )
    if error is not None:
        return _make(
            name,
            "not_implemented",
            f"bprop raised {type(error).__name__} before returning d{name}: fix that error "
            f"first (the traceback shows the line).",
        )
    return _make(
        name,
        "not_implemented",
        f"d{name} is not implemented yet (bprop returned None for it): compute it and "
        f"return it under the key {name!r}.",
    )


def not_a_dict(name: str, value: object) -> Diagnosis:
    return _make(
        name,
        "missing",
        f"bprop returned a {type(value).__name__} where d{name} should be: return a dict "
        f"with one array per parameter, d{name} under the key {name!r}.",
    )


def missing(name: str, names: Sequence[str]) -> Diagnosis:
    keys = ", ".join(repr(key) for key in names)
    return _make(
        name,
        "missing",
        f"bprop returned no gradient under the key {name!r}: return a dict with one entry "
        f"per parameter, keyed {keys}.",
    )


def wrong_key(name: str, key: str) -> Diagnosis:
    return _make(
        name,
        "wrong_key",
        f"the gradient of {name} is returned under the key {key!r}: key each gradient by "
        f"its parameter's name, {name!r}.",
        {"key": key},
    )


def misfiled(name: str, other: str, evidence: Mapping[str, object]) -> Diagnosis:
    return _make(
        name,
        "wrong_key",
        f"the value returned under {name!r} is the gradient of {other}: check which "
        f"gradient each key of the returned dict receives.",
        {**evidence, "matches": other},
    )


def swapped(name: str, other: str, evidence: Mapping[str, object]) -> Diagnosis:
    return _make(
        name,
        "swapped",
        f"d{name} and d{other} are swapped: the value under {name!r} is the gradient of "
        f"{other} and vice versa; check the order in which the layers' gradients are "
        f"stored.",
        {**evidence, "matches": other},
    )


def zeros(name: str, evidence: Mapping[str, object]) -> Diagnosis:
    return _make(
        name,
        "zeros",
        f"d{name} is all zeros: it is never computed, or it is overwritten after it is "
        f"computed (e.g. left at np.zeros_like).",
        evidence,
    )


def not_finite(name: str, count: int) -> Diagnosis:
    return _make(
        name,
        "not_finite",
        f"d{name} has {count} NaN or infinite entr{'y' if count == 1 else 'ies'}: look for "
        f"a log or a division of a value that reaches 0, or an overflowing exp.",
        {"not_finite": count},
    )


def transposed(
    name: str,
    layout: str | None,
    layer: int | None,
    values_match: bool,
    *,
    shape: tuple[int, ...],
    evidence: Mapping[str, object] | None = None,
) -> Diagnosis:
    what = (
        "matches the reference transposed" if values_match else f"has the transposed shape {shape}"
    )
    delta, prev = f"delta{layer or ''}", _prev(layer)
    if name.startswith("b"):
        fix = "the bias gradient has the shape of the bias itself"
    elif layout == "rows":
        fix = f"in a row-vector network d{name} = {prev}.T @ {delta}, not {delta}.T @ {prev}"
    elif layout == "columns":
        fix = f"in a column-vector network d{name} = {delta} @ {prev}.T, not {prev} @ {delta}.T"
    else:
        fix = "swap the operands of the product (delta @ a_prev.T for columns, a_prev.T @ delta for rows)"
    return _make(
        name,
        "transposed",
        f"d{name} {what}: {fix}.",
        {**(evidence or {}), "values_match_transpose": int(values_match)},
    )


def wrong_shape(name: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> Diagnosis:
    return _make(
        name,
        "wrong_shape",
        f"d{name} has shape {shape} but {name} has shape {expected}: a gradient always has "
        f"the shape of its parameter; check which operands the product multiplies.",
    )


def _axis_fix(name: str, layer: str, columns: bool) -> str:
    axis = 1 if columns else 0
    return f"d{name} = np.sum(delta{layer}, axis={axis}, keepdims=True)"


def bias_not_summed(name: str, shape: tuple[int, ...], columns: bool) -> Diagnosis:
    per = "column" if columns else "row"
    return _make(
        name,
        "bias_not_summed",
        f"d{name} has shape {shape}, one {per} per example: sum the bias gradient over the "
        f"batch, {_axis_fix(name, name[1:], columns)}.",
        {"shape": str(shape)},
    )


def bias_wrong_axis(name: str, shape: tuple[int, ...], columns: bool) -> Diagnosis:
    where = (
        "along axis 1 in a column-vector network"
        if columns
        else "along axis 0 in a row-vector network"
    )
    return _make(
        name,
        "bias_wrong_axis",
        f"d{name} is summed over the wrong axis (shape {shape}): the examples lie {where}, "
        f"so {_axis_fix(name, name[1:], columns)}.",
        {"shape": str(shape)},
    )


def flattened(name: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> Diagnosis:
    return _make(
        name,
        "flattened",
        f"d{name} has the right values but shape {shape} instead of {expected}: keep the "
        f"summed axis with np.sum(..., keepdims=True).",
        {"shape": str(shape)},
    )


def consistent_with_own_fprop(name: str, evidence: Mapping[str, object]) -> Diagnosis:
    return _make(
        name,
        "consistent_with_own_fprop",
        f"d{name} is the exact gradient of your own fprop, but your fprop computes a "
        f"different function than the network's: the bug is in the forward pass, "
        f"not in bprop.",
        evidence,
    )


def sign_flipped(name: str, evidence: Mapping[str, object]) -> Diagnosis:
    return _make(
        name,
        "sign_flipped",
        f"d{name} has the sign flipped ({_numbers(evidence)}): the error term is "
        f"prediction - target (dloss/dyhat = yhat - y), not target - prediction.",
        evidence,
    )


def activation(
    name: str, variant: Variant, arch: Architecture, evidence: Mapping[str, object]
) -> Diagnosis:
    layer = variant.layer
    g = arch.activations[layer - 1]
    symbol, z, a = _SYMBOL[g], f"z{layer}", f"a{layer}"
    in_a = _IN_TERMS_OF_A.get(g, "1").format(a=a)
    evidence = {**evidence, "layer": layer, "activation": g}
    if variant.mode == "none":
        return _make(
            name,
            "activation_derivative_missing",
            f"d{name} matches the reference with the derivative of layer {layer}'s {g} left "
            f"out: multiply the error arriving at layer {layer} by {symbol}'({z}) = {in_a}.",
            evidence,
        )
    if variant.mode == "activation":
        return _make(
            name,
            "derivative_at_activation",
            f"d{name} matches the reference with {symbol}'({a}) in place of {symbol}'({z}): "
            f"the derivative is taken at the pre-activation {z}, and since {a} = {symbol}({z}) "
            f"it is {in_a}, not {symbol}'({a}).",
            evidence,
        )
    return _make(
        name,
        "activation_derivative_twice",
        f"d{name} matches the reference with {symbol}'({z}) applied twice: multiply by the "
        f"derivative of layer {layer}'s {g} once only.",
        evidence,
    )


_FACTOR_WORDS = {
    "2": "twice the reference: the derivative of 0.5 * (y - yhat)**2 is yhat - y, with no factor 2",
    "1/2": "half the reference: the derivative of 0.5 * e**2 is e, so no second 1/2 belongs here",
    "1/m": (
        "the reference divided by the batch size m = {m}: the loss is a sum over the batch, "
        "not a mean, so do not divide by m"
    ),
    "m": (
        "m = {m} times the reference: the matrix product already sums over the batch, so do "
        "not also sum or multiply by m"
    ),
    "lr": (
        "the reference times the learning rate {lr:g}: bprop returns the gradient itself; "
        "only update applies the learning rate"
    ),
    "-lr": (
        "minus the learning rate {lr:g} times the reference: bprop returns the gradient "
        "itself, not the update step"
    ),
}


def scaled(name: str, factor: float, label: str, evidence: Mapping[str, object]) -> Diagnosis:
    evidence = {**evidence, "factor": float(factor)}
    if label:
        m = round(1.0 / factor) if label == "1/m" else round(factor)
        words = _FACTOR_WORDS[label].format(m=m, lr=abs(factor))
        return _make(name, "scaled", f"d{name} is {words}.", {**evidence, "factor_name": label})
    return _make(
        name,
        "scaled",
        f"d{name} points the {'right' if factor > 0 else 'opposite'} way and is scaled by "
        f"{factor:.4g} ({_numbers(evidence)}, "
        f"the same factor on {evidence.get('consistency', 0.0):.0%} of entries): look for a "
        f"constant factor in its formula.",
        evidence,
    )


def no_simple_pattern(name: str, evidence: Mapping[str, object]) -> Diagnosis:
    where = evidence.get("pattern", "")
    near = evidence.get("near_kink", "")
    place = f"; the mismatch is in {where}" if where and where != "all entries" else ""
    if near:
        place += f", where {near} ha{'ve' if 'units' in str(near) else 's'} a pre-activation near 0"
    return _make(
        name,
        "no_simple_pattern",
        f"d{name} differs from the reference with no simple pattern ({_numbers(evidence)}"
        f"{place}): recompute it step by step on the smallest example.",
        evidence,
    )


def batch_size_one(name: str, m: int, evidence: Mapping[str, object]) -> Diagnosis:
    return _make(
        name,
        "batch_size_one",
        f"d{name} is right for one example (m=1) but wrong for a batch of m={m}: some step "
        f"mixes up the batch dimension (an elementwise * where a matrix product is needed, "
        f"a sum over the wrong axis, or only the first example used).",
        {**evidence, "batch_size": m},
    )


def mutates_inputs(name: str, who: str, where: str) -> Diagnosis:
    return _make(
        name,
        "mutates_inputs",
        f"{who} modified {where} in place (e.g. with -=, *= or out=), so d{name} and any "
        f"later call compute from changed values: write the result into a new array "
        f"instead.",
        {"modified": where},
    )


def stale_cache(name: str, evidence: Mapping[str, object]) -> Diagnosis:
    return _make(
        name,
        "stale_cache",
        f"two calls of bprop on the same cache returned different d{name}: bprop depends on "
        f"state left over from an earlier call (a global, a mutable default argument, or "
        f"an array it changed).",
        evidence,
    )
