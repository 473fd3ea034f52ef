"""The :class:`Diagnosis` record and the stable cause codes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CAUSES", "Diagnosis", "Evidence"]

Evidence = Mapping[str, "float | int | str"]
"""Named numbers (and a few short labels such as the mismatch pattern)."""

CAUSES: tuple[str, ...] = (
    "not_implemented",
    "missing",
    "wrong_key",
    "swapped",
    "zeros",
    "not_finite",
    "transposed",
    "bias_not_summed",
    "bias_wrong_axis",
    "not_summed",
    "flattened",
    "wrong_shape",
    "padding_not_removed",
    "consistent_with_own_fprop",
    "sign_flipped",
    "activation_derivative_missing",
    "derivative_at_activation",
    "activation_derivative_twice",
    "derivative_formula_at_preactivation",
    "derivative_not_cancelled",
    "preactivation_input",
    "wrong_layer_input",
    "scaled",
    "batch_mean_term",
    "batch_variance_term",
    "not_gated",
    "label_entries",
    "batch_size_one",
    "mutates_inputs",
    "stale_cache",
    "gradient_ascent",
    "learning_rate_missing",
    "learning_rate_twice",
    "not_updated",
    "returned_step",
    "no_simple_pattern",
)
"""Every cause code a :class:`Diagnosis` can carry (of a gradient or, from
:func:`~gradcheck.diagnosis.diagnose_update`, of an update); stable, for graders and tests."""


@dataclass(frozen=True)
class Diagnosis:
    """The likely cause of one parameter's wrong gradient."""

    parameter: str
    """The parameter whose gradient is wrong, e.g. ``"W2"``."""
    cause: str
    """A stable code from :data:`CAUSES`, e.g. ``"transposed"``."""
    sentence: str
    """One plain sentence for the student, pointing at the line of math to look at."""
    evidence: Evidence = field(default_factory=dict)
    """Named numbers behind the verdict: alpha, cosine, factor, consistency, ..."""

    @property
    def recognised(self) -> bool:
        """False for ``no_simple_pattern``: nothing is claimed beyond the evidence."""
        return self.cause != "no_simple_pattern"
