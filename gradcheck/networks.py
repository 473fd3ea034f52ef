"""The six reference networks: five tutorial documents and their generalisation.

Each network keeps its document's conventions (row or column vectors, biases or not,
loss) and knows how to draw valid examples of any batch size. The reference answers come
from the worked solutions in ``solutions/NAME.py``, loaded by :meth:`Network.solution`.

Example:
    >>> import numpy as np
    >>> from gradcheck import networks
    >>> net = networks.get("three_node")
    >>> example = net.worked_examples[0]
    >>> round(float(net.solution().fprop(example.x, example.y, example.params)["loss"]), 8)
    0.30611383
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Literal

import numpy as np

from .errors import InvalidArgument

__all__ = [
    "Architecture",
    "Example",
    "Network",
    "NAMES",
    "DOCUMENT_NAMES",
    "ACTIVATIONS",
    "LOSSES",
    "get",
    "all_networks",
    "solutions_dir",
]

Layout = Literal["rows", "columns"]
ACTIVATIONS: tuple[str, ...] = ("sigmoid", "tanh", "relu", "identity")
LOSSES: tuple[str, ...] = ("squared", "cross_entropy")


@dataclass(frozen=True)
class Architecture:
    """A fully connected network, enough to derive parameter shapes and examples."""

    widths: tuple[int, ...]
    """Units per layer, input first: (n_0, n_1, ..., n_L)."""
    activations: tuple[str, ...]
    """One activation per layer after the input."""
    loss: str = "squared"
    bias: bool = True
    layout: Layout = "columns"
    """'columns': x is (n_0, m) and W_l is (n_l, n_{l-1}); 'rows': x is (m, n_0) and W_l is (n_{l-1}, n_l)."""

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names and shapes of the parameters, in the order the layers use them."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer, (n_in, n_out) in enumerate(zip(self.widths, self.widths[1:]), start=1):
            shapes[f"W{layer}"] = (n_out, n_in) if self.layout == "columns" else (n_in, n_out)
            if self.bias:
                shapes[f"b{layer}"] = (n_out, 1) if self.layout == "columns" else (1, n_out)
        return shapes

    def data_shapes(self, m: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Shapes of x and y for a batch of ``m`` examples."""
        n_in, n_out = self.widths[0], self.widths[-1]
        if self.layout == "columns":
            return (n_in, m), (n_out, m)
        return (m, n_in), (m, n_out)

    def preactivations(self, x: np.ndarray, params: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """z_l of every layer, used to keep examples away from ReLU kinks and to diagnose."""
        a, zs = x, []
        for layer, activation in enumerate(self.activations, start=1):
            w = params[f"W{layer}"]
            z = w @ a if self.layout == "columns" else a @ w
            if self.bias:
                z = z + params[f"b{layer}"]
            zs.append(z)
            a = _ACTIVATE[activation](z)
        return zs


@dataclass(frozen=True)
class Example:
    """One input to ``fprop``/``bprop``/``update``, with where its numbers come from."""

    x: np.ndarray
    y: np.ndarray
    params: Mapping[str, np.ndarray]
    lr: float = 0.5
    options: Mapping[str, object] = field(default_factory=dict)
    """Extra keyword arguments for ``fprop`` (only ``mlp`` has any: activations, loss)."""
    source: str = ""
    """Where the numbers come from (document, figure, or the seed that drew them)."""
    expected: Mapping[str, object] = field(default_factory=dict)
    """Values published for this example (loss, gradients), to reproduce."""
    layout: Layout = "columns"
    """'columns' (x is (n0, m)) or 'rows' (x is (m, n0)), as the network's document."""

    @property
    def batch_size(self) -> int:
        """m, the number of examples in the batch."""
        return int(self.y.shape[1] if self.layout == "columns" else self.y.shape[0])

    def fresh(self) -> Example:
        """A deep copy, so that code under test can mutate its inputs without harm."""
        return replace(
            self,
            x=self.x.copy(),
            y=self.y.copy(),
            params={key: value.copy() for key, value in self.params.items()},
        )


@dataclass(frozen=True)
class Network:
    """A reference network: its document, conventions, parameters and examples."""

    name: str
    document: str
    """File name of the source document in ``shared/seeds``."""
    title: str
    summary: str
    """One line: architecture, layout, loss."""
    notation: str
    """The forward pass and loss in the document's own notation (markdown)."""
    default: Architecture
    sizes: Mapping[str, object] = field(default_factory=dict)
    """The sizes that may vary and their defaults (``hidden`` for binary_classifier)."""
    worked_examples: tuple[Example, ...] = ()
    published: Mapping[str, str] = field(default_factory=dict)
    """Facts the document states that cannot be turned into an example, with why."""

    def architecture(self, **sizes: object) -> Architecture:
        """The architecture for the given sizes (see :attr:`sizes`)."""
        unknown = set(sizes) - set(self.sizes)
        if unknown:
            allowed = ", ".join(self.sizes) or "none"
            raise InvalidArgument(
                f"{self.name} has no size {', '.join(sorted(unknown))}; it takes: {allowed}"
            )
        if self.name == "binary_classifier":
            hidden = int(sizes.get("hidden", 2))  # type: ignore[call-overload]
            return replace(self.default, widths=(2, hidden, 1))
        if self.name == "mlp":
            widths = tuple(sizes.get("widths", self.default.widths))  # type: ignore[arg-type]
            activations = sizes.get("activations") or ("sigmoid",) * (len(widths) - 1)
            loss = str(sizes.get("loss", self.default.loss))
            return _mlp_architecture(widths, tuple(activations), loss)  # type: ignore[arg-type]
        return self.default

    def param_shapes(self, **sizes: object) -> dict[str, tuple[int, ...]]:
        """Parameter names and shapes, e.g. ``{"W1": (2, 2), "W2": (2, 1)}``."""
        return self.architecture(**sizes).param_shapes()

    def fprop_options(self, architecture: Architecture) -> dict[str, object]:
        """Keyword arguments ``fprop`` needs beyond (x, y, params): only ``mlp`` has any."""
        if self.name != "mlp":
            return {}
        return {"activations": architecture.activations, "loss": architecture.loss}

    def random_example(
        self, rng: np.random.Generator, m: int = 4, *, lr: float = 0.1, **sizes: object
    ) -> Example:
        """Draw a well-conditioned example: no saturated sigmoid, no ReLU input near 0.

        Args:
            rng: the generator to draw from (gradcheck never touches ``np.random``'s state).
            m: batch size, >= 1.
            lr: learning rate for ``update``.
            **sizes: see :attr:`sizes`.
        """
        if m < 1:
            raise InvalidArgument(f"batch size must be at least 1, got m={m}")
        architecture = self.architecture(**sizes)
        for _ in range(100):
            example = _draw(architecture, rng, m)
            if _away_from_kinks(architecture, example):
                break
        return Example(
            x=example[0],
            y=example[1],
            params=example[2],
            lr=lr,
            options=self.fprop_options(architecture),
            source=f"random example of {self.name} (m={m}{_describe(sizes)})",
            layout=architecture.layout,
        )

    def grading_examples(self, seed: int, count: int = 3,
                         sizes: Sequence[Mapping[str, object]] = ()) -> list[tuple[str, Example]]:
        """The worked example(s) and ``count`` hidden ones, the same for every student.

        Batch sizes are above 1 and differ from every layer width, and hidden layers differ
        from the input width, so no matrix in the check is square by accident. ``sizes``
        (cycled) replaces the built-in sizes of the hidden examples: a course's mlp with
        ``{"widths": (784, 256, 10), "activations": ("relu", "sigmoid"), "m": 64}``.
        """
        labelled = [("the document's worked example" if i == 0 else f"worked example {i + 1}", ex)
                    for i, ex in enumerate(self.worked_examples)]
        index = NAMES.index(self.name) if self.name in NAMES else 99
        for k in range(count):
            rng = np.random.default_rng([seed, index, k])
            config = dict(sizes[k % len(sizes)]) if sizes else self._hidden_sizes(k)
            batch = config.pop("m", None)
            widths = self.architecture(**config).widths
            candidates = [m for m in range(3, 16) if m not in widths]
            m = int(batch) if batch is not None else candidates[k % len(candidates)]  # type: ignore[call-overload]
            labelled.append((f"hidden example {k + 1} (batch of {m})",
                             self.random_example(rng, m, lr=0.1, **config)))
        return labelled

    def _hidden_sizes(self, k: int) -> dict[str, object]:
        if self.name == "binary_classifier":
            return {"hidden": (3, 4, 5)[k % 3]}
        if self.name == "mlp":
            configs = (
                {"widths": (3, 4, 2), "activations": ("tanh", "sigmoid"), "loss": "squared"},
                {"widths": (4, 6, 3, 1), "activations": ("relu", "tanh", "sigmoid"),
                 "loss": "cross_entropy"},
                {"widths": (2, 5, 3), "activations": ("sigmoid", "identity"), "loss": "squared"},
            )
            return dict(configs[k % len(configs)])
        return {}

    def solution(self) -> ModuleType:
        """The worked solution ``solutions/NAME.py`` as a module (the reference answers)."""
        return load_solution(self.name)


def _mlp_architecture(widths: tuple[int, ...], activations: tuple[str, ...], loss: str) -> Architecture:
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise InvalidArgument(f"mlp widths must be at least two positive sizes, got {widths}")
    if len(activations) != len(widths) - 1:
        raise InvalidArgument(
            f"mlp needs one activation per layer: {len(widths) - 1} for widths {widths}, "
            f"got {len(activations)}"
        )
    bad = [a for a in activations if a not in ACTIVATIONS]
    if bad or loss not in LOSSES:
        raise InvalidArgument(
            f"mlp activations must be among {ACTIVATIONS} and loss among {LOSSES}; "
            f"got activations={activations}, loss={loss!r}"
        )
    if loss == "cross_entropy" and activations[-1] != "sigmoid":
        raise InvalidArgument("binary cross-entropy needs a sigmoid output layer")
    return Architecture(tuple(int(w) for w in widths), activations, loss, bias=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


_ACTIVATE = {
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "identity": lambda z: z,
}

# How far a pre-activation must stay from 0 so that central differences with steps up to
# 1e-3 (float32) never cross a ReLU kink in a random example.
_KINK_MARGIN = 1e-2


def _draw(
    architecture: Architecture, rng: np.random.Generator, m: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    x_shape, y_shape = architecture.data_shapes(m)
    x = rng.uniform(-1.0, 1.0, size=x_shape)
    if architecture.loss == "cross_entropy":
        y = rng.integers(0, 2, size=y_shape).astype(float)
    else:
        y = rng.uniform(0.05, 0.95, size=y_shape)
    params = {}
    for name, shape in architecture.param_shapes().items():
        fan_in = shape[1] if architecture.layout == "columns" else shape[0]
        # Scale so that pre-activations stay O(1): sigmoids neither saturate nor vanish.
        scale = 1.0 if name.startswith("b") else 1.5 / np.sqrt(fan_in)
        params[name] = rng.uniform(-scale, scale, size=shape)
    return x, y, params


def _away_from_kinks(
    architecture: Architecture, example: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]
) -> bool:
    if "relu" not in architecture.activations:
        return True
    zs = architecture.preactivations(example[0], example[2])
    return all(
        np.all(np.abs(z) > _KINK_MARGIN)
        for z, activation in zip(zs, architecture.activations)
        if activation == "relu"
    )


def _describe(sizes: Mapping[str, object]) -> str:
    return "".join(f", {key}={value}" for key, value in sizes.items())


# -- solutions -------------------------------------------------------------------------


def solutions_dir() -> Path:
    """Where the document course's reference solutions are read from.

    ``$GRADCHECK_COURSE`` (or ``$GRADCHECK_SOLUTIONS``) if set, else ``solutions/`` of the
    source checkout. The installed package carries no reference solutions.
    """
    from .courses import default_course_folder

    return default_course_folder()


@functools.cache
def load_solution(name: str) -> ModuleType:
    """Import ``solutions/NAME.py`` under a private module name."""
    path = solutions_dir() / f"{name}.py"
    if not path.is_file():
        raise InvalidArgument(f"no reference solution for {name!r} at {path}")
    spec = importlib.util.spec_from_file_location(f"gradcheck._reference.{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the six networks -------------------------------------------------------------------


def _arrays(**values: object) -> dict[str, np.ndarray]:
    return {key: np.array(value, dtype=float) for key, value in values.items()}


_THREE_NODE_EXAMPLE = Example(
    x=np.array([[8.0, -4.0]]),
    y=np.array([[1.0]]),
    params=_arrays(W1=[[0.3, -0.1], [0.8, -0.5]], W2=[[0.7], [-0.6]]),
    lr=0.5,
    layout="rows",
    source="document 000, figures 1-2 of its repository (x = [8, -4], y = 1, learning rate 0.5)",
    expected=MappingProxyType(
        {
            "h": np.array([[-0.8, 1.2]]),
            "yhat": 0.2175502,
            "loss": 0.30611383,
            "grads": _arrays(
                W1=[[-0.74586547, 0.63931326], [0.37293274, -0.31965663]],
                W2=[[0.10655221], [-0.15982832]],
            ),
            # The document's own backward pass: sigmoid derivative applied twice, h*W2
            # instead of h, no W2 factor for the hidden weights; its W2 gradients are wrong.
            "document_grads": _arrays(W2=[[-0.01736], [0.02604]]),
            "document_new_weights": "0.664, -0.647, 0.23, 0.83, 0.00, -0.55",
        }
    ),
)


def _seeded(architecture: Architecture, seed: int, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _draw(architecture, rng, x.shape[1] if architecture.layout == "columns" else x.shape[0])[2]


_BATCH_SIGMOID = Architecture((2, 3, 1), ("sigmoid", "sigmoid"), bias=False, layout="rows")
_BATCH_X = np.array([[3.0, 5.0], [5.0, 1.0], [10.0, 2.0]])
_BATCH_EXAMPLE = Example(
    x=_BATCH_X / _BATCH_X.max(axis=0),
    y=np.array([[75.0], [82.0], [93.0]]) / 100.0,
    params=_seeded(_BATCH_SIGMOID, 1, _BATCH_X, np.zeros((3, 1))),
    lr=0.5,
    layout="rows",
    source=(
        "document 001: X = [[3, 5], [5, 1], [10, 2]] (hours of sleep, hours of study) divided "
        "by each column's maximum, y = [75, 82, 93] / 100; its weights are random and "
        "unpublished, so these are drawn with seed 1"
    ),
)

_TWO_HIDDEN = Architecture((2, 2, 2, 1), ("sigmoid",) * 3, bias=True)
_TWO_HIDDEN_X = np.array([[0.4], [-0.7]])
_TWO_HIDDEN_EXAMPLE = Example(
    x=_TWO_HIDDEN_X,
    y=np.array([[1.0]]),
    params=_seeded(_TWO_HIDDEN, 2, _TWO_HIDDEN_X, np.zeros((1, 1))),
    lr=0.5,
    source=(
        "document 002's network with one example; its weights, biases and inputs are only in "
        "figures that are not available, so these are drawn with seed 2"
    ),
)

_BINARY = Architecture((2, 2, 1), ("sigmoid", "sigmoid"), loss="cross_entropy", bias=True)
_BINARY_X = np.array([[0.55], [0.72]])
_BINARY_EXAMPLE = Example(
    x=_BINARY_X,
    y=np.array([[1.0]]),
    params=_seeded(_BINARY, 3, _BINARY_X, np.zeros((1, 1))),
    lr=0.5,
    source=(
        "document 003's gradient-checking setup: H = 2, one example x of shape (2, 1), "
        "y in {0, 1}; the document draws unseeded random parameters, these use seed 3"
    ),
)

_THREE_INPUT = Architecture((3, 2, 1), ("sigmoid", "sigmoid"), bias=False)
_THREE_INPUT_EXAMPLE = Example(
    x=np.array([[0.5], [-0.2], [0.9]]),
    y=np.array([[1.0]]),
    params={
        "W1": _seeded(_THREE_INPUT, 4, np.zeros((3, 1)), np.zeros((1, 1)))["W1"],
        "W2": np.zeros((1, 2)),
    },
    lr=0.5,
    source=(
        "document 004: 'a single output neuron of 0.5' against 'a target value of 1.0'; "
        "W2 = 0 makes the output exactly sigmoid(0) = 0.5 whatever W1 (drawn with seed 4)"
    ),
    expected=MappingProxyType({"a2": 0.5, "loss": 0.125}),
)

_NETWORKS: dict[str, Network] = {
    net.name: net
    for net in (
        Network(
            name="three_node",
            document="000_68115e8b285fc10b.txt",
            title="Understanding Neural Nets Forwards and Backwards (B. S. Knight, 2017)",
            summary="2 -> 2 (linear) -> 1 (sigmoid), no biases, row vectors, squared loss",
            notation=(
                "Rows: one example per row of `x` (m, 2).\n\n"
                "    h    = x @ W1            # hidden layer, no activation\n"
                "    o    = h @ W2\n"
                "    yhat = sigma(o)\n"
                "    loss = 0.5 * sum((y - yhat)**2)\n"
            ),
            default=Architecture((2, 2, 1), ("identity", "sigmoid"), bias=False, layout="rows"),
            worked_examples=(_THREE_NODE_EXAMPLE,),
        ),
        Network(
            name="batch_sigmoid",
            document="001_b55cf747a298e8ab.txt",
            title="Neural Networks II: First Contact (in the style of 'Neural Networks Demystified')",
            summary="2 -> 3 -> 1, sigmoid both, no biases, row vectors, squared loss",
            notation=(
                "Rows: one example per row of `X` (m, 2).\n\n"
                "    z2   = X @ W1;   a2   = sigma(z2)\n"
                "    z3   = a2 @ W2;  yHat = sigma(z3)\n"
                "    J    = 0.5 * sum((y - yHat)**2)\n"
            ),
            default=_BATCH_SIGMOID,
            worked_examples=(_BATCH_EXAMPLE,),
        ),
        Network(
            name="two_hidden",
            document="002_1202722be9f6adaa.txt",
            title="A Closer Look Into The Math Behind Gradient Descent",
            summary="2 -> 2 -> 2 -> 1, sigmoid everywhere, biases, column vectors, squared loss",
            notation=(
                "Columns: one example per column of `x` (2, m); l = 1, 2, 3.\n\n"
                "    z[l] = W[l] @ a[l-1] + b[l];   a[l] = sigma(z[l]);   a[0] = x\n"
                "    loss = 0.5 * sum((y - a[3])**2)\n"
            ),
            default=_TWO_HIDDEN,
            worked_examples=(_TWO_HIDDEN_EXAMPLE,),
            published=MappingProxyType(
                {
                    "output": (
                        "the document's forward pass ends at 0.85049311458; the weights, "
                        "biases and inputs that give it are only in figures that are not "
                        "available, so the number cannot be reproduced (and is not invented)"
                    )
                }
            ),
        ),
        Network(
            name="binary_classifier",
            document="003_72ef7410ac7c117b.txt",
            title="Overview of Steps for Neural Networks (binary classification, one hidden layer)",
            summary="2 -> H -> 1, sigmoid both, biases, column vectors, binary cross-entropy",
            notation=(
                "Columns: one example per column of `x` (2, m); y in {0, 1}.\n\n"
                "    z1 = W1 @ x + b1;   a1 = sigma(z1)\n"
                "    z2 = W2 @ a1 + b2;  a2 = sigma(z2)\n"
                "    loss = -sum(y * log(a2) + (1 - y) * log(1 - a2))\n"
            ),
            default=_BINARY,
            sizes=MappingProxyType({"hidden": 2}),
            worked_examples=(_BINARY_EXAMPLE,),
        ),
        Network(
            name="three_input",
            document="004_376abcda69662658.txt",
            title="The Journey of Backpropagation in Neural Networks",
            summary="3 -> 2 -> 1, sigmoid both, no biases, column vectors, squared loss",
            notation=(
                "Columns: one example per column of `x` (3, m).\n\n"
                "    z1 = W1 @ x;   a1 = sigma(z1)        # w1..w6\n"
                "    z2 = W2 @ a1;  a2 = sigma(z2)        # w7, w8\n"
                "    loss = 0.5 * sum((y - a2)**2)\n"
            ),
            default=_THREE_INPUT,
            worked_examples=(_THREE_INPUT_EXAMPLE,),
        ),
        Network(
            name="mlp",
            document="all five, generalised",
            title="A multilayer perceptron of any depth",
            summary=(
                "any depth and widths, activation per layer in {sigmoid, tanh, relu, identity}, "
                "biases, column vectors, squared or binary cross-entropy loss"
            ),
            notation=(
                "Columns: one example per column of `x` (n0, m); l = 1..L.\n\n"
                "    z[l] = W[l] @ a[l-1] + b[l];   a[l] = g[l](z[l]);   a[0] = x\n"
                "    loss = 0.5 * sum((y - a[L])**2)                       # loss='squared'\n"
                "    loss = -sum(y * log(a[L]) + (1 - y) * log(1 - a[L]))  # loss='cross_entropy'\n\n"
                "`fprop(x, y, params, activations=..., loss=...)` receives the configuration as "
                "keyword arguments (default: sigmoid everywhere, squared loss).\n"
            ),
            default=Architecture((3, 4, 2), ("sigmoid", "sigmoid"), bias=True),
            sizes=MappingProxyType({"widths": (3, 4, 2), "activations": None, "loss": "squared"}),
        ),
    )
}

NAMES: tuple[str, ...] = tuple(_NETWORKS)
"""All six assignment names, in contract order."""
DOCUMENT_NAMES: tuple[str, ...] = NAMES[:5]
"""The five networks taken from one document each (``mlp`` is their generalisation)."""


def get(name: str) -> Network:
    """The reference network called ``name`` (one of :data:`NAMES`).

    Raises:
        InvalidArgument: no such network; the message lists the names.
    """
    try:
        return _NETWORKS[name]
    except KeyError:
        raise InvalidArgument(
            f"no reference network {name!r}; choose one of {', '.join(NAMES)}"
        ) from None


def all_networks() -> tuple[Network, ...]:
    """The six reference networks, in contract order."""
    return tuple(_NETWORKS.values())
