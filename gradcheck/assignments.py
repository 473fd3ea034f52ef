"""The assignment model: what students write, what is differentiated, and how it is scored.

An assignment is one file a student submits (``NAME.py`` or ``NAME.ipynb``). It declares the
functions the student writes and how to call them, how to draw inputs (shapes, value ranges,
kinks to keep away from, sizes that differ from each other so a transpose never passes),
worked examples with fixed numbers, what is differentiated with respect to what, and the
rubric. Three kinds share one protocol, so the grader, the pytest plugin and the templates
treat them alike:

* :class:`Network`: ``fprop(x, y, params) -> cache`` with ``"loss"``, ``bprop(cache) ->
  grads``, ``update(params, grads, lr) -> params`` (the six document networks, and any
  network an instructor declares);
* :class:`Layer` (CS231n style): ``forward(*inputs) -> (out, cache)`` and
  ``backward(dout, cache) -> grads``, checked with a random upstream gradient ``dout``;
* :class:`Loss`: ``loss(*inputs) -> (loss, grads)`` (softmax, SVM, cross-entropy).

Example:
    >>> from gradcheck.assignments import Layer, Input
    >>> affine = Layer(name="affine", forward="affine_forward", backward="affine_backward",
    ...                inputs={"x": Input(("N", "D")), "w": Input(("D", "M")), "b": Input(("M",))})
    >>> affine.wrt, affine.functions
    (('x', 'w', 'b'), ('affine_forward', 'affine_backward'))
    >>> case = affine.cases(seed=0, hidden=1)[0]
    >>> case.inputs["x"].shape == (case.sizes["N"], case.sizes["D"])
    True
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import InvalidArgument
from .tolerances import Tolerance
from .wire import Ref

__all__ = [
    "Input", "Labels", "Fixed", "Example", "Rubric", "Case", "Call",
    "Network", "Layer", "Loss", "Assignment", "GRADING_TOLERANCE", "CONSISTENCY_TOLERANCE",
]

Dim = str | int

# Student and reference gradients are both analytic: only rounding separates correct ones.
# 1e-4 leaves room for a student who computes in float32; every real bug is off by far more.
GRADING_TOLERANCE = Tolerance(rtol=1e-4, atol=1e-7, eps=1e-6)
# The student's gradient against finite differences of the student's own forward pass.
CONSISTENCY_TOLERANCE = Tolerance(rtol=1e-4, atol=1e-6, eps=1e-6)

# How far entries stay from a declared kink: central differences with steps up to 1e-3
# (float32) then never cross it.
_KINK_MARGIN = 1e-2


# -- inputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """A real array input, drawn uniformly in [low, high); differentiated unless ``wrt`` says not.

    ``shape`` names its dimensions (``("N", "D")``) or gives them (``(3, 4)``); named sizes come
    from the assignment's ``sizes``. ``kinks`` are values the entries keep away from (a ReLU's
    input: ``kinks=(0.0,)``).
    """

    shape: tuple[Dim, ...]
    low: float = -1.0
    high: float = 1.0
    kinks: tuple[float, ...] = ()
    dtype: str = "float64"

    def draw(self, rng: np.random.Generator, sizes: Mapping[str, int]) -> np.ndarray:
        values = rng.uniform(self.low, self.high, size=_shape(self.shape, sizes))
        for kink in self.kinks:
            near = np.abs(values - kink) < _KINK_MARGIN
            values[near] = kink + np.where(values[near] >= kink, 1, -1) * (
                _KINK_MARGIN + rng.uniform(0, 0.5, size=int(near.sum())))
        return values.astype(self.dtype)


@dataclass(frozen=True)
class Labels:
    """Integer class labels in [0, classes): never differentiated."""

    shape: tuple[Dim, ...]
    classes: Dim

    def draw(self, rng: np.random.Generator, sizes: Mapping[str, int]) -> np.ndarray:
        count = _size(self.classes, sizes)
        return rng.integers(0, count, size=_shape(self.shape, sizes))


@dataclass(frozen=True)
class Fixed:
    """A value passed as it is (``conv_param``, ``bn_param``): never differentiated."""

    value: Any

    def draw(self, rng: np.random.Generator, sizes: Mapping[str, int]) -> Any:
        return copy.deepcopy(self.value)


Spec = Input | Labels | Fixed


def _size(dim: Dim, sizes: Mapping[str, int]) -> int:
    if isinstance(dim, int):
        return dim
    if dim not in sizes:
        raise InvalidArgument(f"the size {dim!r} is not given; sizes are {dict(sizes)}")
    return int(sizes[dim])


def _shape(shape: tuple[Dim, ...], sizes: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(_size(dim, sizes) for dim in shape)


def _names(specs: Mapping[str, Spec]) -> tuple[str, ...]:
    return tuple(dim for spec in specs.values() if not isinstance(spec, Fixed)
                 for dim in (*spec.shape, *((spec.classes,) if isinstance(spec, Labels) else ()))
                 if isinstance(dim, str))


def _distinct_sizes(names: Sequence[str], seed: Sequence[int]) -> dict[str, int]:
    """Sizes 2..9, all different, so that no matrix is square and no transpose fits."""
    unique = list(dict.fromkeys(names))
    rng = np.random.default_rng(list(seed))
    values = rng.permutation(np.arange(2, 10))[: len(unique)]
    if len(unique) > len(values):
        values = np.concatenate([values, np.arange(10, 10 + len(unique) - len(values))])
    return {name: int(value) for name, value in zip(unique, values)}


# -- examples, cases, rubric ------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A worked example: fixed inputs (lists are turned into float arrays), where they come from."""

    inputs: Mapping[str, Any]
    source: str = ""
    expected: Mapping[str, Any] = field(default_factory=dict)
    """Published values (``"out"``, ``"loss"``, gradients by input name), to reproduce."""


@dataclass(frozen=True)
class Rubric:
    """Points per function and per gradient (the contract's default: 2 / 6 / 2)."""

    forward: float = 2.0
    backward: float = 6.0
    """Split evenly over the gradients, unless ``per_gradient`` gives each its points."""
    update: float = 2.0
    """Only for a :class:`Network`."""
    per_gradient: Mapping[str, float] | None = None
    consistent_fraction: float = 0.5
    """Share of a gradient's points when it matches the student's own (wrong) forward pass."""

    def shares(self, names: Sequence[str]) -> dict[str, float]:
        if self.per_gradient is not None:
            return {name: float(self.per_gradient.get(name, 0.0)) for name in names}
        return {name: self.backward / len(names) for name in names} if names else {}

    def to_dict(self) -> dict[str, object]:
        return {"forward": self.forward, "backward": self.backward, "update": self.update,
                "per_gradient": dict(self.per_gradient) if self.per_gradient else None,
                "consistent_fraction": self.consistent_fraction}


@dataclass(frozen=True)
class Case:
    """One set of inputs to check on, the same for every student."""

    label: str
    """"the worked example", "hidden example 2 (N = 5)"..."""
    inputs: Mapping[str, Any]
    sizes: Mapping[str, int] = field(default_factory=dict)
    batch_size: int = 1
    lr: float | None = None
    source: str = ""
    expected: Mapping[str, Any] = field(default_factory=dict)
    hidden: bool = False
    detail: Any = None
    """Kind-specific extras: a document network's :class:`~gradcheck.networks.Example`."""

    def fresh(self) -> dict[str, Any]:
        """Deep copies of the inputs, so that code under test may mutate them."""
        return {name: copy.deepcopy(value) for name, value in self.inputs.items()}


@dataclass(frozen=True)
class Call:
    """One request to the student's child: ``function(*args, **kwargs)``."""

    function: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    store: str | None = None
    pick: str | int | None = None


# -- the common part of every kind ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Kind:
    name: str
    """The file students submit: ``NAME.py`` or ``NAME.ipynb``."""
    title: str = ""
    notation: str = ""
    rubric: Rubric = field(default_factory=Rubric)
    tolerance: Tolerance | None = None
    hidden_count: int | None = None
    """Hidden examples (default: the grader's ``--hidden``, 3)."""

    kind = "assignment"
    update_function: str | None = None

    @property
    def tol(self) -> Tolerance:
        return self.tolerance or GRADING_TOLERANCE

    @property
    def forward_check(self) -> str:
        """The check name of the forward pass ("fprop", "affine_forward")."""
        return self.functions[0]  # type: ignore[attr-defined]

    def gradient_check(self, name: str) -> str:
        """The check name of one gradient ("bprop: W1", "affine_backward: dx")."""
        return f"{self.functions[1 if len(self.functions) > 1 else 0]}: {name}"  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class _InputsKind(_Kind):
    """A kind whose inputs are declared with :class:`Input`, :class:`Labels`, :class:`Fixed`."""

    inputs: Mapping[str, Spec]
    wrt: tuple[str, ...] | None = None  # type: ignore[assignment]
    sizes: tuple[Mapping[str, int], ...] = ()
    """Sizes of the hidden examples, cycled; by default all different, drawn from 2..9."""
    examples: tuple[Example, ...] = ()
    valid: Callable[[dict[str, Any]], bool] | None = None
    batch: str = "N"
    """The size that counts examples, named in diagnoses ("scaled by 1/N")."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", MappingProxyType(dict(self.inputs)))
        wrt = self.wrt if self.wrt is not None else tuple(
            name for name, spec in self.inputs.items() if isinstance(spec, Input))
        unknown = [n for n in wrt if not isinstance(self.inputs.get(n), Input)]
        if unknown:
            raise InvalidArgument(f"{self.name}: wrt names {unknown}, which are not Input(...) "
                                  f"inputs; inputs are {list(self.inputs)}")
        object.__setattr__(self, "wrt", tuple(wrt))

    def cases(self, seed: int = 0, hidden: int = 3) -> tuple[Case, ...]:
        """The worked examples, then ``hidden`` random ones drawn from ``seed``."""
        worked = tuple(self._worked(i, ex) for i, ex in enumerate(self.examples))
        count = self.hidden_count if self.hidden_count is not None else hidden
        return worked + tuple(self._hidden(seed, k) for k in range(count))

    def _worked(self, index: int, example: Example) -> Case:
        inputs = {name: _as_input(example.inputs[name], self.inputs[name])
                  for name in self.inputs if name in example.inputs}
        missing = [name for name in self.inputs if name not in example.inputs]
        if missing:
            raise InvalidArgument(f"{self.name}: worked example {index + 1} lacks {missing}")
        label = "the worked example" if len(self.examples) == 1 else f"worked example {index + 1}"
        return self._case(label, inputs, {}, source=example.source, expected=example.expected)

    def _hidden(self, seed: int, k: int) -> Case:
        key = [seed, zlib.crc32(self.name.encode()), k]
        sizes = dict(self.sizes[k % len(self.sizes)]) if self.sizes else _distinct_sizes(
            _names(self.inputs), key)
        rng = np.random.default_rng(key)
        for _ in range(100):
            inputs = {name: spec.draw(rng, sizes) for name, spec in self.inputs.items()}
            if self.valid is None or self.valid(inputs):
                break
        else:
            raise InvalidArgument(f"{self.name}: no valid random inputs in 100 draws for {sizes}")
        described = ", ".join(f"{k} = {v}" for k, v in sizes.items())
        return self._case(f"hidden example {k + 1} ({described})", inputs, sizes, hidden=True,
                          source=f"random example (seed {seed}, {described})")

    def _case(self, label: str, inputs: dict[str, Any], sizes: Mapping[str, int],
              **extra: Any) -> Case:
        for value in inputs.values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        return Case(label, MappingProxyType(inputs), MappingProxyType(dict(sizes)),
                    batch_size=self._batch_size(inputs, sizes), **extra)

    def _batch_size(self, inputs: Mapping[str, Any], sizes: Mapping[str, int]) -> int:
        if self.batch in sizes:
            return int(sizes[self.batch])
        for name, spec in self.inputs.items():  # a worked example: read N off the shapes
            if not isinstance(spec, Fixed) and self.batch in spec.shape:
                return int(np.shape(inputs[name])[spec.shape.index(self.batch)])
        return 1

    def values(self, case: Case) -> Mapping[str, np.ndarray]:
        """The arrays differentiated, by name."""
        return {name: case.inputs[name] for name in self.wrt}  # type: ignore[union-attr]

    def position(self, name: str) -> tuple[int, str | None]:
        """Where input ``name`` is among :meth:`arguments`: (position, None)."""
        return list(self.inputs).index(name), None

    def arguments(self, case: Case, values: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
        """The student's inputs, positionally, in declaration order (fresh copies), with
        ``values`` in place of some of them (a perturbed input)."""
        fresh = {**case.fresh(), **{k: np.array(v) for k, v in (values or {}).items()}}
        return tuple(fresh[name] for name in self.inputs)


def _as_input(value: Any, spec: Spec) -> Any:
    if isinstance(spec, Fixed):
        return copy.deepcopy(value)
    dtype = np.int64 if isinstance(spec, Labels) else np.dtype(spec.dtype)
    return np.array(value, dtype=dtype)


# -- layer ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Layer(_InputsKind):
    """``forward(*inputs) -> (out, cache)``; ``backward(dout, cache) -> grads``.

    The gradients come back as a tuple in the order of :attr:`wrt` (or one array when there
    is one, or a dict by input name). Checked with a random ``dout`` against finite
    differences of ``sum(forward(...)[0] * dout)`` and against the reference.
    """

    forward: str
    backward: str
    kind = "layer"

    @property
    def functions(self) -> tuple[str, ...]:
        return (self.forward, self.backward)

    def gradient_check(self, name: str) -> str:
        return f"{self.backward}: d{name}"

    def forward_call(self, case: Case) -> Call:
        return Call(self.forward, self.arguments(case), store="forward", pick=0)

    def perturbed_call(self, case: Case, values: Mapping[str, np.ndarray]) -> Call:
        return Call(self.forward, self.arguments(case, values), pick=0)

    def backward_call(self, case: Case, dout: np.ndarray | None) -> Call | None:
        return Call(self.backward, (np.array(dout), Ref("forward", 1)))

    def objective(self, out: np.ndarray, dout: np.ndarray | None) -> float:
        return float(np.sum(out * dout))

    def gradients(self, value: Any) -> Any:
        return _named(value, self.wrt)


# -- loss -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Loss(_InputsKind):
    """``function(*inputs) -> (loss, grads)``; grads in the order of :attr:`wrt`."""

    function: str
    kind = "loss"

    @property
    def functions(self) -> tuple[str, ...]:
        return (self.function,)

    @property
    def forward_check(self) -> str:
        return f"{self.function}: loss"

    def gradient_check(self, name: str) -> str:
        return f"{self.function}: d{name}"

    def forward_call(self, case: Case) -> Call:
        # (loss, grads) comes back whole: the gradients arrive with the loss.
        return Call(self.function, self.arguments(case))

    def perturbed_call(self, case: Case, values: Mapping[str, np.ndarray]) -> Call:
        return Call(self.function, self.arguments(case, values), pick=0)

    def backward_call(self, case: Case, dout: np.ndarray | None) -> Call | None:
        return None

    def gradients(self, value: Any) -> Any:
        return _named(value, self.wrt)


def _named(value: Any, names: tuple[str, ...]) -> Any:
    """The student's gradients as a dict by input name, or the value itself when it cannot be."""
    if isinstance(value, Mapping):
        # Accept both "dx" and "x" as the key of x's gradient.
        return {(k[1:] if isinstance(k, str) and k[1:] in names and k not in names else k): v
                for k, v in value.items()}
    if len(names) == 1 and not isinstance(value, (tuple, list)):
        return {names[0]: value}
    if isinstance(value, (tuple, list)) and len(value) == len(names):
        return dict(zip(names, value))
    return value


# -- network --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Network(_InputsKind):
    """``fprop(x, y, params) -> cache`` with ``"loss"``; ``bprop(cache) -> grads``;
    ``update(params, grads, lr) -> params``. The gradients are those of the parameters.

    Declared with :class:`Input` specs for ``x``, ``y`` and each parameter, or made from one of
    the document networks with :meth:`document`.
    """

    inputs: Mapping[str, Spec] = field(default_factory=dict)
    x: Spec | None = None
    y: Spec | None = None
    params: Mapping[str, Spec] = field(default_factory=dict)
    loss: str | None = None
    """"squared", "cross_entropy", "softmax"...: lets the diagnosis name loss factors."""
    lr: float = 0.1
    reference: Any = None
    """A :class:`gradcheck.networks.Network` whose examples are used (the document course)."""
    kind = "network"
    update_function: str | None = "update"

    def __post_init__(self) -> None:
        if self.reference is not None:
            object.__setattr__(self, "wrt", ())
            return
        if self.x is None or self.y is None or not self.params:
            raise InvalidArgument(f"{self.name}: a Network needs x=, y= and params=")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "inputs", {"x": self.x, "y": self.y, **self.params})
        object.__setattr__(self, "wrt", tuple(self.params))
        super().__post_init__()

    @classmethod
    def document(cls, name: str, sizes: Sequence[Mapping[str, Any]] = (), **options: Any) -> Network:
        """One of the six reference networks of :mod:`gradcheck.networks`.

        ``sizes`` (cycled over the hidden examples) replaces the network's own: for ``mlp``,
        ``{"widths": (784, 256, 128, 10), "activations": ("relu", "relu", "sigmoid"),
        "loss": "squared", "m": 64}`` (``m``, the batch size, is optional); for
        ``binary_classifier``, ``{"hidden": 16}``. Other options (``hidden_count``,
        ``rubric``...) are those of every assignment.
        """
        from . import networks

        net = networks.get(name)
        # A wrong size is the instructor's error: say so when the course loads. The rubric
        # gives each parameter its share, so every example must have the same parameters.
        names = {tuple(net.param_shapes(**{k: v for k, v in c.items() if k != "m"})) for c in sizes}
        if len(names) > 1:
            raise InvalidArgument(f"{name}: the sizes give different parameters "
                                  f"({' / '.join(', '.join(n) for n in sorted(names))}); every "
                                  "example of an assignment needs the same depth")
        loss = net.architecture(**{k: v for k, v in sizes[0].items() if k != "m"}).loss \
            if sizes else net.default.loss
        return cls(name=name, title=net.title, notation=net.notation, reference=net,
                   loss=loss, sizes=tuple(MappingProxyType(dict(c)) for c in sizes), **options)

    def param_names(self) -> list[str]:
        """The parameters of a document network with this assignment's first sizes."""
        first = {k: v for k, v in (self.sizes[0] if self.sizes else {}).items() if k != "m"}
        return list(self.reference.param_shapes(**first))

    @property
    def functions(self) -> tuple[str, ...]:
        return ("fprop", "bprop", "update")

    def cases(self, seed: int = 0, hidden: int = 3) -> tuple[Case, ...]:
        if self.reference is None:
            return tuple(replace(case, lr=self.lr) for case in super().cases(seed, hidden))
        count = self.hidden_count if self.hidden_count is not None else hidden
        return tuple(_document_case(label, example)
                     for label, example in self.reference.grading_examples(seed, count, self.sizes))

    def split(self, case: Case) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
        """Fresh (x, y, params, fprop's keyword options) of a case."""
        fresh = case.fresh()
        if case.detail is not None:
            return fresh["x"], fresh["y"], dict(fresh["params"]), dict(case.detail.options)
        return fresh["x"], fresh["y"], {name: fresh[name] for name in self.params}, {}

    def values(self, case: Case) -> Mapping[str, np.ndarray]:
        """The arrays differentiated: the parameters."""
        if case.detail is not None:
            return case.inputs["params"]
        return {name: case.inputs[name] for name in self.params}

    def position(self, name: str) -> tuple[int, str | None]:
        """Parameter ``name`` is an entry of fprop's third argument."""
        return 2, name

    def forward_call(self, case: Case) -> Call:
        x, y, params, options = self.split(case)
        return Call("fprop", (x, y, params), options, store="cache", pick="loss")

    def perturbed_call(self, case: Case, values: Mapping[str, np.ndarray]) -> Call:
        x, y, _, options = self.split(case)
        return Call("fprop", (x, y, {k: v.copy() for k, v in values.items()}), options,
                    pick="loss")

    def backward_call(self, case: Case, dout: np.ndarray | None) -> Call | None:
        return Call("bprop", (Ref("cache"),))

    def gradients(self, value: Any) -> Any:
        return value


def _document_case(label: str, example: Any) -> Case:
    inputs = {"x": example.x, "y": example.y, "params": example.params}
    return Case(label, MappingProxyType(inputs), batch_size=example.batch_size, lr=example.lr,
                source=example.source, expected=example.expected,
                hidden=label.startswith("hidden"), detail=example)


Assignment = Network | Layer | Loss
"""One assignment of a course: a network, a layer or a loss."""
