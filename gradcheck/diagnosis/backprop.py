"""An independent backward pass for any :class:`~gradcheck.networks.Architecture`, with bugs on demand.

The activation hypotheses are tested concretely: recompute the reference gradient with one
layer's derivative dropped, evaluated at the activation ``a`` instead of the pre-activation
``z``, or applied twice, and see whether the student's gradient is exactly that.

Example:
    >>> import numpy as np
    >>> from gradcheck import networks
    >>> net = networks.get("two_hidden")
    >>> ex = net.worked_examples[0]
    >>> grads = gradients(net.default, ex.x, ex.y, ex.params)
    >>> reference = net.solution().bprop(net.solution().fprop(ex.x, ex.y, ex.params))
    >>> all(np.allclose(grads[k], reference[k]) for k in reference)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ..networks import Architecture, Network

__all__ = ["Variant", "architecture_for", "deltas", "gradients", "variants"]

Mode = Literal[
    "none", "activation", "twice", "formula_at_z", "not_cancelled", "input_z", "input_other"
]
"""How a buggy bprop treats layer l: its derivative dropped, g'(a) for g'(z), g'(z)**2, the
formula in terms of a applied to z (z * (1 - z)), the output's derivative kept where
cross-entropy cancels it, or dW[l] taken with z[l-1] or another layer's a[k] in place of its
input a[l-1]."""


@dataclass(frozen=True)
class Variant:
    """One wrong treatment of one layer's activation derivative."""

    layer: int
    mode: Mode
    other: int = 0
    """For ``input_other``: the layer whose activation a[other] dW[layer] used (a0 is x)."""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


_FORWARD: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "identity": lambda z: z,
}
_DERIVATIVE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)),
    "tanh": lambda z: 1.0 - np.tanh(z) ** 2,
    "relu": lambda z: (z > 0).astype(float),
    "identity": np.ones_like,
}
# The derivative as students write it, in terms of the activation a = g(z).
_IN_TERMS_OF_A: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": lambda a: a * (1.0 - a),
    "tanh": lambda a: 1.0 - a**2,
}


def architecture_for(
    network: Network | Architecture, params: Mapping[str, np.ndarray], options: Mapping[str, object]
) -> Architecture:
    """The architecture of ``network`` at the sizes of ``params`` (hidden sizes, mlp widths)."""
    base = network if isinstance(network, Architecture) else network.default
    activations: tuple[str, ...] = tuple(options.get("activations") or base.activations)  # type: ignore[arg-type]
    loss = str(options.get("loss", base.loss))
    shapes = [np.shape(params[f"W{layer}"]) for layer in range(1, len(activations) + 1)]
    if base.layout == "columns":
        widths = (shapes[0][1], *(shape[0] for shape in shapes))
    else:
        widths = (shapes[0][0], *(shape[1] for shape in shapes))
    return replace(base, widths=tuple(int(w) for w in widths), activations=activations, loss=loss)


def _factor(activation: str, z: np.ndarray, mode: Mode | None) -> np.ndarray | float:
    derivative = _DERIVATIVE[activation]
    if mode == "none":
        return 1.0
    if mode == "activation":
        return derivative(_FORWARD[activation](z))
    if mode == "twice":
        return derivative(z) ** 2
    if mode == "formula_at_z":
        return _IN_TERMS_OF_A[activation](z)
    return derivative(z)


def deltas(
    arch: Architecture,
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    variant: Variant | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """dloss/dz of every layer (one column or row per example) and every layer's input."""
    p = {key: np.asarray(value, dtype=np.float64) for key, value in params.items()}
    zs = arch.preactivations(np.asarray(x, dtype=np.float64), p)
    inputs = [np.asarray(x, dtype=np.float64)] + [
        _FORWARD[g](z) for g, z in zip(arch.activations, zs)
    ]
    mode = {variant.layer: variant.mode} if variant else {}
    last = len(zs)
    error = inputs[-1] - np.asarray(y, dtype=np.float64)
    # Cross-entropy with a sigmoid output: the sigmoid's derivative cancels, dloss/dz = a - y.
    cancels = arch.loss == "cross_entropy" and mode.get(last) != "not_cancelled"
    found = [error if cancels else error * _factor(arch.activations[-1], zs[-1], mode.get(last))]
    for layer in range(last, 1, -1):
        w = p[f"W{layer}"]
        back = w.T @ found[0] if arch.layout == "columns" else found[0] @ w.T
        found.insert(
            0, back * _factor(arch.activations[layer - 2], zs[layer - 2], mode.get(layer - 1))
        )
    return found, inputs[:-1]


def gradients(
    arch: Architecture,
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, np.ndarray],
    variant: Variant | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of the loss for every parameter, optionally with one derivative bug."""
    found, inputs = deltas(arch, x, y, params, variant)
    if variant is not None and variant.mode in ("input_z", "input_other"):
        p = {key: np.asarray(value, dtype=np.float64) for key, value in params.items()}
        zs = arch.preactivations(np.asarray(x, dtype=np.float64), p)
        if variant.mode == "input_z":
            inputs[variant.layer - 1] = zs[variant.layer - 2]
        else:
            activations = [np.asarray(x, dtype=np.float64)] + [
                _FORWARD[g](z) for g, z in zip(arch.activations, zs)
            ]
            inputs[variant.layer - 1] = activations[variant.other]
    columns = arch.layout == "columns"
    grads: dict[str, np.ndarray] = {}
    for layer, (delta, a_prev) in enumerate(zip(found, inputs), start=1):
        grads[f"W{layer}"] = delta @ a_prev.T if columns else a_prev.T @ delta
        if arch.bias:
            grads[f"b{layer}"] = np.sum(delta, axis=1 if columns else 0, keepdims=True)
    return grads


def variants(arch: Architecture) -> Iterator[Variant]:
    """Every derivative bug that changes the gradient, output layer first.

    The rarer bugs come after the classic three of every layer, so that where two explain
    the same numbers (never on random examples) the classic one is named.
    """
    last = len(arch.activations)
    for layer in range(last, 0, -1):
        if layer == last and arch.loss == "cross_entropy":
            continue  # nothing to drop: the derivative already cancelled
        activation = arch.activations[layer - 1]
        if activation == "identity":
            continue
        yield Variant(layer, "none")
        if activation != "relu":  # relu'(a) == relu'(z) and relu'**2 == relu': same gradient
            yield Variant(layer, "activation")
            yield Variant(layer, "twice")
    if arch.loss == "cross_entropy" and arch.activations[-1] == "sigmoid":
        yield Variant(last, "not_cancelled")
    for layer in range(last, 0, -1):
        if arch.activations[layer - 1] in _IN_TERMS_OF_A:
            yield Variant(layer, "formula_at_z")
        if layer > 1 and arch.activations[layer - 2] != "identity":
            yield Variant(layer, "input_z")
        # Another layer's activation of the same width: a variable reused from the wrong layer.
        for other in range(len(arch.widths)):
            if other != layer - 1 and arch.widths[other] == arch.widths[layer - 1]:
                yield Variant(layer, "input_other", other)
