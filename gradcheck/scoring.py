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

Diagnosis: every failing gradient gets a cause from :mod:`gradcheck.diagnosis`, given the
network, the example and (when fprop is wrong) the numerical gradient of the student's own
fprop, so the activation-derivative, bias, key, scale and own-fprop causes all reach
``feedback.md``. A gradient right on a batch of one example (the worked examples of several
networks have m = 1) and wrong on the hidden batches is named by
:func:`~gradcheck.diagnosis.diagnose_batch_sizes`. A gradient consistent with the student's
own (wrong) fprop says so and, when a simpler cause also fits (a factor 1/m from a loss
averaged instead of summed), names it too.

Inputs modified in place, and stale state (issue 6): on the first hidden example (random,
a batch above 1), the grader calls ``bprop`` a second time on the same stored cache; two different
answers mean bprop changed the cache it was given (a fresh cache then gives the first answer
again) or depends on state left from an earlier call (it does not). It also asks fprop for its
whole cache once and compares the entries stored under an input's own name (``x``, ``y``, a
parameter, ``params``) with what was sent: a difference means fprop modified that input in
place. These findings are listed under the assignment's problems and **never change a
score**: every call receives fresh copies of x, y and params and bprop's stored cache is
fresh for every example, so a mutation cannot leak from one check into another, and the
checks score the first call's answer, as a student's own training loop would see it. A
mutation that does make an answer wrong already loses that check's points.
"""

from __future__ import annotations

import contextlib
import functools
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import networks
from .checking import _StudentError as StudentError
from .checking import scalar_loss
from .comparison import ParameterReport, compare_gradients, relative_error
from .diagnosis import (
    Diagnosis,
    annotate,
    diagnose_batch_sizes,
    diagnose_gradients,
    diagnose_repeated_calls,
)
from .diagnosis.sentences import consistent_with_own_fprop, mutates_inputs
from .differentiation import central_differences
from .networks import Example, Network
from .results import AssignmentResult, CheckResult
from .tolerances import Tolerance

if TYPE_CHECKING:
    from .isolation import Sandbox

__all__ = ["Rubric", "GradingOptions", "grade_assignment", "sandbox_for", "missing_assignment",
           "hidden_examples", "GRADING_TOLERANCE"]

FigureWriter = Callable[[str, str, np.ndarray, np.ndarray], "str | None"]
"""``figures(assignment, parameter, analytic, reference) -> path`` of a saved heatmap, or None."""

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
    figures: FigureWriter | None = None,
    sandbox: Sandbox | None = None,
) -> AssignmentResult:
    """Grade ``file`` (a module or notebook) for assignment ``name`` in a sandboxed child.

    Args:
        name: the assignment (a network name).
        file: the student's file, in a snapshot of the student's folder.
        options: seed, limits, rubric.
        relative_source: how to name the file in the results.
        figures: optional ``figures(assignment, parameter, analytic, reference) -> relative
            path`` that saves a heatmap of a wrong gradient.
        sandbox: ``sandbox_for(file, options)``, perhaps already started; the caller then
            closes it. By default one is made and closed here.
    """
    network = networks.get(name)
    started = time.perf_counter()
    source = relative_source or file.name
    owned = sandbox is None
    with sandbox_for(file, options) if owned else contextlib.nullcontext(sandbox) as box:
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
        references = _references(name, options.seed, options.hidden)
        # Probed on a random example: a worked example may be a fixed point of a mutation
        # (batch_sigmoid's x is already divided by its maximum).
        probe = next((i for i, ref in enumerate(references)
                      if ref.label.startswith("hidden") and ref.example.batch_size > 1), 0)
        runs = [_run_example(box, network, ref, probe=i == probe) for i, ref in enumerate(references)]
        _run_updates(box, runs)
        output = box.output
    problems += [found for run in runs for found in run.behaviour if found not in problems]
    # A key that is not a parameter costs nothing, but the student should know it is ignored.
    problems += [f"{report.message}; it was ignored" for report in _unexpected(runs)]
    checks = _checks(network, runs, options.rubric, figures)
    return AssignmentResult(name, source, tuple(checks), tuple(problems), output=output,
                            seconds=time.perf_counter() - started)


def sandbox_for(file: Path, options: GradingOptions) -> Sandbox:
    """The sandbox that :func:`grade_assignment` runs ``file`` in (not started yet)."""
    from .isolation import Limits, Sandbox  # deferred: the grader process imports it lazily

    # A whole notebook may hold several slow demo cells, each stopped at the call limit.
    limits = Limits(call_timeout=options.timeout, load_timeout=max(30.0, 6 * options.timeout),
                    memory_mb=options.memory_mb)
    return Sandbox(file, limits=limits, kernel=options.kernel, user=options.user)


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
    simpler: dict[str, Diagnosis] = field(default_factory=dict)
    """Causes found without the own-fprop hypothesis, for gradients consistent with it."""
    update_error: str | None = None
    update_report: tuple[ParameterReport, ...] = ()
    reference_gradients: Mapping[str, np.ndarray] = field(default_factory=dict)
    student_gradients: object = None
    behaviour: tuple[str, ...] = ()
    """Inputs modified in place or stale state, found by repeated calls (never scored)."""


@dataclass(frozen=True)
class _Reference:
    """One example and the reference solution's answers on it, the same for every student."""

    label: str
    example: Example
    loss: float
    gradients: Mapping[str, np.ndarray]


@functools.lru_cache(maxsize=32)
def _references(name: str, seed: int, count: int) -> tuple[_Reference, ...]:
    # Computed once per run, not once per student; read-only, so no caller can change them.
    network = networks.get(name)
    solution = network.solution()
    references = []
    for label, example in hidden_examples(network, seed, count):
        ex = example.fresh()
        cache = solution.fprop(ex.x, ex.y, dict(ex.params), **ex.options)
        gradients = {k: _read_only(np.array(v, dtype=np.float64)) for k, v in solution.bprop(cache).items()}
        for array in (example.x, example.y, *example.params.values()):
            _read_only(array)
        references.append(_Reference(label, example, float(cache["loss"]), gradients))
    return tuple(references)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _run_example(box: object, network: Network, reference: _Reference,
                 probe: bool = False) -> _ExampleRun:
    from .wire import Ref

    example = reference.example
    ex = example.fresh()
    run = _ExampleRun(reference.label, example, reference_loss=reference.loss,
                      reference_gradients=reference.gradients)

    fprop = box.call("fprop", ex.x, ex.y, dict(ex.params), store="cache", pick="loss", **ex.options)  # type: ignore[attr-defined]
    run.fprop_error, run.loss = _loss(fprop, run.reference_loss)
    if run.fprop_error is None or run.loss is not None:
        bprop = box.call("bprop", Ref("cache"))  # type: ignore[attr-defined]
        if bprop.ok:
            run.student_gradients = _plain(bprop.value)
            _compare_bprop(box, network, example, run)
            if probe:
                run.behaviour = _probe_behaviour(box, example, run)
        else:
            run.bprop_error = bprop.error
    else:
        run.bprop_error = "bprop was not called because fprop failed"
    return run


def _compare_bprop(box: object, network: Network, example: Example, run: _ExampleRun) -> None:
    reports, problems = compare_gradients(run.student_gradients, run.reference_gradients,
                                          GRADING_TOLERANCE)
    run.bprop_error = problems[0] if problems else None
    numerical_own = None
    if run.fprop_error and any(not r.ok for r in reports):
        run.consistent, numerical_own = _consistent_with_own_fprop(box, example.fresh(), run)
    run.gradients = annotate(reports, run.student_gradients, run.reference_gradients,
                             batch_size=_batch(example), network=network, example=example,
                             numerical_own=numerical_own)
    if any(run.consistent.values()) and isinstance(run.student_gradients, Mapping):
        # The own-fprop verdict hides any other cause; ask again without it, so that a
        # loss averaged instead of summed is named as the factor 1/m as well.
        run.simpler = diagnose_gradients(run.student_gradients, run.reference_gradients,
                                         network=network, example=example,
                                         batch_size=_batch(example))


def _loss(result: object, reference_loss: float) -> tuple[str | None, float | None]:
    """(error, loss): the error says why fprop fails; loss is set when it is a number."""
    if not result.ok:  # type: ignore[attr-defined]
        return result.error, None  # type: ignore[attr-defined]
    try:
        loss = scalar_loss(_plain(result.value))  # type: ignore[attr-defined]
    except StudentError as error:
        return str(error), None
    error = relative_error(np.array(loss), np.array(reference_loss), GRADING_TOLERANCE)
    if float(error) > GRADING_TOLERANCE.rtol:
        return (f"fprop's loss is {loss:.10g}, the reference loss is {reference_loss:.10g} "
                f"(relative error {float(error):.2e})", loss)
    return None, loss


def _consistent_with_own_fprop(box: object, ex: Example, run: _ExampleRun
                               ) -> tuple[dict[str, bool], dict[str, np.ndarray] | None]:
    """Per parameter: does bprop match finite differences of the student's own loss?

    Returns that verdict and the numerical gradient itself (None when the student's fprop
    fails on a perturbed input), which the diagnosis uses too.
    """
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
        return {}, None
    reports, _ = compare_gradients(run.student_gradients, numerical, CONSISTENCY_TOLERANCE)
    return {r.name: r.ok for r in reports}, numerical


def _probe_behaviour(box: object, example: Example, run: _ExampleRun) -> tuple[str, ...]:
    """Sentences about inputs modified in place or stale state; empty when all is well."""
    if not isinstance(run.student_gradients, Mapping):
        return ()
    found = [_bprop_twice(box, example, run.student_gradients), _fprop_inputs(box, example)]
    return tuple(sentence for sentence in found if sentence)


def _bprop_twice(box: object, example: Example, first: Mapping[str, object]) -> str | None:
    from .wire import Ref

    again = box.call("bprop", Ref("cache"))  # type: ignore[attr-defined]
    if not again.ok:
        return (f"a second call of bprop on the same cache failed ({again.error}): bprop must "
                "not change the cache it is given or depend on an earlier call")
    differ = _repeated(first, _plain(again.value))
    if not differ:
        return None
    # Same inputs, a fresh cache: the first answer again means the state lived in the cache.
    ex = example.fresh()
    fresh = box.call("fprop", ex.x, ex.y, dict(ex.params), store="fresh_cache", pick="loss",  # type: ignore[attr-defined]
                     **ex.options)
    third = box.call("bprop", Ref("fresh_cache")) if fresh.ok else None  # type: ignore[attr-defined]
    name = next(iter(differ))
    if third is not None and third.ok and not _repeated(first, _plain(third.value)):
        return mutates_inputs(name, "bprop", "the cache it was given").sentence
    return differ[name].sentence


def _repeated(first: Mapping[str, object], second: object) -> dict[str, Diagnosis]:
    """diagnose_repeated_calls, for whatever the student returned."""
    if not isinstance(second, Mapping):
        second = {}
    try:
        return diagnose_repeated_calls(first, second)
    except (TypeError, ValueError):  # values that are not numbers: nothing to compare
        return {}


def _fprop_inputs(box: object, example: Example) -> str | None:
    ex = example.fresh()
    whole = box.call("fprop", ex.x, ex.y, dict(ex.params), **ex.options)  # type: ignore[attr-defined]
    cache = _plain(whole.value) if whole.ok else None
    if not isinstance(cache, Mapping):
        return None  # a cache that cannot be sent back is the student's right
    sent = {"x": example.x, "X": example.x, "y": example.y, "Y": example.y, **example.params}
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    for key, value in sent.items():
        if _same_kind(cache.get(key), value):
            before[key], after[key] = value, cache[key]
    params = cache.get("params")
    if isinstance(params, Mapping):
        kept = {k: v for k, v in example.params.items() if _same_kind(params.get(k), v)}
        before["params"] = kept
        after["params"] = {k: params[k] for k in kept}
    names = list(example.params)
    found = diagnose_repeated_calls({names[0]: 0.0}, {names[0]: 0.0}, before=before,
                                    after=after, who="fprop")
    return found[names[0]].sentence if found else None


def _same_kind(stored: object, sent: np.ndarray) -> bool:
    # Only an exact float64 copy is comparable: a student may keep x as float32 on purpose.
    return (isinstance(stored, np.ndarray) and stored.dtype == np.float64
            and stored.shape == sent.shape)


def _run_updates(box: object, runs: Sequence[_ExampleRun]) -> None:
    """Check update on every example, in one round trip to the child."""
    arg_sets, expected = [], []
    for run in runs:
        ex = run.example.fresh()
        rng = np.random.default_rng(zlib.crc32(run.label.encode()))
        grads = {k: rng.uniform(-1, 1, size=v.shape) for k, v in ex.params.items()}
        expected.append({k: ex.params[k] - ex.lr * grads[k] for k in ex.params})
        arg_sets.append((dict(ex.params), grads, ex.lr))
    results = box.call_many("update", arg_sets, each=True)  # type: ignore[attr-defined]
    for run, result, wanted in zip(runs, results, expected):
        _judge_update(run, result, wanted)


def _judge_update(run: _ExampleRun, result: object, expected: Mapping[str, np.ndarray]) -> None:
    if not result.ok:  # type: ignore[attr-defined]
        run.update_error = result.error  # type: ignore[attr-defined]
        return
    value = _plain(result.value)  # type: ignore[attr-defined]
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
            figures: FigureWriter | None) -> list[CheckResult]:
    checks = [_fprop_check(network.name, runs, rubric)]
    names = list(runs[0].example.params) if runs else list(network.param_shapes())
    share = rubric.bprop / len(names)
    checks += [_bprop_check(network, p, runs, share, rubric, figures) for p in names]
    checks.append(_update_check(network.name, runs, rubric))
    return checks


def _examples_phrase(runs: Sequence[_ExampleRun]) -> str:
    hidden = sum(1 for r in runs if r.label.startswith("hidden"))
    worked = len(runs) - hidden
    parts = (["the document's worked example"] if worked else []) + ([f"{hidden} hidden examples"] if hidden else [])
    return " and ".join(parts)


def _fprop_check(assignment: str, runs: Sequence[_ExampleRun], rubric: Rubric) -> CheckResult:
    failed = next((r for r in runs if r.fprop_error), None)
    what = f"your fprop's loss against the reference loss on {_examples_phrase(runs)}"
    if failed is None:
        return CheckResult(assignment, "fprop", "fprop", rubric.fprop, rubric.fprop, True,
                           f"Compared {what}: all match.")
    return CheckResult(assignment, "fprop", "fprop", 0.0, rubric.fprop, False,
                       f"Compared {what}: failed on {failed.label}.",
                       details=(failed.fprop_error or "",), example=failed.label,
                       diagnosis=_template_sentence("fprop", failed.fprop_error) or _loss_factor(failed))


def _loss_factor(run: _ExampleRun) -> str:
    """Name a wrong loss that is the reference times a recognisable factor, else ""."""
    if run.loss is None or run.reference_loss == 0.0:
        return ""
    m = _batch(run.example)
    ratio = run.loss / run.reference_loss
    named = {
        "the reference loss divided by the batch size m = {m}: the loss is the sum over the "
        "batch, not the mean": 1.0 / m,
        "m = {m} times the reference loss: sum the loss over the batch once": float(m),
        "twice the reference loss: the squared loss has the factor 0.5": 2.0,
        "half the reference loss: this network's loss has no factor 0.5": 0.5,
        "the reference loss with the sign flipped": -1.0,
    }
    for words, factor in named.items():
        if factor != 1.0 and abs(ratio - factor) <= GRADING_TOLERANCE.rtol * abs(factor):
            return f"your loss is {words.format(m=m)}."
    return ""


def _bprop_check(network: Network, param: str, runs: Sequence[_ExampleRun], share: float,
                 rubric: Rubric, figures: FigureWriter | None) -> CheckResult:
    assignment = network.name
    what = f"your bprop's d{param} against the reference gradient on {_examples_phrase(runs)}"
    name = f"bprop: {param}"
    failures = [(r, _report(r, param)) for r in runs]
    failing = [(r, rep) for r, rep in failures if rep is None or not rep.ok]
    if not failing:
        return CheckResult(assignment, name, "bprop", share, share, True, f"Compared {what}: all match.")
    run, report = failing[0]
    details = [_failure_line(run, param, report)]
    consistent = all(r.consistent.get(param, False) for r, _ in failing)
    diagnosis = _diagnosis(network, param, failures, failing, consistent)
    score = share * rubric.consistent_fraction if consistent else 0.0
    figure = None
    if figures is not None and report is not None and report.status == "mismatch":
        student = np.asarray(run.student_gradients[param], dtype=np.float64)  # type: ignore[index]
        figure = figures(assignment, param, student, run.reference_gradients[param])
    return CheckResult(assignment, name, "bprop", round(score, 6), share, False,
                       f"Compared {what}: failed on {run.label}.", details=tuple(details),
                       diagnosis=diagnosis, example=run.label,
                       relative_error=_finite(report.max_relative_error) if report else None,
                       figure=figure)


def _diagnosis(network: Network, param: str,
               failures: Sequence[tuple[_ExampleRun, ParameterReport | None]],
               failing: Sequence[tuple[_ExampleRun, ParameterReport | None]], consistent: bool) -> str:
    """One diagnosis sentence for a failing parameter, each cause said once."""
    run, report = failing[0]
    if report is None:
        return _unanswered(run, param)
    found = report.extras.get("diagnosis")
    found = found if isinstance(found, Diagnosis) else None
    one = next((r for r, rep in failures if rep is not None and rep.ok and _batch(r.example) == 1), None)
    if one is not None and all(_batch(r.example) > 1 for r, _ in failing) and (
            found is None or not found.recognised):
        # Right at m = 1, wrong at m > 1, and no specific cause at m > 1 (a missing
        # derivative can hide at m = 1 too; that cause is the more useful one).
        found = _batch_diagnosis(network, param, one, run) or found
    if not consistent:
        return found.sentence if found is not None else report.hint
    own = found if found is not None and found.cause == "consistent_with_own_fprop" else \
        consistent_with_own_fprop(param, {})
    sentence = f"your bprop is consistent with your fprop: {own.sentence}"
    simpler = run.simpler.get(param)
    if simpler is not None and simpler.recognised and simpler.cause != own.cause:
        sentence += f" The numbers also show a simpler pattern: {simpler.sentence}"
    return sentence


def _batch_diagnosis(network: Network, param: str, one: _ExampleRun, many: _ExampleRun) -> Diagnosis | None:
    found = diagnose_batch_sizes(one.student_gradients, one.reference_gradients,  # type: ignore[arg-type]
                                 many.student_gradients, many.reference_gradients,  # type: ignore[arg-type]
                                 network=network, example_many=many.example,
                                 batch_size=_batch(many.example))
    return found.get(param)


def _unanswered(run: _ExampleRun, param: str) -> str:
    """The cause when bprop gave no gradient at all: not implemented, or fprop not yet."""
    answer = run.student_gradients
    if _not_implemented(run.bprop_error):
        answer = NotImplementedError()
    if answer is not None and not isinstance(answer, Mapping):  # an exception, or not a dict
        return diagnose_gradients(answer, run.reference_gradients)[param].sentence  # type: ignore[arg-type]
    if _not_implemented(run.fprop_error):
        return ("bprop could not be checked: fprop is not implemented yet (it raises "
                "NotImplementedError), and bprop needs the cache that fprop returns.")
    return ""


def _template_sentence(function: str, error: str | None) -> str:
    """The cause of an fprop or update that is still the assignment's template, else ""."""
    if not _not_implemented(error):
        return ""
    what = {"fprop": "the forward pass, returning the cache with its \"loss\"",
            "update": "one gradient-descent step, p - lr * dp for every parameter"}[function]
    return (f"{function} is not implemented yet (it raises NotImplementedError): replace the "
            f"`raise NotImplementedError` with {what}.")


def _not_implemented(error: str | None) -> bool:
    return bool(error) and "raised NotImplementedError" in error  # type: ignore[operator]


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
                               example=run.label,
                               diagnosis=_template_sentence("update", run.update_error))
    return CheckResult(assignment, "update", "update", rubric.update, rubric.update, True,
                       f"Compared {what}: all match.")


def _unexpected(runs: Sequence[_ExampleRun]) -> list[ParameterReport]:
    seen: dict[str, ParameterReport] = {}
    for run in runs:
        for report in run.gradients:
            if report.status == "unexpected":
                seen.setdefault(report.name, report)
    return list(seen.values())


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
