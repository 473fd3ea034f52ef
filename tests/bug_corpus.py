"""A corpus of wrong solutions: each is one line of ``solutions/NAME.py`` changed.

Every :class:`Bug` says which line changes, the cause a diagnosis must name, and for which
parameters. :func:`diagnose` runs the patched solution the way a grader would (the probe
decides how: one batch, m = 1 against m > 1, or two calls on the same inputs) and returns
what :mod:`gradcheck.diagnosis` makes of it. Other tests may import this module.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gradcheck import networks
from gradcheck.diagnosis import (
    Diagnosis,
    diagnose_batch_sizes,
    diagnose_gradients,
    diagnose_repeated_calls,
    snapshot,
)
from gradcheck.differentiation import numerical_gradient
from gradcheck.networks import Example

Probe = Literal["gradients", "batch", "repeat"]


@dataclass(frozen=True)
class Bug:
    """One line of a solution replaced, and the diagnosis it must get."""

    name: str
    assignment: str
    old: str
    """The exact text of the line to replace (stripped of indentation)."""
    new: str
    cause: str
    params: tuple[str, ...]
    """The parameters whose gradient is wrong and must carry ``cause``."""
    probe: Probe = "gradients"
    sizes: Mapping[str, object] = field(default_factory=dict)
    also: frozenset[str] = frozenset()
    """Other causes that are also right for a parameter (e.g. a (1, m) bias of one unit)."""


_MLP_TANH = {"widths": (3, 4, 2), "activations": ("tanh", "sigmoid"), "loss": "squared"}
_MLP_RELU = {"widths": (3, 4, 2), "activations": ("relu", "sigmoid"), "loss": "squared"}
_ALL_TWO_HIDDEN = ("W1", "b1", "W2", "b2", "W3", "b3")
_ALL_BINARY = ("W1", "b1", "W2", "b2")

BUGS: tuple[Bug, ...] = (
    Bug(
        "target minus prediction",
        "three_node",
        "delta_o = (yhat - y) * yhat * (1.0 - yhat)  # (m, 1)",
        "delta_o = (y - yhat) * yhat * (1.0 - yhat)  # (m, 1)",
        "sign_flipped",
        ("W1", "W2"),
    ),
    Bug(
        "square dW1 transposed",
        "three_node",
        "dW1 = x.T @ delta_h  # no activation derivative: the hidden layer is linear",
        "dW1 = delta_h.T @ x",
        "transposed",
        ("W1",),
    ),
    Bug(
        "document 000: sigmoid derivative twice",
        "three_node",
        "delta_o = (yhat - y) * yhat * (1.0 - yhat)  # (m, 1)",
        "delta_o = (yhat - y) * (yhat * (1.0 - yhat)) ** 2",
        "activation_derivative_twice",
        ("W1", "W2"),
    ),
    Bug(
        "sigma'(a2) for sigma'(z2)",
        "batch_sigmoid",
        "delta2 = (delta3 @ W2.T) * sigmoid_prime(z2)  # (m, 3)",
        "delta2 = (delta3 @ W2.T) * sigmoid_prime(a2)",
        "derivative_at_activation",
        ("W1",),
    ),
    Bug(
        "output derivative missing",
        "batch_sigmoid",
        "delta3 = -(y - yhat) * sigmoid_prime(z3)  # (m, 1)",
        "delta3 = -(y - yhat)",
        "activation_derivative_missing",
        ("W1", "W2"),
    ),
    Bug(
        "mean instead of sum",
        "batch_sigmoid",
        "dW2 = a2.T @ delta3  # (3, m) @ (m, 1): summing over the batch happens in the product",
        "dW2 = a2.T @ delta3 / len(X)",
        "scaled",
        ("W2",),
    ),
    Bug(
        "first example only",
        "batch_sigmoid",
        "dW1 = X.T @ delta2  # (2, m) @ (m, 3)",
        "dW1 = X[:1].T @ delta2[:1]",
        "batch_size_one",
        ("W1",),
        probe="batch",
    ),
    Bug(
        "fprop normalises x in place",
        "batch_sigmoid",
        "z2 = x @ W1",
        "x /= np.abs(x).max(axis=0); z2 = x @ W1",
        "mutates_inputs",
        ("W1", "W2"),
        probe="repeat",
    ),
    Bug(
        "bias not summed",
        "two_hidden",
        'grads[f"b{layer}"] = np.sum(delta, axis=1, keepdims=True)',
        'grads[f"b{layer}"] = delta',
        "bias_not_summed",
        ("b1", "b2", "b3"),
    ),
    Bug(
        "bias summed over axis 0",
        "two_hidden",
        'grads[f"b{layer}"] = np.sum(delta, axis=1, keepdims=True)',
        'grads[f"b{layer}"] = np.sum(delta, axis=0, keepdims=True)',
        "bias_wrong_axis",
        ("b1", "b2"),
        also=frozenset({"bias_not_summed"}),
    ),
    Bug(
        "hidden derivative missing",
        "two_hidden",
        'delta2 = (cache["W3"].T @ delta3) * a2 * (1.0 - a2)  # (2, m)',
        'delta2 = cache["W3"].T @ delta3',
        "activation_derivative_missing",
        ("W1", "b1", "W2", "b2"),
    ),
    Bug(
        "sigma'(a1) for sigma'(z1)",
        "two_hidden",
        'delta1 = (cache["W2"].T @ delta2) * a1 * (1.0 - a1)  # (2, m)',
        'delta1 = (cache["W2"].T @ delta2) * sigmoid(a1) * (1.0 - sigmoid(a1))',
        "derivative_at_activation",
        ("W1", "b1"),
    ),
    Bug(
        "layers 1 and 2 swapped",
        "two_hidden",
        "for layer, delta, a_prev in ((3, delta3, a2), (2, delta2, a1), (1, delta1, a0)):",
        "for layer, delta, a_prev in ((3, delta3, a2), (2, delta1, a0), (1, delta2, a1)):",
        "swapped",
        ("W1", "b1", "W2", "b2"),
    ),
    Bug(
        "biases of layers 2 and 3 swapped",  # shapes (2, 1) and (1, 1): not two shape errors
        "two_hidden",
        'grads[f"b{layer}"] = np.sum(delta, axis=1, keepdims=True)',
        'grads[f"b{5 - layer if layer > 1 else 1}"] = np.sum(delta, axis=1, keepdims=True)',
        "swapped",
        ("b2", "b3"),
    ),
    Bug(
        "operands of dW swapped",
        "two_hidden",
        'grads[f"W{layer}"] = delta @ a_prev.T',
        'grads[f"W{layer}"] = a_prev @ delta.T',
        "transposed",
        ("W1", "W2", "W3"),
    ),
    Bug(
        "fprop halves its input",
        "two_hidden",
        "a0 = x",
        "a0 = x / 2",
        "consistent_with_own_fprop",
        _ALL_TWO_HIDDEN,
    ),
    Bug(
        "y - a2",
        "binary_classifier",
        "dz2 = a2 - y  # (1, m)",
        "dz2 = y - a2",
        "sign_flipped",
        _ALL_BINARY,
        sizes={"hidden": 3},
    ),
    Bug(
        "db1 over axis 0",
        "binary_classifier",
        "db1 = np.sum(dz1, axis=1, keepdims=True)  # (H, 1)",
        "db1 = np.sum(dz1, axis=0, keepdims=True)",
        "bias_wrong_axis",
        ("b1",),
        sizes={"hidden": 3},
    ),
    Bug(
        "sigma'(a1) for sigma'(z1), cross-entropy",
        "binary_classifier",
        'dz1 = (cache["W2"].T @ dz2) * sigmoid(z1) * (1 - sigmoid(z1))  # (H, m)',
        'dz1 = (cache["W2"].T @ dz2) * sigmoid(a1) * (1 - sigmoid(a1))',
        "derivative_at_activation",
        ("W1", "b1"),
        sizes={"hidden": 3},
    ),
    Bug(
        "dW1 divided by m",
        "binary_classifier",
        "dW1 = dz1 @ x.T  # (H, m) @ (m, 2)",
        "dW1 = dz1 @ x.T / x.shape[1]",
        "scaled",
        ("W1",),
        sizes={"hidden": 3},
    ),
    Bug(
        "db2 under 'db2'",
        "binary_classifier",
        'return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}',
        'return {"W1": dW1, "b1": db1, "W2": dW2, "db2": db2}',
        "wrong_key",
        ("b2",),
        sizes={"hidden": 3},
    ),
    Bug(
        "db2 left at zero",
        "binary_classifier",
        "db2 = np.sum(dz2, axis=1, keepdims=True)  # sum over the batch: (1, 1)",
        "db2 = np.zeros((1, 1))",
        "zeros",
        ("b2",),
        sizes={"hidden": 3},
    ),
    Bug(
        "db2 from the first example",
        "binary_classifier",
        "db2 = np.sum(dz2, axis=1, keepdims=True)  # sum over the batch: (1, 1)",
        "db2 = dz2[:, :1]",
        "batch_size_one",
        ("b2",),
        probe="batch",
        sizes={"hidden": 3},
    ),
    Bug(
        "a2 -= y in the cache",
        "binary_classifier",
        "dz2 = a2 - y  # (1, m)",
        "a2 -= y; dz2 = a2",
        "mutates_inputs",
        _ALL_BINARY,
        probe="repeat",
        sizes={"hidden": 3},
    ),
    Bug(
        "not implemented",
        "binary_classifier",
        'x, y, z1, a1, a2 = (cache[k] for k in ("x", "y", "z1", "a1", "a2"))',
        "raise NotImplementedError",
        "not_implemented",
        _ALL_BINARY,
        sizes={"hidden": 3},
    ),
    Bug(
        "factor 2 from the square",
        "three_input",
        "delta2 = (a2 - y) * a2 * (1.0 - a2)  # (1, m)",
        "delta2 = 2 * (a2 - y) * a2 * (1.0 - a2)",
        "scaled",
        ("W1", "W2"),
    ),
    Bug(
        "hidden derivative missing, three inputs",
        "three_input",
        "delta1 = (W2.T @ delta2) * a1 * (1.0 - a1)  # (2, m)",
        "delta1 = W2.T @ delta2",
        "activation_derivative_missing",
        ("W1",),
    ),
    Bug(
        "dW2 left as None",
        "three_input",
        'return {"W1": dW1, "W2": dW2}',
        'return {"W1": dW1, "W2": None}',
        "not_implemented",
        ("W2",),
    ),
    Bug(
        "learning rate in the gradient",
        "three_input",
        "dW1 = delta1 @ x.T  # (2, m) @ (m, 3)",
        "dW1 = 0.1 * delta1 @ x.T",
        "scaled",
        ("W1",),
    ),
    Bug(
        "tanh'(a) for tanh'(z)",
        "mlp",
        'delta = (params[f"W{layer}"].T @ delta) * ACTIVATIONS[activations[layer - 2]][1](zs[layer - 2])',
        'delta = (params[f"W{layer}"].T @ delta) * ACTIVATIONS[activations[layer - 2]][1](inputs[layer - 1])',
        "derivative_at_activation",
        ("W1", "b1"),
        sizes=_MLP_TANH,
    ),
    Bug(
        "bias without keepdims",
        "mlp",
        'grads[f"b{layer}"] = np.sum(delta, axis=1, keepdims=True)',
        'grads[f"b{layer}"] = np.sum(delta, axis=1)',
        "flattened",
        ("b1", "b2"),
        sizes=_MLP_TANH,
    ),
    Bug(
        "output derivative missing, mlp",
        "mlp",
        "delta = (a - y) * ACTIVATIONS[activations[-1]][1](zs[-1])",
        "delta = a - y",
        "activation_derivative_missing",
        ("W1", "b1", "W2", "b2"),
        sizes=_MLP_TANH,
    ),
    Bug(
        "sigma'(z2) kept with cross-entropy",
        "binary_classifier",
        "dz2 = a2 - y  # (1, m)",
        "dz2 = (a2 - y) * a2 * (1 - a2)",
        "derivative_not_cancelled",
        _ALL_BINARY,
        sizes={"hidden": 3},
    ),
    Bug(
        "z2 * (1 - z2) for sigma'(z2)",
        "batch_sigmoid",
        "delta2 = (delta3 @ W2.T) * sigmoid_prime(z2)  # (m, 3)",
        "delta2 = (delta3 @ W2.T) * z2 * (1 - z2)",
        "derivative_formula_at_preactivation",
        ("W1",),
    ),
    Bug(
        "dW2 from z1",
        "binary_classifier",
        "dW2 = dz2 @ a1.T  # (1, m) @ (m, H)",
        "dW2 = dz2 @ z1.T",
        "preactivation_input",
        ("W2",),
        sizes={"hidden": 3},
    ),
    Bug(
        "dW2 from z1, rows",
        "batch_sigmoid",
        "dW2 = a2.T @ delta3  # (3, m) @ (m, 1): summing over the batch happens in the product",
        "dW2 = z2.T @ delta3",
        "preactivation_input",
        ("W2",),
    ),
    Bug(
        "dW2 from a2, the layer's own output",
        "two_hidden",
        "for layer, delta, a_prev in ((3, delta3, a2), (2, delta2, a1), (1, delta1, a0)):",
        "for layer, delta, a_prev in ((3, delta3, a2), (2, delta2, a2), (1, delta1, a0)):",
        "wrong_layer_input",
        ("W2",),
    ),
    Bug(
        "relu derivative of one",
        "mlp",
        '"relu": (lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)),',
        '"relu": (lambda z: np.maximum(z, 0.0), lambda z: np.ones_like(z)),',
        "activation_derivative_missing",
        ("W1", "b1"),
        sizes=_MLP_RELU,
    ),
)


def patched(bug: Bug) -> types.ModuleType:
    """The solution of ``bug.assignment`` with the one line replaced, as a fresh module."""
    source = (networks.solutions_dir() / f"{bug.assignment}.py").read_text()
    lines = source.splitlines()
    hits = [i for i, line in enumerate(lines) if line.strip() == bug.old]
    assert len(hits) == 1, f"{bug.name}: {bug.old!r} occurs {len(hits)} times in {bug.assignment}"
    indent = lines[hits[0]][: len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
    lines[hits[0]] = indent + bug.new
    module = types.ModuleType(f"bug_corpus_{bug.assignment}")
    exec(compile("\n".join(lines) + "\n", f"<{bug.name}>", "exec"), module.__dict__)  # noqa: S102
    return module


def example_for(
    assignment: str, m: int, sizes: Mapping[str, object], seed: int, dtype: type = np.float64
) -> Example:
    """A random example; cast to ``dtype`` (the reference always runs in float64)."""
    example = networks.get(assignment).random_example(np.random.default_rng(seed), m, **sizes)
    if dtype is np.float64:
        return example
    return Example(
        x=example.x.astype(dtype),
        y=example.y.astype(dtype),
        params={k: v.astype(dtype) for k, v in example.params.items()},
        lr=example.lr,
        options=example.options,
        source=example.source,
    )


def run(module: types.ModuleType, example: Example) -> Mapping[str, object] | BaseException:
    """What ``module.bprop(module.fprop(...))`` returns, or the exception it raised."""
    ex = example.fresh()
    try:
        return module.bprop(module.fprop(ex.x, ex.y, ex.params, **ex.options))
    except Exception as error:  # noqa: BLE001 - the corpus holds deliberately broken code
        return error


def reference(assignment: str, example: Example) -> dict[str, np.ndarray]:
    """The reference gradients, computed in float64."""
    solution = networks.get(assignment).solution()
    ex = example.fresh()
    params = {k: v.astype(np.float64) for k, v in ex.params.items()}
    return solution.bprop(
        solution.fprop(ex.x.astype(np.float64), ex.y.astype(np.float64), params, **ex.options)
    )


def own_numerical(module: types.ModuleType, example: Example) -> dict[str, np.ndarray]:
    """Finite differences of the module's own fprop."""
    ex = example.fresh()
    return numerical_gradient(
        lambda p: module.fprop(ex.x.copy(), ex.y.copy(), p, **ex.options)["loss"], dict(ex.params)
    )


def diagnose(bug: Bug, seed: int = 0) -> dict[str, Diagnosis]:
    """Run the patched solution as the grader would and diagnose it."""
    module, network = patched(bug), networks.get(bug.assignment)
    if bug.probe == "batch":
        one, many = (example_for(bug.assignment, m, bug.sizes, seed) for m in (1, 4))
        return diagnose_batch_sizes(
            run(module, one),
            reference(bug.assignment, one),
            run(module, many),
            reference(bug.assignment, many),
            network=network,
            example_many=many,
            batch_size=4,
        )
    example = example_for(bug.assignment, 3, bug.sizes, seed)
    if bug.probe == "repeat":
        return _repeat(module, example)
    return diagnose_gradients(
        run(module, example),
        reference(bug.assignment, example),
        network=network,
        example=example,
        numerical_own=own_numerical(module, example),
    )


def _repeat(module: types.ModuleType, example: Example) -> dict[str, Diagnosis]:
    ex = example.fresh()
    inputs = {"x": ex.x, "y": ex.y, "params": ex.params}
    before = snapshot(inputs)
    cache = module.fprop(ex.x, ex.y, ex.params, **ex.options)
    changed = snapshot({**inputs, "cache": cache})
    if any(not np.array_equal(before[k], changed[k]) for k in ("x", "y")) or any(
        not np.array_equal(before["params"][k], changed["params"][k]) for k in ex.params
    ):
        first = module.bprop(cache)
        return diagnose_repeated_calls(
            first, first, before=before, after=snapshot(inputs), who="fprop"
        )
    first, second = module.bprop(cache), module.bprop(cache)
    return diagnose_repeated_calls(
        first, second, before=changed, after=snapshot({**inputs, "cache": cache}), who="bprop"
    )
