"""One plain sentence per cause, pointing at the line of math to look at.

Each function builds a :class:`Diagnosis`; the sentence is written for a student reading
feedback.md: what is wrong with which gradient, then the formula that fixes it. A
:class:`Wording` says what the sentences may assume: the functions' names, the declared
loss, and whether the code is one of the document networks (row or column vectors, a loss
summed over the batch). Without it, sentences are neutral: they name what the numbers
show ("scaled by 1/2") and no loss or layer they cannot know.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ..comparison import describe_value
from ..networks import Architecture
from .backprop import Variant
from .model import Diagnosis

_SYMBOL = {"sigmoid": "sigma", "tanh": "tanh", "relu": "relu", "identity": "identity"}
_IN_TERMS_OF_A = {"sigmoid": "{a} * (1 - {a})", "tanh": "1 - {a}**2", "relu": "({a} > 0)"}


@dataclass(frozen=True)
class Wording:
    """What a sentence may say about the code it diagnoses."""

    forward: str = "fprop"
    """The forward function's name, e.g. ``"affine_forward"``."""
    backward: str = "bprop"
    """The backward function's name, e.g. ``"affine_backward"``."""
    loss: str | None = None
    """The declared loss (``"squared"``, ``"cross_entropy"``...); None: not declared."""
    layout: str | None = None
    """A document network's layout ("rows" or "columns"); None for any other code."""
    gradient_keys: bool = False
    """True when the keys already are gradient names ("dx"), False for parameters ("W1")."""

    @property
    def network(self) -> bool:
        """True for a document network: its notation (m, delta, a_prev) and summed loss."""
        return self.layout is not None

    @property
    def returns_dict(self) -> bool:
        """True for the networks' bprop, which returns a dict; a layer's returns a tuple."""
        return self.backward == "bprop"

    def grad(self, name: str) -> str:
        """The gradient's name in a sentence: ``dW1`` for ``W1``, ``dx`` for ``dx``."""
        return name if self.gradient_keys else f"d{name}"

    def var(self, name: str) -> str:
        """The differentiated variable: ``W1`` for ``W1``, ``x`` for ``dx``."""
        return name[1:] if self.gradient_keys else name


def keyed_by_gradients(names: Iterable[object], inputs: Iterable[str] | None = None) -> bool:
    """True for keys such as dx, dw, db (of inputs x, w, b): the gradients' own names."""
    keys = [str(key) for key in names]
    known = None if inputs is None else set(inputs)
    return bool(keys) and all(
        len(key) > 1 and key.startswith("d") and (known is None or key[1:] in known) for key in keys
    )


NEUTRAL = Wording()
"""Sentences for code the diagnosis knows nothing about."""


@dataclass(frozen=True)
class Factor:
    """A scale factor with a name the student knows (2, the batch size, a dimension, lr)."""

    value: float
    code: str
    """Stable, for ``evidence["factor_name"]``: "2", "1/2", "m", "1/m", "lr", "-lr", "D", "1/D"."""
    symbol: str = ""
    """The dimension's symbol as the caller names it (``"N"``, ``"D"``); "" for 2 and lr."""
    size: int = 0
    batch: bool = False
    """True when the dimension is the batch size."""


def make(
    name: str, cause: str, sentence: str, evidence: Mapping[str, object] | None = None
) -> Diagnosis:
    """A :class:`Diagnosis` whose evidence is a read-only copy."""
    return Diagnosis(name, cause, sentence, MappingProxyType(dict(evidence or {})))  # type: ignore[arg-type]


def _numbers(evidence: Mapping[str, object]) -> str:
    return f"alpha = {evidence.get('alpha', 0.0):.3g}, cosine = {evidence.get('cosine', 0.0):.3f}"


def _prev(layer: int | None) -> str:
    return "x" if layer in (None, 1) else f"a{layer - 1}"


def not_implemented(
    name: str, error: BaseException | None, wording: Wording = NEUTRAL
) -> Diagnosis:
    g, who = wording.grad(name), wording.backward
    if isinstance(error, NotImplementedError):
        return make(
            name,
            "not_implemented",
            f"{who} raised NotImplementedError: replace the `raise NotImplementedError` "
            f"with the computation of {g} and return it{_under_key(name, wording)}.",
        )
    if error is not None:
        return make(
            name,
            "not_implemented",
            f"{who} raised {type(error).__name__} before returning {g}: fix that error "
            f"first (the traceback shows the line).",
        )
    return make(
        name,
        "not_implemented",
        f"{g} is not implemented yet ({who} returned None for it): compute it and "
        f"return it{_under_key(name, wording)}.",
    )


def _under_key(name: str, wording: Wording) -> str:
    return f" under the key {name!r}" if wording.returns_dict else ""


def not_a_dict(name: str, value: object, wording: Wording = NEUTRAL) -> Diagnosis:
    g = wording.grad(name)
    fix = (
        f"a dict with one array per gradient, {g} under the key {name!r}"
        if wording.returns_dict
        else f"one array per gradient, {g} among them"
    )
    return make(
        name,
        "missing",
        f"{wording.backward} returned {describe_value(value)} where {g} should be: return {fix}.",
    )


def missing(name: str, names: Sequence[str], wording: Wording = NEUTRAL) -> Diagnosis:
    keys = ", ".join(repr(key) for key in names)
    return make(
        name,
        "missing",
        f"{wording.backward} returned no gradient under the key {name!r}: return a dict "
        f"with one entry per gradient, keyed {keys}.",
    )


def wrong_key(name: str, key: str, wording: Wording = NEUTRAL) -> Diagnosis:
    if wording.gradient_keys:
        fix = f"use the key {name!r}"
    else:
        owner = "the parameter's" if wording.network else "its"
        fix = f"use {owner} own name {name!r}"
    return make(
        name,
        "wrong_key",
        f"the gradient of {wording.var(name)} is returned under the key {key!r}; {fix}.",
        {"key": key},
    )


def misfiled(
    name: str, other: str, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    return make(
        name,
        "wrong_key",
        f"the value returned under {name!r} is the gradient of {wording.var(other)}: "
        f"check which gradient each name receives.",
        {**evidence, "matches": other},
    )


def swapped(
    cycle: Sequence[str], evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    """``cycle[i]`` holds the expected gradient of ``cycle[i + 1]``, the last that of the first."""
    grads = [wording.grad(name) for name in cycle]
    expected = [f"the expected {grads[(i + 1) % len(grads)]}" for i in range(len(grads))]
    first, *others = [f"your {mine} {theirs}" for mine, theirs in zip(grads, expected)]
    # "your dW1 is the expected dW2, your dW2 the expected dW3 and your dW3 the expected dW1"
    first = first.replace(" the expected", " is the expected", 1)
    where = ", ".join([first, *others[:-1]]) + f" and {others[-1]}"
    who = (
        f"{grads[0]} and {grads[1]} are swapped"
        if len(cycle) == 2
        else f"{', '.join(grads[:-1])} and {grads[-1]} are swapped in a cycle"
    )
    return make(
        cycle[0],
        "swapped",
        f"{who}: {where}; check which gradient each name receives.",
        {**evidence, "matches": cycle[1], "cycle": " -> ".join(cycle)},
    )


def zeros(name: str, evidence: Mapping[str, object], wording: Wording = NEUTRAL) -> Diagnosis:
    return make(
        name,
        "zeros",
        f"{wording.grad(name)} is all zeros: it is never computed, or it is overwritten after "
        f"it is computed (e.g. left at np.zeros_like).",
        evidence,
    )


def not_finite(name: str, count: int, wording: Wording = NEUTRAL) -> Diagnosis:
    return make(
        name,
        "not_finite",
        f"{wording.grad(name)} has {count} NaN or infinite entr{'y' if count == 1 else 'ies'}: "
        f"look for a log or a division of a value that reaches 0, or an overflowing exp.",
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
    wording: Wording = NEUTRAL,
) -> Diagnosis:
    g = wording.grad(name)
    what = (
        "matches the reference transposed" if values_match else f"has the transposed shape {shape}"
    )
    delta, prev = f"delta{layer or ''}", _prev(layer)
    if layout is not None and name.startswith("b"):
        fix = "the bias gradient has the shape of the bias itself"
    elif layout == "rows":
        fix = f"in a row-vector network {g} = {prev}.T @ {delta}, not {delta}.T @ {prev}"
    elif layout == "columns":
        fix = f"in a column-vector network {g} = {delta} @ {prev}.T, not {prev} @ {delta}.T"
    else:
        fix = (
            f"a gradient has the shape of its variable {wording.var(name)}; swap (or "
            f"transpose) the operands of the product that computes it"
        )
    return make(
        name,
        "transposed",
        f"{g} {what}: {fix}.",
        {**(evidence or {}), "values_match_transpose": int(values_match)},
    )


def wrong_shape(
    name: str, shape: tuple[int, ...], expected: tuple[int, ...], wording: Wording = NEUTRAL
) -> Diagnosis:
    return make(
        name,
        "wrong_shape",
        f"{wording.grad(name)} has shape {shape} but {wording.var(name)} has shape "
        f"{expected}: a gradient always has the shape of the variable it belongs to; check "
        f"which operands the product multiplies.",
    )


def padding_not_removed(
    name: str, shape: tuple[int, ...], pad: int, padded: int, wording: Wording = NEUTRAL
) -> Diagnosis:
    """A gradient returned with ``pad`` entries on both sides of its last ``padded`` axes."""
    g, var = wording.grad(name), wording.var(name)
    crop = ", ".join([":"] * (len(shape) - padded) + [f"{pad}:-{pad}"] * padded)
    return make(
        name,
        "padding_not_removed",
        f"{g} has shape {shape}, the shape of the padded {var} (pad = {pad} on each side), and "
        f"its middle is the expected gradient: crop the padding away before returning it, "
        f"{g} = {g}pad[{crop}].",
        {"pad": pad},
    )


def _axis_fix(name: str, layer: str, columns: bool) -> str:
    axis = 1 if columns else 0
    return f"d{name} = np.sum(delta{layer}, axis={axis}, keepdims=True)"


def bias_not_summed(name: str, shape: tuple[int, ...], columns: bool) -> Diagnosis:
    per = "column" if columns else "row"
    return make(
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
    return make(
        name,
        "bias_wrong_axis",
        f"d{name} is summed over the wrong axis (shape {shape}): the examples lie {where}, "
        f"so {_axis_fix(name, name[1:], columns)}.",
        {"shape": str(shape)},
    )


def summed_over_features(
    name: str, shape: tuple[int, ...], expected: tuple[int, ...], wording: Wording = NEUTRAL
) -> Diagnosis:
    g, var = wording.grad(name), wording.var(name)
    return make(
        name,
        "bias_wrong_axis",
        f"{g} has shape {shape}, one entry per example: it is summed over the wrong axis. The "
        f"examples lie along axis 0, so sum over axis 0 (and any other axis {var} does not "
        f"have) to get {var}'s shape {expected}.",
        {"shape": str(shape)},
    )


def not_summed(
    name: str,
    shape: tuple[int, ...],
    axis: int,
    *,
    summed_over_batch: bool,
    wording: Wording = NEUTRAL,
) -> Diagnosis:
    where = "one entry per example along" if summed_over_batch else "with an extra"
    return make(
        name,
        "not_summed",
        f"{wording.grad(name)} has shape {shape}, {where} axis {axis}: summed over that axis "
        f"it is the expected gradient, so sum it, np.sum(..., axis={axis}).",
        {"shape": str(shape), "axis": axis},
    )


def flattened(
    name: str, shape: tuple[int, ...], expected: tuple[int, ...], wording: Wording = NEUTRAL
) -> Diagnosis:
    fix = (
        "keep the summed axis with np.sum(..., keepdims=True)"
        if wording.network
        else f"reshape it to the shape of {wording.var(name)} (or keep a summed axis with "
        f"keepdims=True)"
    )
    return make(
        name,
        "flattened",
        f"{wording.grad(name)} has the right values but shape {shape} instead of "
        f"{expected}: {fix}.",
        {"shape": str(shape)},
    )


def consistent_with_own_fprop(
    name: str, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    forward, backward = wording.forward, wording.backward
    return make(
        name,
        "consistent_with_own_fprop",
        f"{wording.grad(name)} is the exact gradient of your own {forward}, but your "
        f"{forward} computes a different function than the reference's: the bug is in the "
        f"forward pass, not in {backward}.",
        evidence,
    )


def sign_flipped(
    name: str, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    # "prediction - target" holds for every loss the networks and courses declare (squared,
    # cross-entropy, softmax); code with no declared loss gets only what the numbers show.
    knows_loss = wording.network or wording.loss is not None
    fix = (
        "the error term is prediction - target (dloss/dyhat = yhat - y), not target - prediction"
        if knows_loss
        else "look for a minus sign too many or too few on the way back (a subtraction "
        "with its operands swapped)"
    )
    return make(
        name,
        "sign_flipped",
        f"{wording.grad(name)} has the sign flipped ({_numbers(evidence)}): {fix}.",
        evidence,
    )


def activation(
    name: str, variant: Variant, arch: Architecture, evidence: Mapping[str, object]
) -> Diagnosis:
    layer = variant.layer
    if variant.mode == "input_z":
        return _preactivation_input(name, layer, arch, evidence)
    if variant.mode == "input_other":
        return _other_input(name, layer, variant.other, arch, evidence)
    g = arch.activations[layer - 1]
    symbol, z, a = _SYMBOL[g], f"z{layer}", f"a{layer}"
    in_a = _IN_TERMS_OF_A.get(g, "1").format(a=a)
    evidence = {**evidence, "layer": layer, "activation": g}
    if variant.mode == "formula_at_z":
        return make(
            name,
            "derivative_formula_at_preactivation",
            f"d{name} matches the reference with {_IN_TERMS_OF_A[g].format(a=z)} in place of "
            f"{in_a}: that formula of {symbol}'({z}) takes the activation {a} = {symbol}({z}), "
            f"not the pre-activation {z}.",
            evidence,
        )
    if variant.mode == "not_cancelled":
        return make(
            name,
            "derivative_not_cancelled",
            f"d{name} matches the reference multiplied by {symbol}'({z}) = {in_a} at the "
            f"output: with the cross-entropy loss and a {g} output the derivative cancels, "
            f"dloss/d{z} = {a} - y, so do not multiply by {in_a}.",
            evidence,
        )
    if variant.mode == "none":
        return make(
            name,
            "activation_derivative_missing",
            f"d{name} matches the reference with the derivative of layer {layer}'s {g} left "
            f"out: multiply the error arriving at layer {layer} by {symbol}'({z}) = {in_a}.",
            evidence,
        )
    if variant.mode == "activation":
        return make(
            name,
            "derivative_at_activation",
            f"d{name} matches the reference with {symbol}'({a}) in place of {symbol}'({z}): "
            f"the derivative is taken at the pre-activation {z}, and since {a} = {symbol}({z}) "
            f"it is {in_a}, not {symbol}'({a}).",
            evidence,
        )
    return make(
        name,
        "activation_derivative_twice",
        f"d{name} matches the reference with {symbol}'({z}) applied twice: multiply by the "
        f"derivative of layer {layer}'s {g} once only.",
        evidence,
    )


def _other_input(
    name: str, layer: int, other: int, arch: Architecture, evidence: Mapping[str, object]
) -> Diagnosis:
    used, below = (f"a{k}" if k else "x" for k in (other, layer - 1))
    columns = arch.layout == "columns"
    formula = f"delta{layer} @ {below}.T" if columns else f"{below}.T @ delta{layer}"
    return make(
        name,
        "wrong_layer_input",
        f"d{name} matches the reference with {used} in place of {below}: layer {layer}'s input "
        f"is {below}, the activation of the layer below it, so d{name} = {formula}.",
        {**evidence, "layer": layer, "used": other},
    )


def _preactivation_input(
    name: str, layer: int, arch: Architecture, evidence: Mapping[str, object]
) -> Diagnosis:
    g = arch.activations[layer - 2]
    below, z = f"a{layer - 1}", f"z{layer - 1}"
    formula = (
        f"delta{layer} @ {below}.T" if arch.layout == "columns" else f"{below}.T @ delta{layer}"
    )
    return make(
        name,
        "preactivation_input",
        f"d{name} matches the reference with the pre-activation {z} in place of the "
        f"activation {below}: layer {layer}'s input is {below} = {_SYMBOL[g]}({z}), so "
        f"d{name} = {formula}.",
        {**evidence, "layer": layer, "activation": g},
    )


# The squared loss 0.5 * e**2 explains a factor 2 or 1/2; only said when it is declared.
_SQUARED_LOSS = {
    "2": "twice the reference: the derivative of 0.5 * (y - yhat)**2 is yhat - y, with no factor 2",
    "1/2": "half the reference: the derivative of 0.5 * e**2 is e, so no second 1/2 belongs here",
}
_NEUTRAL_TWO = {
    "2": "scaled by 2: it is twice the expected gradient; look for a factor 2 that does not "
    "belong in its formula",
    "1/2": "scaled by 1/2: it is half the expected gradient; look for a factor 1/2 (or a "
    "division by 2) that does not belong in its formula",
}
# The document networks' loss is a sum over the batch, in their notation m.
_NETWORK_BATCH = {
    "1/m": (
        "the reference divided by the batch size m = {n}: the loss is a sum over the batch, "
        "not a mean, so do not divide by m"
    ),
    "m": (
        "m = {n} times the reference: the matrix product already sums over the batch, so do "
        "not also sum or multiply by m"
    ),
}


def _held(evidence: Mapping[str, object]) -> str:
    held = evidence.get("consistency")
    return f", the same factor on {held:.0%} of entries" if isinstance(held, float) else ""


def scaled(
    name: str, factor: Factor, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    """A gradient that is a constant times the expected one; a factor with a code is named."""
    g, evidence = wording.grad(name), {**evidence, "factor": float(factor.value)}
    if not factor.code:
        return make(
            name,
            "scaled",
            f"{g} points the {'right' if factor.value > 0 else 'opposite'} way and is scaled "
            f"by {factor.value:.4g} ({_numbers(evidence)}{_held(evidence)}): look for a "
            f"constant factor in its formula.",
            evidence,
        )
    words = f"{g} is {_factor_words(factor, wording)}."
    return make(name, "scaled", words, {**evidence, "factor_name": factor.code})


def _factor_words(factor: Factor, wording: Wording) -> str:
    code, s, n = factor.code, factor.symbol, factor.size
    if code in _NEUTRAL_TWO:
        return (_SQUARED_LOSS if wording.loss == "squared" else _NEUTRAL_TWO)[code]
    if code in ("lr", "-lr"):
        return _learning_rate_words(factor, wording)
    if factor.batch and wording.network:
        return _NETWORK_BATCH[code].format(n=n)
    if factor.batch:
        return _BATCH_WORDS[code].format(s=s, n=n)
    return _DIMENSION_WORDS[code.startswith("1/")].format(s=s, n=n)


# Code with a loss of its own: the batch factor is checked, not explained by the loss.
_BATCH_WORDS = {
    "1/m": (
        "scaled by 1/{s} with {s} = {n}, the batch size: it is the expected gradient divided "
        "by {s}; divide by {s} once, and only if the loss is a mean over the batch"
    ),
    "m": (
        "scaled by {s} with {s} = {n}, the batch size: it is {s} times the expected gradient; "
        "a loss that is a mean over the batch divides its gradient by {s}, and a product over "
        "the batch already sums the examples"
    ),
}
_DIMENSION_WORDS = {
    True: (
        "scaled by 1/{s} with {s} = {n}: it is the expected gradient divided by {s}; look for "
        "a division by {s} (a mean over that axis) that does not belong in its formula"
    ),
    False: (
        "scaled by {s} with {s} = {n}: it is {s} times the expected gradient; look for a sum "
        "over that axis, or a factor {s}, that does not belong in its formula"
    ),
}


def _learning_rate_words(factor: Factor, wording: Wording) -> str:
    lr, backward = abs(factor.value), wording.backward
    if factor.code == "lr":
        return (
            f"the reference times the learning rate {lr:g}: {backward} returns the gradient "
            f"itself; only the update applies the learning rate"
        )
    return (
        f"minus the learning rate {lr:g} times the reference: {backward} returns the "
        f"gradient itself, not the update step"
    )


def batch_variance_term(
    name: str, with_mean: bool, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    g = wording.grad(name)
    if with_mean:
        what = (
            "a constant and a multiple of the standardised input xhat: the terms of {g} that "
            "come through the batch mean and the batch variance are missing or wrong (in batch "
            "normalisation, the - sum_n dxhat_n / N and the - xhat * sum_n(dxhat_n * xhat_n) / N "
            "inside dx)"
        )
    else:
        what = (
            "a multiple of the standardised input xhat: the term of {g} that comes through the "
            "batch variance is missing or wrong (in batch normalisation, the "
            "- xhat * sum_n(dxhat_n * xhat_n) / N inside dx)"
        )
    return make(
        name,
        "batch_variance_term",
        f"{g} is the expected gradient plus, in each column, {what.format(g=g)}.",
        {**evidence, "with_mean": int(with_mean)},
    )


def label_entries(
    name: str, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    g = wording.grad(name)
    # The formula only for a function that says it is a softmax: an SVM loss has labels too.
    formula = (
        f"; {g} = (p - 1 at the correct class) / N, with p the softmax probabilities"
        if "softmax" in wording.backward.lower()
        else ""
    )
    return make(
        name,
        "label_entries",
        f"{g} is right everywhere except at each example's own class (row n, column y[n]): "
        f"the term of the correct class is missing or has the wrong sign{formula}.",
        evidence,
    )


def not_gated(
    name: str, x: str, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    g = wording.grad(name)
    return make(
        name,
        "not_gated",
        f"{g} is right where {x} > 0 and not zero where {x} <= 0: the gradient must stop "
        f"where the unit was inactive, {g} = dout * ({x} > 0).",
        evidence,
    )


def batch_mean_term(
    name: str, n: int, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    g = wording.grad(name)
    return make(
        name,
        "batch_mean_term",
        f"{g} is the expected gradient plus the same row for each of the N = {n} examples: "
        f"the term of {g} that comes through the batch mean is missing or wrong (in batch "
        f"normalisation, the - sum_n dxhat_n / N inside dx).",
        evidence,
    )


def no_simple_pattern(
    name: str, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    where = evidence.get("pattern", "")
    near = evidence.get("near_kink", "")
    place = f"; the mismatch is in {where}" if where and where != "all entries" else ""
    if near:
        place += f", where {near} ha{'ve' if 'units' in str(near) else 's'} a pre-activation near 0"
    return make(
        name,
        "no_simple_pattern",
        f"{wording.grad(name)} differs from the reference with no simple pattern "
        f"({_numbers(evidence)}{place}): recompute it step by step on the smallest example.",
        evidence,
    )


def batch_size_one(
    name: str, m: int, evidence: Mapping[str, object], wording: Wording = NEUTRAL
) -> Diagnosis:
    return make(
        name,
        "batch_size_one",
        f"{wording.grad(name)} is right for one example (m=1) but wrong for a batch of m={m}: some step "
        f"mixes up the batch dimension (an elementwise * where a matrix product is needed, "
        f"a sum over the wrong axis, or only the first example used).",
        {**evidence, "batch_size": m},
    )


def mutates_inputs(name: str, who: str, where: str, wording: Wording = NEUTRAL) -> Diagnosis:
    return make(
        name,
        "mutates_inputs",
        f"{who} modified {where} in place (e.g. with -=, *= or out=), so {wording.grad(name)} and any "
        f"later call compute from changed values: write the result into a new array "
        f"instead.",
        {"modified": where},
    )


def stale_cache(
    name: str, evidence: Mapping[str, object], who: str = "bprop", wording: Wording = NEUTRAL
) -> Diagnosis:
    return make(
        name,
        "stale_cache",
        f"two calls of {who} on the same cache returned different {wording.grad(name)}: {who} "
        f"depends on state left over from an earlier call (a global, a mutable default "
        f"argument, or an array it changed).",
        evidence,
    )
