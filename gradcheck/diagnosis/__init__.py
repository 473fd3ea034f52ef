"""Name the likely cause of a wrong gradient, with evidence, and judge mismatches by measured noise.

The engine tests hypotheses against numbers rather than guessing from patterns: a flipped
sign is a = -r, a missing 1/m is a = m * r (alpha = <a, r> / <r, r> names the factor), a
derivative taken at the activation is a = the reference recomputed with sigma'(a) in
place of sigma'(z) by the network's own architecture. When nothing fits, the diagnosis is
"no_simple_pattern" with the evidence (alpha, cosine, where the mismatch sits).

Any layer's gradients can be diagnosed without a network, keyed by the inputs' names or the
gradients' own (``dx``, ``dw``, ``db``); the sentences then say only what the numbers show
("scaled by 1/2"), name the caller's functions and sizes, and explain a factor by the loss
only when ``loss`` declares it. :func:`diagnose_update` does the same for an update step.

Example:
    >>> import numpy as np
    >>> from gradcheck import networks
    >>> from gradcheck.diagnosis import diagnose_gradients
    >>> net = networks.get("two_hidden")
    >>> ex = net.random_example(np.random.default_rng(0), m=3)
    >>> sol = net.solution()
    >>> reference = sol.bprop(sol.fprop(ex.x, ex.y, ex.params))
    >>> student = {**reference, "W3": -reference["W3"]}
    >>> diagnose_gradients(student, reference, network=net, example=ex)["W3"].cause
    'sign_flipped'
    >>> x, w, dout = np.ones((5, 3)), np.arange(12.0).reshape(3, 4), np.ones((5, 4))
    >>> layer = {"dx": dout @ w.T, "dw": x.T @ dout, "db": dout.sum(axis=0)}
    >>> wrong = {**layer, "dw": layer["dw"] / 5}
    >>> found = diagnose_gradients(wrong, layer, functions=("affine_forward", "affine_backward"),
    ...                            batch_size=5)
    >>> found["dw"].sentence[:55]
    'dw is scaled by 1/N with N = 5, the batch size: it is t'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from ..comparison import ParameterReport
from ..networks import Architecture, Example, Network
from ..tolerances import Tolerance
from .behaviour import (
    changes,
    diagnose_batch_sizes,
    diagnose_repeated_calls,
    smallest_failing_example,
    snapshot,
)
from .core import diagnose_gradients, fit
from .model import CAUSES, Diagnosis, Evidence
from .update import diagnose_update
from .verdicts import Label, Verdict, judge_mismatches

__all__ = [
    "CAUSES",
    "Diagnosis",
    "Evidence",
    "Label",
    "Verdict",
    "annotate",
    "changes",
    "diagnose_batch_sizes",
    "diagnose_gradients",
    "diagnose_repeated_calls",
    "diagnose_update",
    "fit",
    "judge_mismatches",
    "smallest_failing_example",
    "snapshot",
]


def annotate(
    reports: tuple[ParameterReport, ...],
    analytic: object,
    reference: Mapping[str, np.ndarray],
    *,
    batch_size: int | None = None,
    network: Network | Architecture | None = None,
    example: Example | None = None,
    numerical_own: Mapping[str, np.ndarray] | None = None,
    tolerance: Tolerance | None = None,
    loss: str | None = None,
    functions: tuple[str, str] = ("fprop", "bprop"),
    dims: Mapping[str, int] | None = None,
    inputs: Mapping[str, object] | None = None,
) -> tuple[ParameterReport, ...]:
    """Return the reports with a ``hint`` (the diagnosis sentence) on every failing parameter.

    Reports that pass, or already carry a hint, are returned unchanged; the diagnosis's
    cause and evidence go to ``report.extras["diagnosis"]``. The keyword arguments are
    those of :func:`diagnose_gradients`.

    Example:
        >>> import numpy as np
        >>> from gradcheck.comparison import compare_gradients
        >>> from gradcheck.tolerances import tolerance_for
        >>> r = {"W": np.array([[1.0, 2.0, 3.0]])}
        >>> reports, _ = compare_gradients({"W": 2 * r["W"]}, r, tolerance_for(np.float64))
        >>> annotate(reports, {"W": 2 * r["W"]}, r)[0].hint[:45]
        'dW is scaled by 2: it is twice the expected g'
    """
    failing = [report for report in reports if not report.ok and not report.hint]
    if not failing or not isinstance(analytic, Mapping):
        return reports
    found = diagnose_gradients(
        analytic,
        reference,
        network=network,
        example=example,
        numerical_own=numerical_own,
        batch_size=batch_size,
        tolerance=tolerance,
        loss=loss,
        functions=functions,
        dims=dims,
        inputs=inputs,
    )
    return tuple(_annotated(report, found.get(report.name)) for report in reports)


def _annotated(report: ParameterReport, diagnosis: Diagnosis | None) -> ParameterReport:
    if report.ok or report.hint or diagnosis is None:
        return report
    extras = {**report.extras, "diagnosis": diagnosis}
    return replace(report, hint=diagnosis.sentence, extras=extras)
