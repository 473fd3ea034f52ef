"""Score one student's assignment against the reference solution, in an isolated child.

Rubric (contract section 3): 10 points per assignment: ``fprop`` 2, ``bprop`` 6 split
evenly over the parameters, ``update`` 2. Every check runs on the document's worked
example and on hidden random examples drawn from the seed (non-square shapes, batch sizes
above 1), and passes only when it passes on all of them.

Partial credit: a parameter whose gradient disagrees with the reference but agrees with
the numerical gradient of the student's *own* fprop earns half its share (the backward
pass is right for the forward pass the student wrote; the fprop check has already lost
its points for the forward pass itself).

The reference answers are computed here, in the grader, from ``solutions/``; the child only
receives inputs (``update`` gets random gradients, never the reference ones) and everything
it returns is validated before it is compared.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import networks
from .comparison import ParameterReport, compare_gradients, relative_error
from .diagnosis import annotate
from .differentiation import central_differences
from .networks import Example, Network
from .results import AssignmentResult, CheckResult
from .tolerances import Tolerance

__all__ = ["Rubric", "GradingOptions", "grade_assignment", "missing_assignment", "hidden_examples",
           "GRADING_TOLERANCE"]

# Student and reference gradients are both analytic: only rounding separates correct ones.
# 1e-4 leaves room for a student who computes in float32; every real bug is off by far more.
GRADING_TOLERANCE = Tolerance(rtol=1e-4, atol=1e-7, eps=1e-6)
# The student's gradient against finite differences of the student's own fprop.
CONSISTENCY_TOLERANCE = Tolerance(rtol=1e-4, atol=1e-6, eps=1e-6)


@dataclass(frozen=True)
class Rubric:
    """Points per check; the contract's default rubric."""

    fprop: float = 2.0
    bprop: float = 6.0
    update: float = 2.0
    consistent_fraction: float = 0.5
    """Share of a parameter's bprop points when it matches the student's own (wrong) fprop."""

    def to_dict(self) -> dict[str, float]:
        return {"fprop": self.fprop, "bprop": self.bprop, "update": self.update,
                "consistent_fraction": self.consistent_fraction}


@dataclass(frozen=True)
class GradingOptions:
    """How to grade: seed, limits, examples."""

    seed: int = 0
    hidden: int = 3
    """Hidden random examples per assignment, besides the worked example."""
    rubric: Rubric = field(default_factory=Rubric)
    timeout: float = 10.0
    memory_mb: int = 1024
    kernel: bool = False
    user: str | None = None


def hidden_examples(network: Network, seed: int, count: int = 3) -> list[tuple[str, Example]]:
    """The worked example(s) and ``count`` hidden ones, the same for every student.

    Batch sizes are above 1 and differ from every layer width, and hidden layers differ
    from the input width, so no matrix in the check is square by accident.
    """
    labelled = [("the document's worked example" if i == 0 else f"worked example {i + 1}", ex)
                for i, ex in enumerate(network.worked_examples)]
    index = networks.NAMES.index(network.name) if network.name in networks.NAMES else 99
    for k in range(count):
        rng = np.random.default_rng([seed, index, k])
        sizes = _hidden_sizes(network, k)
        widths = network.architecture(**sizes).widths
        candidates = [m for m in range(3, 16) if m not in widths]
        m = candidates[k % len(candidates)]
        labelled.append((f"hidden example {k + 1} (batch of {m})",
                         network.random_example(rng, m, lr=0.1, **sizes)))
    return labelled


def _hidden_sizes(network: Network, k: int) -> dict[str, object]:
    if network.name == "binary_classifier":
        return {"hidden": (3, 4, 5)[k % 3]}
    if network.name == "mlp":
        configs = (
            {"widths": (3, 4, 2), "activations": ("tanh", "sigmoid"), "loss": "squared"},
            {"widths": (4, 6, 3, 1), "activations": ("relu", "tanh", "sigmoid"), "loss": "cross_entropy"},
            {"widths": (2, 5, 3), "activations": ("sigmoid", "identity"), "loss": "squared"},
        )
        return dict(configs[k % len(configs)])
    return {}


def missing_assignment(name: str, rubric: Rubric, reason: str) -> AssignmentResult:
    """Zero points for every check, with one reason (file missing, not loadable...)."""
    checks = tuple(_zero_checks(networks.get(name), rubric, reason))
    return AssignmentResult(name, None, checks, problems=(reason,))


def grade_assignment(
    name: str,
    file: Path,
    options: GradingOptions,
    *,
    relative_source: str | None = None,
    figures: Callable[[str, np.ndarray, np.ndarray], str | None] | None = None,
) -> AssignmentResult:
    """Grade ``file`` (a module or notebook) for assignment ``name`` in a sandboxed child.

    Args:
        name: the assignment (a network name).
        file: the student's file, in a snapshot of the student's folder.
        options: seed, limits, rubric.
        relative_source: how to name the file in the results.
        figures: optional ``figures(label, analytic, reference) -> relative path`` that saves
            a heatmap of a wrong gradient.
    """
    from .isolation import Limits, Sandbox  # deferred: the grader process imports it lazily

    network = networks.get(name)
    started = time.perf_counter()
    limits = Limits(call_timeout=options.timeout, memory_mb=options.memory_mb)
    source = relative_source or file.name
    with Sandbox(file, limits=limits, kernel=options.kernel, user=options.user) as box:
        loaded = box.load()
        problems = list(loaded.problems)
        if not loaded.ok:
            reason = loaded.error or f"{source} could not be loaded"
            result = missing_assignment(name, options.rubric, reason)
            return AssignmentResult(name, source, result.checks, tuple(problems) + (reason,),
                                    output=box.output, seconds=time.perf_counter() - started)
        missing = [f for f in ("fprop", "bprop", "update") if f not in loaded.names]
        if missing:
            problems.append(f"{source} does not define {', '.join(missing)}")
        runs = [_run_example(box, network, label, example)
                for label, example in hidden_examples(network, options.seed, options.hidden)]
        output = box.output
    checks = _checks(network, runs, options.rubric, figures)
    return AssignmentResult(name, source, tuple(checks), tuple(problems), output=output,
                            seconds=time.perf_counter() - started)


# -- running one example in the child -------------------------------------------------------


@dataclass
class _ExampleRun:
    label: str
    example: Example
    fprop_error: str | None = None
    loss: float | None = None
    reference_loss: float = 0.0
    bprop_error: str | None = None
    gradients: tuple[ParameterReport, ...] = ()
    consistent: dict[str, bool] = field(default_factory=dict)
    update_error: str | None = None
    update_report: tuple[ParameterReport, ...] = ()
    reference_gradients: Mapping[str, np.ndarray] = field(default_factory=dict)
    student_gradients: object = None


def _run_example(box: object, network: Network, label: str, example: Example) -> _ExampleRun:
    from .wire import Ref

    solution = network.solution()
    ex = example.fresh()
    reference_cache = solution.fprop(ex.x, ex.y, dict(ex.params), **ex.options)
    reference = {k: np.asarray(v, dtype=np.float64) for k, v in solution.bprop(reference_cache).items()}
    run = _ExampleRun(label, example, reference_loss=float(reference_cache["loss"]),
                      reference_gradients=reference)

    fprop = box.call("fprop", ex.x, ex.y, dict(ex.params), store="cache", pick="loss", **ex.options)  # type: ignore[attr-defined]
    run.fprop_error, run.loss = _loss(fprop, run.reference_loss)
    if run.fprop_error is None or run.loss is not None:
        bprop = box.call("bprop", Ref("cache"))  # type: ignore[attr-defined]
        if bprop.ok:
            run.student_gradients = _plain(bprop.value)
            reports, problems = compare_gradients(run.student_gradients, reference, GRADING_TOLERANCE)
            run.gradients = annotate(reports, run.student_gradients, reference, batch_size=_batch(ex))
            run.bprop_error = problems[0] if problems else None
            if run.fprop_error and any(not r.ok for r in run.gradients):
                run.consistent = _consistent_with_own_fprop(box, ex, run)
        else:
            run.bprop_error = bprop.error
    else:
        run.bprop_error = "bprop was not called because fprop failed"
    _run_update(box, ex, run)
    return run


def _loss(result: object, reference_loss: float) -> tuple[str | None, float | None]:
    """(error, loss): the error says why fprop fails; loss is set when it is a number."""
    if not result.ok:  # type: ignore[attr-defined]
        return result.error, None  # type: ignore[attr-defined]
    value = _plain(result.value)  # type: ignore[attr-defined]
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"fprop's loss is {_describe(value)}, not a number", None
    if array.size != 1:
        return (f"fprop's loss has shape {array.shape}, not a single number: sum the loss over the "
                "batch", None)
    loss = float(array.reshape(-1)[0])
    if not np.isfinite(loss):
        return f"fprop's loss is {loss}", None
    error = relative_error(np.array(loss), np.array(reference_loss), GRADING_TOLERANCE)
    if float(error) > GRADING_TOLERANCE.rtol:
        return (f"fprop's loss is {loss:.10g}, the reference loss is {reference_loss:.10g} "
                f"(relative error {float(error):.2e})", loss)
    return None, loss


def _consistent_with_own_fprop(box: object, ex: Example, run: _ExampleRun) -> dict[str, bool]:
    # Finite differences of the student's own loss, evaluated in the child, differenced here.
    params = {k: v.copy() for k, v in ex.params.items()}
    arg_sets: list[tuple[object, ...]] = []

    def record(p: Mapping[str, np.ndarray]) -> float:
        arg_sets.append((ex.x, ex.y, {k: v.copy() for k, v in p.items()}))
        return 0.0

    central_differences(record, params, CONSISTENCY_TOLERANCE.eps)
    results = box.call_many("fprop", arg_sets, pick="loss", kwargs=dict(ex.options))  # type: ignore[attr-defined]

    losses = iter(results)

    def replay(_: Mapping[str, np.ndarray]) -> float:
        result = next(losses)
        error, loss = _loss(result, 0.0)
        if loss is None:
            raise ValueError(error)
        return loss

    try:
        numerical = central_differences(replay, params, CONSISTENCY_TOLERANCE.eps).gradient
    except (ValueError, StopIteration):
        return {}
    reports, _ = compare_gradients(run.student_gradients, numerical, CONSISTENCY_TOLERANCE)
    return {r.name: r.ok for r in reports}


def _run_update(box: object, ex: Example, run: _ExampleRun) -> None:
    rng = np.random.default_rng(zlib.crc32(run.label.encode()))
    grads = {k: rng.uniform(-1, 1, size=v.shape) for k, v in ex.params.items()}
    expected = {k: ex.params[k] - ex.lr * grads[k] for k in ex.params}
    result = box.call("update", dict(ex.params), grads, ex.lr)  # type: ignore[attr-defined]
    if not result.ok:
        run.update_error = result.error
        return
    value = _plain(result.value)
    if value is None:
        run.update_error = ("update returned None: return the new parameters as a dict "
                            "(p - lr * dp for every key)")
        return
    reports, problems = compare_gradients(value, expected, GRADING_TOLERANCE, what="update")
    run.update_report = reports
    run.update_error = problems[0] if problems else None


def _plain(value: object) -> object:
    """Unwrap array subclasses (np.matrix...) the wire marks, recursively through dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    array = getattr(value, "array", None)
    if isinstance(array, np.ndarray) and hasattr(value, "type_name"):
        return array
    return value


def _describe(value: object) -> str:
    type_name = getattr(value, "type_name", None)
    return f"a {type_name}" if type_name else f"a {type(value).__name__}"


def _batch(example: Example) -> int:
    return example.batch_size


# -- turning runs into scored checks ----------------------------------------------------------


def _zero_checks(network: Network, rubric: Rubric, reason: str) -> list[CheckResult]:
    names = list(network.param_shapes())
    share = rubric.bprop / len(names)
    checks = [CheckResult(network.name, "fprop", "fprop", 0.0, rubric.fprop, False, reason)]
    checks += [CheckResult(network.name, f"bprop: {p}", "bprop", 0.0, share, False, reason) for p in names]
    checks.append(CheckResult(network.name, "update", "update", 0.0, rubric.update, False, reason))
    return checks


def _checks(network: Network, runs: Sequence[_ExampleRun], rubric: Rubric,
            figures: Callable[[str, np.ndarray, np.ndarray], str | None] | None) -> list[CheckResult]:
    checks = [_fprop_check(network.name, runs, rubric)]
    names = list(runs[0].example.params) if runs else list(network.param_shapes())
    share = rubric.bprop / len(names)
    checks += [_bprop_check(network.name, p, runs, share, rubric, figures) for p in names]
    checks.append(_update_check(network.name, runs, rubric))
    return checks


def _examples_phrase(runs: Sequence[_ExampleRun]) -> str:
    hidden = sum(1 for r in runs if r.label.startswith("hidden"))
    worked = len(runs) - hidden
    parts = ([f"the document's worked example"] if worked else []) + ([f"{hidden} hidden examples"] if hidden else [])
    return " and ".join(parts)


def _fprop_check(assignment: str, runs: Sequence[_ExampleRun], rubric: Rubric) -> CheckResult:
    failed = next((r for r in runs if r.fprop_error), None)
    what = f"your fprop's loss against the reference loss on {_examples_phrase(runs)}"
    if failed is None:
        return CheckResult(assignment, "fprop", "fprop", rubric.fprop, rubric.fprop, True,
                           f"Compared {what}: all match.")
    return CheckResult(assignment, "fprop", "fprop", 0.0, rubric.fprop, False,
                       f"Compared {what}: failed on {failed.label}.",
                       details=(failed.fprop_error or "",), example=failed.label)


def _bprop_check(assignment: str, param: str, runs: Sequence[_ExampleRun], share: float,
                 rubric: Rubric, figures: Callable[[str, np.ndarray, np.ndarray], str | None] | None) -> CheckResult:
    what = f"your bprop's d{param} against the reference gradient on {_examples_phrase(runs)}"
    name = f"bprop: {param}"
    failures = [(r, _report(r, param)) for r in runs]
    failing = [(r, rep) for r, rep in failures if rep is None or not rep.ok]
    if not failing:
        return CheckResult(assignment, name, "bprop", share, share, True, f"Compared {what}: all match.")
    run, report = failing[0]
    details = [_failure_line(run, param, report)]
    diagnosis = report.hint if report is not None else ""
    batch_one = [r for r, rep in failures if rep is not None and rep.ok and _batch(r.example) == 1]
    if batch_one and all(_batch(r.example) > 1 for r, _ in failing):
        diagnosis = (f"d{param} is right for a batch of one example but wrong for larger batches: "
                     "check how you sum over the examples (axis, keepdims) and that nothing assumes m = 1")
    consistent = all(r.consistent.get(param, False) for r, _ in failing)
    score = 0.0
    if consistent:
        score = share * rubric.consistent_fraction
        diagnosis = (f"your bprop is consistent with your fprop (d{param} matches finite differences "
                     "of your own loss); the forward pass is wrong, so fix fprop first")
    figure = None
    if figures is not None and report is not None and report.status == "mismatch":
        student = np.asarray(run.student_gradients[param], dtype=np.float64)  # type: ignore[index]
        figure = figures(f"{assignment}_{param}", student, run.reference_gradients[param])
    return CheckResult(assignment, name, "bprop", round(score, 6), share, False,
                       f"Compared {what}: failed on {run.label}.", details=tuple(details),
                       diagnosis=diagnosis, example=run.label,
                       relative_error=_finite(report.max_relative_error) if report else None,
                       figure=figure)


def _update_check(assignment: str, runs: Sequence[_ExampleRun], rubric: Rubric) -> CheckResult:
    what = f"your update against p - lr * dp on {_examples_phrase(runs)}"
    for run in runs:
        bad = next((rep for rep in run.update_report if not rep.ok), None)
        if run.update_error or bad is not None or not run.update_report:
            detail = run.update_error or (bad.message if bad else "update returned nothing usable")
            if bad is not None and bad.status == "mismatch":
                detail = (f"new {bad.name}{list(bad.worst_index or ())}: yours {bad.analytic:.8g}, "
                          f"expected {bad.reference:.8g} (relative error {bad.max_relative_error:.2e})")
            return CheckResult(assignment, "update", "update", 0.0, rubric.update, False,
                               f"Compared {what}: failed on {run.label}.", details=(detail,),
                               example=run.label)
    return CheckResult(assignment, "update", "update", rubric.update, rubric.update, True,
                       f"Compared {what}: all match.")


def _report(run: _ExampleRun, param: str) -> ParameterReport | None:
    return next((rep for rep in run.gradients if rep.name == param), None)


def _failure_line(run: _ExampleRun, param: str, report: ParameterReport | None) -> str:
    if report is None:
        return run.bprop_error or f"bprop returned no gradient for {param}"
    if report.status != "mismatch":
        return report.message
    index = list(report.worst_index or ())
    return (f"d{param}{index}: yours {report.analytic:.8g}, expected {report.reference:.8g} "
            f"(relative error {report.max_relative_error:.2e}; {report.mismatched} of {report.size} "
            "entries differ)")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
