"""Evidence that needs more than one call: batch sizes, repeated calls, mutated inputs.

The grader runs the student's code (in its sandbox) and hands the results here; nothing
in this module calls student code except :func:`smallest_failing_example`, which calls
the predicate it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..networks import Architecture, Example, Network
from ..tolerances import Tolerance
from . import sentences
from .core import diagnose_gradients, fit
from .model import Diagnosis

__all__ = [
    "changes",
    "diagnose_batch_sizes",
    "diagnose_repeated_calls",
    "smallest_failing_example",
    "snapshot",
]

# A diagnosis at m > 1 that already names the batch as the culprit is kept as it is.
_BATCH_CAUSES = frozenset({"bias_not_summed", "bias_wrong_axis", "flattened"})


def diagnose_batch_sizes(
    analytic_one: Mapping[str, object] | BaseException | None,
    reference_one: Mapping[str, np.ndarray],
    analytic_many: Mapping[str, object] | BaseException | None,
    reference_many: Mapping[str, np.ndarray],
    *,
    network: Network | Architecture | None = None,
    example_many: Example | None = None,
    batch_size: int | None = None,
    tolerance: Tolerance | None = None,
    loss: str | None = None,
    functions: tuple[str, str] = ("fprop", "bprop"),
    dims: Mapping[str, int] | None = None,
) -> dict[str, Diagnosis]:
    """Diagnose the m > 1 run, naming parameters that are right only for one example.

    Args:
        analytic_one, reference_one: the student's and the reference gradients at m = 1.
        analytic_many, reference_many: the same at a batch size m > 1.
        network, example_many: passed on to :func:`diagnose_gradients` for the m > 1 run.
        batch_size: m of the second run (default: from ``example_many``).
        tolerance: when gradients count as equal.
        loss, functions, dims: for the sentences, as in :func:`diagnose_gradients`.

    Returns:
        ``{parameter: Diagnosis}`` for every parameter wrong at m > 1: ``batch_size_one``
        when it was right at m = 1 and no more specific batch cause (a factor m or 1/m,
        an unsummed bias) fits.

    Example:
        >>> import numpy as np
        >>> one, many = {"W": np.ones((2, 2))}, {"W": np.arange(4.0).reshape(2, 2)}
        >>> wrong = {"W": np.array([[0.0, 1.0], [2.0, 2.5]])}
        >>> diagnose_batch_sizes(one, one, wrong, many, batch_size=3)["W"].cause
        'batch_size_one'
    """
    at_one = diagnose_gradients(
        analytic_one,
        reference_one,
        tolerance=tolerance,
        loss=loss,
        functions=functions,
        dims=dims,
    )
    at_many = diagnose_gradients(
        analytic_many,
        reference_many,
        network=network,
        example=example_many,
        batch_size=batch_size,
        tolerance=tolerance,
        loss=loss,
        functions=functions,
        dims=dims,
    )
    m = batch_size or (
        example_many.batch_size
        if example_many is not None and hasattr(example_many, "batch_size")
        else 0
    )
    wording = sentences.Wording(gradient_keys=sentences.keyed_by_gradients(reference_many))
    result = {}
    for name, diagnosis in at_many.items():
        if name in at_one or _names_the_batch(diagnosis):
            result[name] = diagnosis
        else:
            result[name] = sentences.batch_size_one(name, int(m), diagnosis.evidence, wording)
    return result


def _names_the_batch(diagnosis: Diagnosis) -> bool:
    factor = diagnosis.evidence.get("factor_name")
    return diagnosis.cause in _BATCH_CAUSES or factor in ("m", "1/m")


def diagnose_repeated_calls(
    first: Mapping[str, object],
    second: Mapping[str, object],
    *,
    before: Mapping[str, object] | None = None,
    after: Mapping[str, object] | None = None,
    who: str = "bprop",
) -> dict[str, Diagnosis]:
    """Diagnose a function that changes its inputs, or whose two calls disagree.

    Args:
        first, second: the gradients of two calls on the same inputs.
        before, after: :func:`snapshot` of the inputs (e.g. ``{"x": x, "params": params,
            "cache": cache}``) taken before and after the calls.
        who: the function that ran between the snapshots, for the sentence.

    Returns:
        ``{parameter: Diagnosis}``: ``mutates_inputs`` for every parameter when an input
        changed, else ``stale_cache`` for each parameter whose two results differ.

    Example:
        >>> import numpy as np
        >>> diagnose_repeated_calls({"W": np.ones(2)}, {"W": np.zeros(2)})["W"].cause
        'stale_cache'
    """
    wording = sentences.Wording(gradient_keys=sentences.keyed_by_gradients(first))
    changed = changes(before or {}, after or {})
    if changed:
        return {name: sentences.mutates_inputs(name, who, changed[0], wording) for name in first}
    result = {}
    for name, value in first.items():
        other = second.get(name) if isinstance(second, Mapping) else None
        a, b = np.asarray(value, dtype=np.float64), np.asarray(other, dtype=np.float64)
        if a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            evidence = fit(a, b) if a.shape == b.shape else {}
            result[name] = sentences.stale_cache(name, evidence, who, wording)
    return result


def snapshot(value: Any) -> Any:
    """A deep copy of dicts, lists and arrays, to compare with :func:`changes` later."""
    if isinstance(value, Mapping):
        return {key: snapshot(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(item) for item in value)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def changes(before: Any, after: Any, where: str = "") -> list[str]:
    """Paths such as ``cache['a2']`` of the arrays that differ between two snapshots."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        found = []
        for key in before:
            path = f"{where}[{key!r}]" if where else str(key)
            found += changes(before[key], after.get(key), path)
        return found
    if isinstance(before, (list, tuple)) and isinstance(after, (list, tuple)):
        return [
            path
            for i, (b, a) in enumerate(zip(before, after))
            for path in changes(b, a, f"{where}[{i}]")
        ]
    if isinstance(before, np.ndarray):
        same = (
            isinstance(after, np.ndarray)
            and before.shape == after.shape
            and np.array_equal(before, after, equal_nan=True)
        )
        return [] if same else [where]
    return []


def smallest_failing_example(
    name: str, fails: Callable[[Example], bool], *, max_examples: int = 50, **sizes: object
) -> Example | None:
    """The smallest example (batch size, hidden sizes) on which ``fails`` is true, or None.

    Hypothesis draws examples of network ``name`` and shrinks a failing one towards the
    smallest batch and network, so a shape-dependent bug is reported at, e.g., m = 2.

    Example:
        >>> ex = smallest_failing_example("three_input", lambda e: e.x.shape[1] > 1)
        >>> ex.x.shape[1]
        2
    """
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample

    from ..strategies import examples

    options = settings(
        max_examples=max_examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    try:
        return find(examples(name, **sizes), fails, settings=options)  # type: ignore[arg-type]
    except NoSuchExample:
        return None
