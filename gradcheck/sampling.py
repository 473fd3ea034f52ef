"""Which entries of large parameters are checked, and the comparison on those entries only.

The full check of a million entries takes two million loss calls: parameters larger than
:data:`AUTO_SAMPLE_ABOVE` entries are checked on a seeded sample of
:data:`AUTO_SAMPLE_SIZE` (``max_entries`` chooses the number, ``"all"`` checks every
entry). The fast check uses the same sampling for a failing parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from .comparison import STRUCTURAL, Bracket, ParameterReport, compare_parameter
from .errors import InvalidArgument
from .tolerances import Tolerance

__all__ = [
    "AUTO_SAMPLE_ABOVE",
    "AUTO_SAMPLE_SIZE",
    "compare_sampled",
    "default_sample",
    "on_entries",
    "restrict_to_entries",
    "sample_entries",
    "sampling_notes",
]

AUTO_SAMPLE_ABOVE = 10_000
AUTO_SAMPLE_SIZE = 1_000


def sample_entries(params: Mapping[str, np.ndarray], max_entries: int, seed: int = 0,
                   *, index: int | None = None) -> dict[str, np.ndarray]:
    """A seeded sample of ``max_entries`` flat indices for every parameter larger than that.

    Every parameter counts, biases included; smaller parameters are left out (checked in
    full). ``index`` fixes the parameter's position when sampling one parameter alone.

    Example:
        >>> sample = sample_entries({"W": np.zeros((100, 50)), "b": np.zeros((10, 1))}, 20, seed=1)
        >>> sorted(sample), sample["W"].size
        (['W'], 20)
    """
    if max_entries < 1:
        raise InvalidArgument(f"max_entries must be at least 1, got {max_entries}")
    chosen = {}
    for position, (key, value) in enumerate(params.items()):
        if value.size > max_entries:
            rng = np.random.default_rng([seed, 1, position if index is None else index])
            chosen[key] = np.sort(rng.choice(value.size, size=max_entries, replace=False))
    return chosen


def default_sample(params: Mapping[str, np.ndarray], max_entries: int | str | None,
                   seed: int) -> dict[str, np.ndarray]:
    """The full check's entries: ``max_entries`` as given, or only the very large parameters."""
    if max_entries == "all":
        return {}
    if max_entries is not None:
        return sample_entries(params, int(max_entries), seed)
    chosen: dict[str, np.ndarray] = {}
    for position, (key, value) in enumerate(params.items()):
        if value.size > AUTO_SAMPLE_ABOVE:
            chosen.update(sample_entries({key: value}, AUTO_SAMPLE_SIZE, seed, index=position))
    return chosen


def compare_sampled(name: str, value: object, numerical: np.ndarray, entries: np.ndarray,
                    tolerance: Tolerance, bracket: Bracket | None = None) -> ParameterReport:
    """Compare a (structurally valid) gradient with the reference on some flat entries only.

    ``size`` and ``mismatched`` count the entries compared; ``extras["checked"]`` and
    ``extras["entries"]`` give how many were checked out of how many, and ``worst_index``
    is an index into the whole parameter.
    """
    shape = tuple(numerical.shape)
    a = np.asarray(value, dtype=np.float64).reshape(-1)[entries]
    r = numerical.reshape(-1)[entries]
    sub = None if bracket is None else Bracket(*(np.asarray(part).reshape(-1)[entries]
                                                for part in (bracket.left, bracket.right, bracket.kink)))
    report = compare_parameter(name, a, r, tolerance, bracket=sub)
    worst = report.worst_index
    full_index = (tuple(int(i) for i in np.unravel_index(int(entries[worst[0]]), shape))
                  if worst else None)
    total = int(np.prod(shape))
    message = (f"{name}: {report.mismatched} of {entries.size} checked entries (a sample of "
               f"{total}) differ from the reference" if report.mismatched else "")
    return replace(report, expected_shape=shape, returned_shape=tuple(np.shape(value)),
                   worst_index=full_index, message=message,
                   extras={**report.extras, "checked": int(entries.size), "entries": total})


def restrict_to_entries(reports: tuple[ParameterReport, ...], analytic: object,
                        numerical: Mapping[str, np.ndarray], entries: Mapping[str, np.ndarray],
                        tolerance: Tolerance, brackets: Mapping[str, Bracket] | None = None,
                        ) -> tuple[ParameterReport, ...]:
    """Redo the comparison of sampled parameters on their sampled entries only.

    Used by the full check with ``max_entries``: the numerical gradient is NaN off the
    sample, so the whole-array comparison of those parameters is replaced.
    """
    if not isinstance(analytic, Mapping):
        return reports
    out = []
    for report in reports:
        sample = entries.get(report.name)
        if sample is None or report.status in STRUCTURAL:
            out.append(report)
            continue
        out.append(compare_sampled(report.name, analytic[report.name], numerical[report.name],
                                   np.asarray(sample), tolerance, (brackets or {}).get(report.name)))
    return tuple(out)


def sampling_notes(entries: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """One note per sampled parameter: how many entries were checked out of how many."""
    return tuple(f"{key}: {len(sample)} of {params[key].size} entries checked (a seeded sample)"
                 for key, sample in entries.items())


def on_entries(analytic: object, numerical: Mapping[str, np.ndarray],
               entries: Mapping[str, np.ndarray]) -> tuple[object, dict[str, np.ndarray]]:
    """Both gradients of each sampled parameter on its sampled entries only, the others whole.

    What a diagnosis can read: off the sample the numerical gradient is NaN, and a factor
    or a sign over NaN is NaN ("no simple pattern"). A gradient of the wrong shape is left
    whole, for the diagnosis to name its shape.
    """
    if not isinstance(analytic, Mapping):
        return analytic, dict(numerical)
    mine, theirs = dict(analytic), dict(numerical)
    for key, sample in entries.items():
        value = analytic.get(key)
        if key in theirs and np.shape(value) == theirs[key].shape:
            mine[key] = np.asarray(value, dtype=np.float64).reshape(-1)[sample]
            theirs[key] = theirs[key].reshape(-1)[sample]
    return mine, theirs
