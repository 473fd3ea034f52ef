"""Hypothesis strategies for the reference networks.

Shapes (batch size, hidden sizes, depth) are drawn by hypothesis and shrink towards the
smallest failing network; values come from a numpy generator seeded by a drawn integer,
so they stay well conditioned (no saturated sigmoid, no ReLU input near 0) while shrinking.

Example:
    >>> from hypothesis import given, settings
    >>> from gradcheck import strategies, networks
    >>> sol = networks.get("binary_classifier").solution()
    >>> @settings(max_examples=5, deadline=None)
    ... @given(strategies.examples("binary_classifier"))
    ... def test_bprop(example):
    ...     cache = sol.fprop(example.x, example.y, example.params)
    ...     assert set(sol.bprop(cache)) == set(example.params)
    >>> test_bprop()
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import strategies as st

from . import networks
from .networks import ACTIVATIONS, Example

__all__ = ["examples", "mlp_sizes", "params_for", "batch_sizes", "gradient_check"]


def batch_sizes(min_value: int = 1, max_value: int = 8) -> st.SearchStrategy[int]:
    """Batch sizes m; shrinks towards ``min_value``."""
    return st.integers(min_value=min_value, max_value=max_value)


def mlp_sizes(
    *, max_depth: int = 4, max_width: int = 6, activations: tuple[str, ...] = ACTIVATIONS,
    losses: tuple[str, ...] = ("squared", "cross_entropy"),
) -> st.SearchStrategy[dict[str, object]]:
    """Sizes for ``mlp``: widths, one activation per layer, and a loss."""

    @st.composite
    def draw(draw_: Callable) -> dict[str, object]:  # type: ignore[type-arg]
        depth = draw_(st.integers(1, max_depth))
        widths = tuple(draw_(st.lists(st.integers(1, max_width), min_size=depth + 1, max_size=depth + 1)))
        loss = draw_(st.sampled_from(losses))
        hidden = tuple(draw_(st.lists(st.sampled_from(activations), min_size=depth - 1, max_size=depth - 1)))
        output = "sigmoid" if loss == "cross_entropy" else draw_(st.sampled_from(activations))
        return {"widths": widths, "activations": hidden + (output,), "loss": loss}

    return draw()


def examples(
    name: str, *, batch: st.SearchStrategy[int] | None = None, max_hidden: int = 6, **sizes: object
) -> st.SearchStrategy[Example]:
    """Valid examples of network ``name``: any batch size, and any sizes it allows.

    Args:
        name: one of :data:`gradcheck.networks.NAMES`.
        batch: strategy for the batch size (default 1 to 8).
        max_hidden: largest hidden size drawn for binary_classifier.
        **sizes: fix some sizes instead of drawing them (e.g. ``hidden=3``).
    """
    network = networks.get(name)
    batch = batch or batch_sizes()
    if name == "binary_classifier" and "hidden" not in sizes:
        drawn = st.fixed_dictionaries({"hidden": st.integers(1, max_hidden)})
    elif name == "mlp" and not sizes:
        drawn = mlp_sizes()
    else:
        drawn = st.just(dict(sizes))
    return st.builds(
        lambda m, size, seed: network.random_example(np.random.default_rng(seed), m, **size),
        batch, drawn, st.integers(0, 2**32 - 1),
    )


def params_for(
    shapes: dict[str, tuple[int, ...]], *, scale: float = 1.0, dtype: type = np.float64
) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """Parameter dicts of the given shapes, values uniform in [-scale, scale] (well conditioned)."""
    return st.integers(0, 2**32 - 1).map(
        lambda seed: {
            key: np.random.default_rng([seed, index]).uniform(-scale, scale, size=shape).astype(dtype)
            for index, (key, shape) in enumerate(shapes.items())
        }
    )


def gradient_check(name: str, **sizes: object) -> st.SearchStrategy[Example]:
    """Examples for a ``@given`` test of a student's bprop; alias of :func:`examples`."""
    return examples(name, **sizes)
