"""One rubric, one verdict: score a student's assignment against the reference solution.

The grader and the pytest plugin both call :func:`grade_assignment`; nothing else scores.
It works the same for every kind of :mod:`gradcheck.assignments` (network, layer, loss):

* **forward** (``fprop``, ``affine_forward``, the loss of ``softmax_loss``): the value against
  the reference's, on every case (the worked examples and hidden random ones);
* **backward**, one check per gradient (``bprop: W1``, ``affine_backward: dx``): the
  gradient against the reference solution's. A gradient that disagrees with the reference
  but agrees with finite differences of the student's *own* forward pass, on every case
  where it disagrees, earns the rubric's ``consistent_fraction`` of its share (the backward
  pass is right for the forward pass the student wrote). That consistency check runs on
  every failing case, whether or not the forward value happened to fall within tolerance
  there, when the forward check fails on some case: a forward pass right on every case and
  yet with another gradient is flat, or faked, just around the graded points;
* **update** (networks only): against ``p - lr * dp`` with random gradients, never the
  reference ones.

A check passes only when it passes on every case. The reference answers are computed here,
in the grader, by running the reference solution through the same calls as the student's
code (:class:`LocalBox`); the student's child only receives inputs (and for a layer, the
random upstream gradient ``dout``), and everything it returns is validated before it is
compared.

Findings that never change a score go to the assignment's problems (inputs modified in place,
state kept between calls) or, for the instructor only, to its flags (a backward pass that
returns finite differences instead of derivatives).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from .assignments import CONSISTENCY_TOLERANCE, GRADING_TOLERANCE, Assignment, Call, Case, Layer, Loss, Network
from .evaluation import StudentError, scalar_loss
from .comparison import ParameterReport, compare_gradients, relative_error
from .diagnosis import (Diagnosis, annotate, diagnose_batch_sizes, diagnose_gradients,
                        diagnose_repeated_calls, diagnose_update)
from .diagnosis.sentences import consistent_with_own_fprop, mutates_inputs
from .differentiation import central_differences
from .results import AssignmentResult, CheckResult
from .sampling import restrict_to_entries

if TYPE_CHECKING:
    from .courses import Course
    from .isolation import Sandbox

__all__ = ["Rubric", "GradingOptions", "grade_assignment", "sandbox_for", "missing_assignment",
           "LocalBox", "GRADING_TOLERANCE"]

from .assignments import Rubric  # noqa: E402  (re-exported: the rubric lives with the model)

FigureWriter = Callable[[str, str, np.ndarray, np.ndarray], "str | None"]
"""``figures(assignment, parameter, analytic, reference) -> path`` of a saved heatmap, or None."""

# Two analytic float64 gradients agree to rounding (~1e-16, 1e-13 at worst); finite
# differences cannot get below ~1e-11 (truncation and cancellation), whatever the step.
_FINITE_DIFFERENCE_FLOOR = 1e-12
_FLOAT_MAX = sys.float_info.max


@dataclass(frozen=True)
class GradingOptions:
    """How to grade: seed, limits, examples, course."""

    seed: int = 0
    hidden: int = 3
    """Hidden random examples per assignment, besides the worked examples."""
    rubric: Rubric | None = None
    """Overrides every assignment's own rubric when given (``None``: the assignment's)."""
    timeout: float = 10.0
    memory_mb: int = 1024
    kernel: bool = False
    user: str | None = None
    course: str | None = None
    """The course folder (``None``: the bundled document course)."""

    def course_folder(self) -> Course:
        from .courses import load_course

        return load_course(self.course)


def sandbox_for(file: Path, options: GradingOptions, support: Path | None = None) -> Sandbox:
    """The sandbox that :func:`grade_assignment` runs ``file`` in (not started yet)."""
    from .isolation import Limits, Sandbox  # deferred: the grader process imports it lazily

    # A whole notebook may hold several slow demo cells, each stopped at the call limit.
    limits = Limits(call_timeout=options.timeout, load_timeout=max(30.0, 6 * options.timeout),
                    memory_mb=options.memory_mb)
    if support is None:
        support = options.course_folder().support
    return Sandbox(file, limits=limits, kernel=options.kernel, user=options.user, support=support)


def missing_assignment(assignment: Assignment, rubric: Rubric, reason: str,
                       source: str | None = None) -> AssignmentResult:
    """Zero points for every check, with one reason (file missing, not loadable...)."""
    return AssignmentResult(assignment.name, source, tuple(_zero_checks(assignment, rubric, reason)),
                            problems=(reason,))


def grade_assignment(
    assignment: Assignment,
    file: Path,
    options: GradingOptions,
    *,
    reference: ModuleType,
    relative_source: str | None = None,
    figures: FigureWriter | None = None,
    sandbox: Any = None,
) -> AssignmentResult:
    """Grade ``file`` (a module or notebook) for ``assignment``.

    Args:
        assignment: what is graded (a network, layer or loss of the course).
        file: the student's file, in a snapshot of the student's folder.
        options: seed, limits, rubric.
        reference: the reference solution, imported in the grader.
        relative_source: how to name the file in the results.
        figures: saves a heatmap of a wrong gradient and returns its relative path.
        sandbox: where the student's code runs: ``sandbox_for(file, options)`` (the default,
            closed here), a started one (the caller closes it), or a :class:`LocalBox`.
    """
    started = time.perf_counter()
    rubric = options.rubric or assignment.rubric
    source = relative_source or file.name
    owned = sandbox is None
    with sandbox_for(file, options) if owned else contextlib.nullcontext(sandbox) as box:
        loaded = box.load()
        problems = list(loaded.problems)
        if not loaded.ok:
            reason = loaded.error or f"{source} could not be loaded"
            result = missing_assignment(assignment, rubric, reason, source)
            return AssignmentResult(assignment.name, source, result.checks,
                                    tuple(problems) + (reason,), output=box.output,
                                    seconds=time.perf_counter() - started)
        missing = [f for f in assignment.functions if f not in loaded.names]
        if missing:
            problems.append(f"{source} does not define {', '.join(missing)}")
        references = _references(assignment, reference, options.seed, options.hidden)
        probe = next((i for i, ref in enumerate(references)
                      if ref.case.hidden and ref.case.batch_size > 1), 0)
        runs = [_run(box, assignment, ref, probe=i == probe) for i, ref in enumerate(references)]
        _check_consistency(box, assignment, runs)
        if isinstance(assignment, Network):
            _run_updates(box, assignment, runs)
        output = box.output
    problems += [found for run in runs for found in run.behaviour if found not in problems]
    # A key that is not a gradient costs nothing, but the student should know it is ignored.
    problems += [f"{report.message}; it was ignored" for report in _unexpected(runs)]
    checks = _checks(assignment, runs, rubric, figures)
    return AssignmentResult(assignment.name, source, tuple(checks), tuple(problems), output=output,
                            seconds=time.perf_counter() - started, flags=_flags(assignment, runs))


# -- the reference answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Reference:
    """One case and the reference solution's answers on it, the same for every student."""

    case: Case
    forward: Any
    """The loss (a float) or a layer's output (an array)."""
    gradients: Mapping[str, np.ndarray]
    dout: np.ndarray | None = None


class LocalBox:
    """The sandbox's interface over a module's functions, run in this process.

    The grader runs the *reference* solution through it (trusted code), so that the reference
    answers come from exactly the calls the student's code receives. The pytest plugin's
    in-process debugging mode runs student code through it too.
    """

    def __init__(self, namespace: Mapping[str, Any], problems: Sequence[str] = ()) -> None:
        self._namespace = dict(namespace)
        self._store: dict[str, Any] = {}
        self._problems = tuple(problems)
        self.output = ""

    def __enter__(self) -> LocalBox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._store.clear()

    def load(self) -> Any:
        from .isolation import LoadResult

        names = tuple(k for k, v in self._namespace.items() if callable(v))
        return LoadResult(True, names, self._problems, None, 0.0)

    def call(self, function: str, *args: Any, store: str | None = None,
             pick: str | int | None = None, **kwargs: Any) -> Any:
        from .isolation import CallResult
        from .loading import invoke

        outcome = invoke(self._namespace, self._store, function, args, kwargs, keep=store, pick=pick)
        return CallResult(outcome.ok, outcome.value, outcome.error, outcome.seconds)

    def call_many(self, function: str, arg_sets: list[tuple[Any, ...]], *,
                  pick: str | int | None = None, kwargs: Mapping[str, Any] | None = None,
                  each: bool = False) -> list[Any]:
        return [self.call(function, *args, pick=pick, **dict(kwargs or {})) for args in arg_sets]

    def call_nudged(self, function: str, args: tuple[Any, ...], nudges: list[Any], *,
                    pick: str | int | None = None, kwargs: Mapping[str, Any] | None = None
                    ) -> list[Any]:
        from .loading import nudged

        return self.call_many(function, [nudged(list(args), list(n)) for n in nudges],
                              pick=pick, kwargs=kwargs)


_REFERENCES: dict[tuple[str, str, int, int], tuple[_Reference, ...]] = {}


def _references(assignment: Assignment, module: ModuleType, seed: int,
                hidden: int) -> tuple[_Reference, ...]:
    # Computed once per run, not once per student (a course imports each reference module
    # once, under a name of its own); read-only, so no caller can change them.
    key = (assignment.name, module.__name__, seed, hidden)
    if key not in _REFERENCES:
        _REFERENCES[key] = _compute_references(assignment, module, seed, hidden)
    return _REFERENCES[key]


def _compute_references(assignment: Assignment, module: ModuleType, seed: int,
                        hidden: int) -> tuple[_Reference, ...]:
    box = LocalBox(vars(module))
    answers = []
    for case in assignment.cases(seed, hidden):
        run = _run(box, assignment, _Reference(case, None, {}), reference=True)
        failure = run.forward_error or run.backward_error
        if failure or not isinstance(run.gradients_value, Mapping):
            raise RuntimeError(f"the reference solution of {assignment.name} fails on "
                               f"{case.label}: {failure or run.gradients_value!r}")
        gradients = {k: _read_only(np.array(v, dtype=np.float64))
                     for k, v in run.gradients_value.items()}
        answers.append(_Reference(case, run.forward, gradients, run.dout))
    return tuple(answers)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _dout(assignment: Assignment, case: Case, out: Any) -> np.ndarray | None:
    """A layer's random upstream gradient: seeded by the case, shaped like the output."""
    if not isinstance(assignment, Layer):
        return None
    rng = np.random.default_rng(zlib.crc32(f"{assignment.name}/{case.label}".encode()))
    return _read_only(rng.standard_normal(np.shape(out)))


# -- running one case --------------------------------------------------------------------------


@dataclass
class _Run:
    reference: _Reference
    forward_error: str | None = None
    forward_seconds: float = 0.0
    """How long the student's forward call took: what finite differences of it will cost."""
    forward: Any = None
    """The student's loss (float) or output (array), when usable."""
    backward_error: str | None = None
    gradients_value: Any = None
    """What the backward pass returned, as a dict by gradient name when possible."""
    gradients: tuple[ParameterReport, ...] = ()
    dout: np.ndarray | None = None
    consistent: dict[str, bool] = field(default_factory=dict)
    numerical_own: Mapping[str, np.ndarray] | None = None
    simpler: dict[str, Diagnosis] = field(default_factory=dict)
    """Causes found without the own-forward hypothesis, for gradients consistent with it."""
    update_error: str | None = None
    update_report: tuple[ParameterReport, ...] = ()
    update_diagnosis: str = ""
    behaviour: tuple[str, ...] = ()
    """Inputs modified in place or stale state, found by repeated calls (never scored)."""

    @property
    def case(self) -> Case:
        return self.reference.case

    @property
    def label(self) -> str:
        return self.case.label


def _call(box: Any, call: Call) -> Any:
    return box.call(call.function, *call.args, store=call.store, pick=call.pick, **call.kwargs)


def _run(box: Any, assignment: Assignment, ref: _Reference, *, probe: bool = False,
         reference: bool = False) -> _Run:
    """Run one case: the forward pass, then the backward pass on its cache.

    The backward pass is called whenever the forward pass returned, even when its loss is
    not a usable scalar (document 003's per-example loss): its gradients are still graded.
    """
    run = _Run(ref)
    case = ref.case
    result = _call(box, assignment.forward_call(case))
    run.forward_seconds = float(result.seconds or 0.0)
    if not result.ok:
        run.forward_error = result.error
        run.backward_error = f"{_backward_name(assignment)} was not called because " \
                             f"{assignment.functions[0]} failed"
        return run
    value = _plain(result.value)
    if isinstance(assignment, Loss):
        value, run.gradients_value = _split_loss(assignment, value, run)
        if run.forward_error:
            return run
    run.forward_error, run.forward = _judge_forward(assignment, value, ref, reference)
    run.dout = _dout(assignment, case, run.forward) if reference else ref.dout
    if isinstance(assignment, Layer) and run.forward is None:
        run.backward_error = f"{assignment.backward} was not called: {assignment.forward} " \
                             "returned no usable output"
        return run
    backward = assignment.backward_call(case, run.dout)
    if backward is not None:
        answer = _call(box, backward)
        if not answer.ok:
            run.backward_error = answer.error
            return run
        run.gradients_value = assignment.gradients(_plain(answer.value))
    if reference:
        return run
    _compare_gradients(assignment, run)
    if probe and isinstance(assignment, Network):
        run.behaviour = _probe_behaviour(box, assignment, run)
    return run


def _backward_name(assignment: Assignment) -> str:
    return assignment.functions[1] if len(assignment.functions) > 1 else assignment.functions[0]


def _split_loss(assignment: Loss, value: Any, run: _Run) -> tuple[Any, Any]:
    """A loss function's (loss, grads): the loss to judge, the gradients by input name."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        run.forward_error = (f"{assignment.function} returned {_kind_of(value)}, not a pair "
                             f"(loss, {_grads_phrase(assignment)})")
        run.backward_error = run.forward_error
        return None, None
    return value[0], assignment.gradients(value[1])


def _grads_phrase(assignment: Assignment) -> str:
    names = getattr(assignment, "wrt", ())
    return ", ".join(f"d{n}" for n in names) if len(names) != 1 else f"d{names[0]}"


def _kind_of(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _judge_forward(assignment: Assignment, value: Any, ref: _Reference,
                   reference: bool) -> tuple[str | None, Any]:
    """(error, usable value): the loss or the output, checked against the reference."""
    if isinstance(assignment, Layer):
        return _judge_output(assignment, value, ref, reference)
    try:
        loss = scalar_loss(value)
    except StudentError as error:
        return str(error).replace("fprop", assignment.functions[0]), None
    if reference:
        return None, loss
    error = relative_error(np.array(loss), np.array(ref.forward), assignment.tol)
    if float(error) > assignment.tol.rtol:
        return (f"{assignment.functions[0]}'s loss is {loss:.10g}, the reference loss is "
                f"{ref.forward:.10g} (relative error {float(error):.2e})", loss)
    return None, loss


def _judge_output(assignment: Layer, value: Any, ref: _Reference,
                  reference: bool) -> tuple[str | None, Any]:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
        return (f"{assignment.forward} returned {_kind_of(value)} as out, not a numeric array "
                "(return (out, cache))"), None
    out = value.astype(np.float64)
    if reference:
        return None, out
    if out.shape != np.shape(ref.forward):
        return (f"{assignment.forward}'s out has shape {out.shape}, expected "
                f"{np.shape(ref.forward)} (the shape of dout)"), None
    reports, _ = compare_gradients({"out": out}, {"out": ref.forward}, assignment.tol,
                                   what=assignment.forward)
    if not reports[0].ok:
        return _mismatch_line("out", reports[0]), out
    return None, out


def _compare_gradients(assignment: Assignment, run: _Run) -> None:
    what = _backward_name(assignment)
    reports, problems = compare_gradients(run.gradients_value, run.reference.gradients,
                                          assignment.tol, what=what)
    run.backward_error = problems[0] if problems else None
    run.gradients = reports


def _annotate(assignment: Assignment, run: _Run) -> None:
    context = _diagnosis_context(assignment, run.case)
    run.gradients = annotate(run.gradients, run.gradients_value, run.reference.gradients,
                             numerical_own=run.numerical_own, **context)
    if any(run.consistent.values()) and isinstance(run.gradients_value, Mapping):
        # The own-forward verdict hides any other cause; ask again without it, so that a
        # loss averaged instead of summed is named as the factor 1/m as well.
        run.simpler = diagnose_gradients(run.gradients_value, run.reference.gradients, **context)


def _diagnosis_context(assignment: Assignment, case: Case) -> dict[str, Any]:
    """What the diagnosis needs to speak of this assignment in its own terms."""
    network, example = _network_context(assignment, case)
    forward = assignment.functions[0]
    inputs = None if isinstance(assignment, Network) else dict(case.inputs)
    return {"network": network, "example": example, "batch_size": case.batch_size,
            "loss": getattr(assignment, "loss", None), "functions": (forward, _backward_name(assignment)),
            "dims": dict(case.sizes) or None, "inputs": inputs}


def _network_context(assignment: Assignment, case: Case) -> tuple[Any, Any]:
    """The document network and example the diagnosis can replay bugs on, when there is one."""
    if isinstance(assignment, Network) and assignment.reference is not None:
        return assignment.reference, case.detail
    return None, None


# -- the own-forward consistency check ----------------------------------------------------------


def _check_consistency(box: Any, assignment: Assignment, runs: Sequence[_Run]) -> None:
    """On every case with a wrong gradient: does it match the student's own forward pass?"""
    # Only a forward pass that is wrong somewhere earns credit for a backward pass consistent
    # with it: one right on every case, with another slope, is flat (or faked) just around
    # the graded points (returning the same loss for every nearby call made a bprop of zeros
    # "consistent": half of every gradient's share for nothing). A gradient earns that share
    # only when consistent on every case where it is wrong: once inconsistent on one, a large
    # one is not differentiated again (it would cost half the call time limit per case).
    wrong_forward = any(run.forward_error for run in runs)
    settled: set[str] = set()
    for run in runs:
        wrong = {r.name for r in run.gradients if not r.ok}
        if wrong_forward and wrong - settled and isinstance(run.gradients_value, Mapping):
            run.consistent, run.numerical_own = _consistent_with_own_forward(
                box, assignment, run, settled)
            settled |= {name for name in wrong if not run.consistent.get(name, False)}
        _annotate(assignment, run)


def _consistent_with_own_forward(box: Any, assignment: Assignment, run: _Run,
                                 settled: set[str] = frozenset()  # type: ignore[assignment]
                                 ) -> tuple[dict[str, bool], dict[str, np.ndarray] | None]:
    """Per gradient: does it match finite differences of the student's own objective?

    The perturbed forward calls run in the child, in one round trip that sends the inputs
    once and one changed entry per call; the differences are taken here. A large parameter
    is differentiated on a sample (:func:`_own_entries`). Returns the verdict and the
    numerical gradient (NaN off the sample; None when the student's forward pass fails on
    a perturbed input).
    """
    case = run.case
    values = {k: np.array(v, dtype=np.float64) for k, v in assignment.values(case).items()}
    base = assignment.perturbed_call(case, values)  # every input, the differentiated or not
    entries = _own_entries(values, run, _own_budget(box, run), settled)
    values = {k: v for k, v in values.items() if k not in entries or entries[k].size}
    eps = CONSISTENCY_TOLERANCE.eps
    nudges = [(*assignment.position(key), int(i), float(v[i]) + sign * eps)
              for key, v in ((k, a.reshape(-1)) for k, a in values.items())
              for i in (entries[key] if key in entries else range(v.size)) for sign in (1.0, -1.0)]
    results = iter(box.call_nudged(base.function, base.args, nudges, pick=base.pick,
                                   kwargs=dict(base.kwargs)))

    def replay(_: Mapping[str, np.ndarray]) -> float:
        result = next(results)
        if not result.ok:
            raise ValueError(result.error)
        value = _plain(result.value)
        if isinstance(assignment, Layer):
            if np.shape(value) != np.shape(run.dout):
                raise ValueError("output shape")
            return assignment.objective(np.asarray(value, dtype=np.float64), run.dout)
        return scalar_loss(value)

    try:
        numerical = central_differences(replay, values, eps, entries).gradient
    except (ValueError, StopIteration, StudentError, TypeError):
        return {}, None
    answered = {k: v for k, v in run.gradients_value.items() if k in numerical}
    reports, _ = compare_gradients(answered, numerical, CONSISTENCY_TOLERANCE)
    reports = restrict_to_entries(reports, answered, numerical, entries, CONSISTENCY_TOLERANCE)
    return {r.name: r.ok for r in reports}, numerical


# Finite differences of the student's own forward pass cost 2 forward calls per entry, in the
# call time limit: a parameter larger than this is differentiated on this many entries, or
# fewer when the forward pass is slow (but never fewer than _OWN_MINIMUM). Half of them are
# the entries farthest from the reference, where an inconsistent bug shows; a few dozen
# decide the verdict, and every one costs two forward passes of every buggy student.
OWN_SAMPLE = 60
_OWN_MINIMUM = 10


def _own_budget(box: Any, run: _Run) -> int | None:
    """Entries the differences may take: a quarter of the call time limit at 2 forward calls each.

    None when there is no limit (the reference's box, the plugin's in-process debugging).
    """
    limit = getattr(getattr(box, "limits", None), "call_timeout", None)
    if limit is None:
        return None
    return int(0.25 * limit / (2 * max(run.forward_seconds, 1e-5)))


def _own_entries(values: Mapping[str, np.ndarray], run: _Run, budget: int | None = None,
                 settled: set[str] = frozenset()  # type: ignore[assignment]
                 ) -> dict[str, np.ndarray]:
    """Flat indices to differentiate, for the parameters too large to differentiate whole.

    A gradient that matched the reference needs no verdict (an empty sample) once the
    parameters are large. A wrong one is sampled where it is wrong: its entries farthest
    from the reference first (a bug in a few entries is never sampled away, so it cannot
    earn the consistency share), then seeded random entries. ``budget`` (entries in all)
    shrinks the sample of every parameter when the forward pass is slow; ``settled``
    gradients, found inconsistent on an earlier case, are left out of a large problem.
    """
    total = sum(v.size for v in values.values())
    wrong = [k for k in values if not getattr(_report(run, k), "ok", False)
             and (total <= OWN_SAMPLE or k not in settled)]
    size = OWN_SAMPLE if budget is None else max(
        _OWN_MINIMUM, min(OWN_SAMPLE, budget // max(len(wrong), 1)))
    small = total <= min(OWN_SAMPLE, size)
    chosen = {}
    for position, (key, value) in enumerate(values.items()):
        if value.size <= size and (small or key in wrong):
            continue
        mine = run.gradients_value.get(key)
        if key not in wrong or np.shape(mine) != value.shape:
            chosen[key] = np.zeros(0, dtype=np.intp)
            continue
        error = np.abs(np.asarray(mine, dtype=np.float64) - run.reference.gradients[key]).reshape(-1)
        worst = np.argsort(-error, kind="stable")[: size // 2]
        rng = np.random.default_rng([zlib.crc32(run.label.encode()), position])
        others = rng.permutation(np.setdiff1d(np.arange(value.size), worst))
        chosen[key] = np.sort(np.concatenate([worst, others[: size - worst.size]]))
    return chosen


# -- repeated calls: inputs changed in place, state between calls (networks) ------------------------


def _probe_behaviour(box: Any, assignment: Network, run: _Run) -> tuple[str, ...]:
    """Sentences about inputs modified in place or stale state; empty when all is well."""
    if not isinstance(run.gradients_value, Mapping):
        return ()
    found = [_bprop_twice(box, assignment, run), _fprop_inputs(box, assignment, run.case)]
    return tuple(sentence for sentence in found if sentence)


def _bprop_twice(box: Any, assignment: Network, run: _Run) -> str | None:
    from .wire import Ref

    again = box.call("bprop", Ref("cache"))
    if not again.ok:
        return (f"a second call of bprop on the same cache failed ({again.error}): bprop must "
                "not change the cache it is given or depend on an earlier call")
    first = run.gradients_value
    differ = _repeated(first, _plain(again.value))
    if not differ:
        return None
    # Same inputs, a fresh cache: the first answer again means the state lived in the cache.
    fresh = _call(box, Call(**{**vars(assignment.forward_call(run.case)), "store": "fresh_cache"}))
    third = box.call("bprop", Ref("fresh_cache")) if fresh.ok else None
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


def _fprop_inputs(box: Any, assignment: Network, case: Case) -> str | None:
    x, y, params, options = assignment.split(case)
    whole = box.call("fprop", x, y, params, **options)
    cache = _plain(whole.value) if whole.ok else None
    if not isinstance(cache, Mapping):
        return None  # a cache that cannot be sent back is the student's right
    original = assignment.values(case)
    sent = {"x": case.inputs["x"], "X": case.inputs["x"], "y": case.inputs["y"],
            "Y": case.inputs["y"], **original}
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    for key, value in sent.items():
        if _same_kind(cache.get(key), value):
            before[key], after[key] = value, cache[key]
    stored = cache.get("params")
    if isinstance(stored, Mapping):
        kept = {k: v for k, v in original.items() if _same_kind(stored.get(k), v)}
        before["params"] = kept
        after["params"] = {k: stored[k] for k in kept}
    names = list(original)
    found = diagnose_repeated_calls({names[0]: 0.0}, {names[0]: 0.0}, before=before,
                                    after=after, who="fprop")
    return found[names[0]].sentence if found else None


def _same_kind(stored: object, sent: np.ndarray) -> bool:
    # Only an exact float64 copy is comparable: a student may keep x as float32 on purpose.
    return (isinstance(stored, np.ndarray) and stored.dtype == np.float64
            and stored.shape == np.shape(sent))


# -- update (networks) ----------------------------------------------------------------------------


def _run_updates(box: Any, assignment: Network, runs: Sequence[_Run]) -> None:
    """Check update on every case, in one round trip to the child."""
    arg_sets, expected = [], []
    for run in runs:
        params = {k: np.array(v) for k, v in assignment.values(run.case).items()}
        rng = np.random.default_rng(zlib.crc32(run.label.encode()))
        grads = {k: rng.uniform(-1, 1, size=v.shape) for k, v in params.items()}
        lr = run.case.lr if run.case.lr is not None else 0.1
        expected.append({k: params[k] - lr * grads[k] for k in params})
        arg_sets.append((params, grads, lr))
    results = box.call_many("update", arg_sets, each=True)
    for run, result, wanted, (params, grads, lr) in zip(runs, results, expected, arg_sets):
        _judge_update(run, result, wanted)
        # A call that raised or was stopped has its sentence already: no cause to guess.
        if result.ok and (run.update_error or any(not r.ok for r in run.update_report)):
            found = diagnose_update(_plain(result.value), params, grads, lr)
            run.update_diagnosis = next((d.sentence for d in found.values() if d.recognised), "")


def _judge_update(run: _Run, result: Any, expected: Mapping[str, np.ndarray]) -> None:
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
    """Unwrap array subclasses (np.matrix...) the wire marks, recursively through containers.

    A Python int beyond float64's range (``10**400``: the wire carries ints of up to 10,000
    bits) becomes an infinity of its sign, so that it reads as the non-finite number it is
    instead of raising OverflowError wherever a float is made of it.
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _FLOAT_MAX:
        return math.inf if value > 0 else -math.inf
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    array = getattr(value, "array", None)
    if isinstance(array, np.ndarray) and hasattr(value, "type_name"):
        return array
    return value


# -- turning runs into scored checks ------------------------------------------------------------


def _gradient_names(assignment: Assignment, runs: Sequence[_Run] = ()) -> list[str]:
    if runs:
        return list(runs[0].reference.gradients)
    if isinstance(assignment, Network) and assignment.reference is not None:
        return assignment.param_names()
    return list(assignment.wrt)


def _zero_checks(assignment: Assignment, rubric: Rubric, reason: str) -> list[CheckResult]:
    name = assignment.name
    shares = rubric.shares(_gradient_names(assignment))
    checks = [CheckResult(name, assignment.forward_check, "fprop", 0.0, rubric.forward, False, reason)]
    checks += [CheckResult(name, assignment.gradient_check(p), "bprop", 0.0, share, False, reason)
               for p, share in shares.items()]
    if assignment.update_function:
        checks.append(CheckResult(name, "update", "update", 0.0, rubric.update, False, reason))
    return checks


def _checks(assignment: Assignment, runs: Sequence[_Run], rubric: Rubric,
            figures: FigureWriter | None) -> list[CheckResult]:
    checks = [_forward_check(assignment, runs, rubric)]
    shares = rubric.shares(_gradient_names(assignment, runs))
    checks += [_gradient_check(assignment, p, runs, share, rubric, figures)
               for p, share in shares.items()]
    if assignment.update_function:
        checks.append(_update_check(assignment.name, runs, rubric))
    return checks


def _examples_phrase(runs: Sequence[_Run]) -> str:
    hidden = sum(1 for r in runs if r.case.hidden)
    worked = len(runs) - hidden
    first = runs[0].label if runs and not runs[0].case.hidden else "the worked example"
    parts = ([first if worked == 1 else f"{worked} worked examples"] if worked else []) + (
        [f"{hidden} hidden examples"] if hidden else [])
    return " and ".join(parts)


def _forward_check(assignment: Assignment, runs: Sequence[_Run], rubric: Rubric) -> CheckResult:
    name, check = assignment.name, assignment.forward_check
    failed = next((r for r in runs if r.forward_error), None)
    thing = "output" if isinstance(assignment, Layer) else "loss"
    what = (f"your {assignment.functions[0]}'s {thing} against the reference {thing} on "
            f"{_examples_phrase(runs)}")
    if failed is None:
        return CheckResult(name, check, "fprop", rubric.forward, rubric.forward, True,
                           f"Compared {what}: all match.")
    return CheckResult(name, check, "fprop", 0.0, rubric.forward, False,
                       f"Compared {what}: failed on {failed.label}.",
                       details=(failed.forward_error or "",), example=failed.label,
                       diagnosis=_template_sentence(assignment.functions[0], failed.forward_error)
                       or _overflow(failed, thing) or _loss_factor(assignment, failed))


def _overflow(run: _Run, what: str) -> str:
    """The cause of an inf or nan where the reference is finite, on inputs large enough for exp
    to overflow (above about 709 in float64), else ""."""
    error = run.forward_error or ""
    if not error.endswith(("is inf", "is -inf", "is nan")):
        return ""
    largest = max((float(np.max(np.abs(v))) for v in run.case.inputs.values()
                   if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size), default=0.0)
    if largest < 100 or not np.all(np.isfinite(run.reference.forward)):
        return ""
    return (f"your {what} overflowed on this example, whose inputs reach {largest:g}: exp(x) is "
            f"inf in float64 for x above about 709. Subtract each row's maximum before exp "
            f"(a softmax does not change when a constant is subtracted from a row).")


def _loss_factor(assignment: Assignment, run: _Run) -> str:
    """Name a wrong loss that is the reference times a recognisable factor, else ""."""
    if isinstance(assignment, Layer) or run.forward is None or not run.reference.forward:
        return ""
    m = run.case.batch_size
    ratio = run.forward / run.reference.forward
    named = {
        "the reference loss divided by the batch size m = {m}: the loss is the sum over the "
        "batch, not the mean": 1.0 / m,
        "m = {m} times the reference loss: the loss is the mean over the batch, not the sum"
        if isinstance(assignment, Loss) or assignment.reference is None else
        "m = {m} times the reference loss: sum the loss over the batch once": float(m),
        "the reference loss with the sign flipped": -1.0,
    }
    if getattr(assignment, "loss", None) == "squared":
        named["twice the reference loss: the squared loss has the factor 0.5"] = 2.0
        named["half the reference loss: this network's loss has no factor 0.5"] = 0.5
    else:
        named["twice the reference loss"] = 2.0
        named["half the reference loss"] = 0.5
    for words, factor in named.items():
        if factor != 1.0 and abs(ratio - factor) <= GRADING_TOLERANCE.rtol * abs(factor):
            return f"your loss is {words.format(m=m)}."
    return ""


def _gradient_check(assignment: Assignment, param: str, runs: Sequence[_Run], share: float,
                    rubric: Rubric, figures: FigureWriter | None) -> CheckResult:
    name, check = assignment.name, assignment.gradient_check(param)
    what = (f"your {_backward_name(assignment)}'s d{param} against the reference gradient on "
            f"{_examples_phrase(runs)}")
    results = [(r, _report(r, param)) for r in runs]
    failing = [(r, rep) for r, rep in results if rep is None or not rep.ok]
    if not failing:
        return CheckResult(name, check, "bprop", share, share, True, f"Compared {what}: all match.")
    failing = _telling_first(failing)
    run, report = failing[0]
    consistent = all(r.consistent.get(param, False) for r, _ in failing)
    diagnosis = _diagnosis(assignment, param, results, failing, consistent)
    score = share * rubric.consistent_fraction if consistent else 0.0
    figure = None
    if figures is not None and report is not None and report.status == "mismatch":
        student = np.asarray(run.gradients_value[param], dtype=np.float64)
        figure = figures(name, param, student, run.reference.gradients[param])
    return CheckResult(name, check, "bprop", round(score, 6), share, False,
                       f"Compared {what}: failed on {run.label}.",
                       details=(_failure_line(run, param, report, _backward_name(assignment)),),
                       diagnosis=diagnosis, example=run.label,
                       relative_error=_finite(report.max_relative_error) if report else None,
                       figure=figure)


def _telling_first(failing: Sequence[tuple[_Run, Any]]) -> list[tuple[_Run, Any]]:
    """The failing runs, the one whose numbers tell the cause apart first.

    At a batch of two, a factor 2 and the batch size are the same number: a softmax
    gradient missing its 1/N reads as "scaled by 2". Another batch size tells them apart.
    """
    found = failing[0][1].extras.get("diagnosis") if failing[0][1] is not None else None
    if (failing[0][0].case.batch_size != 2 or not isinstance(found, Diagnosis)
            or found.evidence.get("factor_name") not in ("2", "1/2")):
        return list(failing)
    other = next((i for i, (run, rep) in enumerate(failing)
                  if rep is not None and run.case.batch_size != 2), None)
    if other is None:
        return list(failing)
    return [failing[other], *failing[:other], *failing[other + 1:]]


def _diagnosis(assignment: Assignment, param: str, results: Sequence[tuple[_Run, Any]],
               failing: Sequence[tuple[_Run, Any]], consistent: bool) -> str:
    """One diagnosis sentence for a failing gradient, each cause said once."""
    run, report = failing[0]
    if report is None or not isinstance(run.gradients_value, Mapping):
        return _unanswered(assignment, run, param)
    found = report.extras.get("diagnosis")
    found = found if isinstance(found, Diagnosis) else None
    one = next((r for r, rep in results if rep is not None and rep.ok and r.case.batch_size == 1), None)
    if one is not None and all(r.case.batch_size > 1 for r, _ in failing) and (
            found is None or not found.recognised):
        # Right at m = 1, wrong at m > 1, and no specific cause at m > 1 (a missing
        # derivative can hide at m = 1 too; that cause is the more useful one).
        found = _batch_diagnosis(assignment, param, one, run) or found
    overflow = _overflow(run, "loss") if found is None or not found.recognised else ""
    if overflow:
        return f"{overflow} d{param} is computed from the same overflowed values."
    if not consistent:
        return found.sentence if found is not None else report.hint
    own = found if found is not None and found.cause == "consistent_with_own_fprop" else \
        consistent_with_own_fprop(param, {})
    forward, backward = assignment.functions[0], _backward_name(assignment)
    who = (f"your d{param} is the gradient of the loss your {forward} computes"
           if forward == backward else f"your {backward} is consistent with your {forward}")
    sentence = f"{who}: {own.sentence}{_own_sample_note(run, param)}"
    simpler = run.simpler.get(param)
    if simpler is not None and simpler.recognised and simpler.cause != own.cause:
        sentence += f" The numbers also show a simpler pattern: {simpler.sentence}"
    return sentence


def _own_sample_note(run: _Run, param: str) -> str:
    """What the consistency verdict of a sampled parameter rests on, else ""."""
    own = (run.numerical_own or {}).get(param)
    checked = int(np.isfinite(own).sum()) if own is not None else 0
    if own is None or checked == own.size:
        return ""
    return (f" Checked with finite differences of your forward pass on {checked} of "
            f"{own.size} entries of d{param} (those farthest from the reference, then a seeded "
            "sample).")


def _batch_diagnosis(assignment: Assignment, param: str, one: _Run, many: _Run) -> Diagnosis | None:
    context = _diagnosis_context(assignment, many.case)
    found = diagnose_batch_sizes(one.gradients_value, one.reference.gradients,
                                 many.gradients_value, many.reference.gradients,
                                 network=context["network"], example_many=context["example"],
                                 batch_size=many.case.batch_size, loss=context["loss"],
                                 functions=context["functions"], dims=context["dims"])
    return found.get(param)


def _unanswered(assignment: Assignment, run: _Run, param: str) -> str:
    """The cause when the backward pass gave no gradient at all: not implemented, or no forward."""
    answer = run.gradients_value
    if _not_implemented(run.backward_error):
        answer = NotImplementedError()
    if answer is not None and not isinstance(answer, Mapping):  # an exception, or not a dict
        return diagnose_gradients(answer, run.reference.gradients)[param].sentence
    forward = assignment.functions[0]
    if _not_implemented(run.forward_error):
        return (f"{_backward_name(assignment)} could not be checked: {forward} is not "
                "implemented yet (it raises NotImplementedError), and its cache is needed.")
    return ""


def _template_sentence(function: str, error: str | None) -> str:
    """The cause of a function that is still the assignment's template, else ""."""
    if not _not_implemented(error):
        return ""
    what = {"fprop": "the forward pass, returning the cache with its \"loss\"",
            "update": "one gradient-descent step, p - lr * dp for every parameter"}.get(
        function, "its code")
    return (f"{function} is not implemented yet (it raises NotImplementedError): replace the "
            f"`raise NotImplementedError` with {what}.")


def _not_implemented(error: str | None) -> bool:
    return bool(error) and "raised NotImplementedError" in error  # type: ignore[operator]


def _update_check(assignment: str, runs: Sequence[_Run], rubric: Rubric) -> CheckResult:
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
                               diagnosis=_template_sentence("update", run.update_error)
                               or run.update_diagnosis)
    return CheckResult(assignment, "update", "update", rubric.update, rubric.update, True,
                       f"Compared {what}: all match.")


def _unexpected(runs: Sequence[_Run]) -> list[ParameterReport]:
    seen: dict[str, ParameterReport] = {}
    for run in runs:
        for report in run.gradients:
            if report.status == "unexpected":
                seen.setdefault(report.name, report)
    return list(seen.values())


def _report(run: _Run, param: str) -> ParameterReport | None:
    return next((rep for rep in run.gradients if rep.name == param), None)


def _failure_line(run: _Run, param: str, report: ParameterReport | None, backward: str) -> str:
    # Gradients in a list or a tuple: the error says so, "no gradient for W1" would not.
    if report is None or not isinstance(run.gradients_value, Mapping):
        return run.backward_error or f"{backward} returned no gradient for {param}"
    if report.status != "mismatch":
        return report.message
    return _mismatch_line(f"d{param}", report)


def _mismatch_line(what: str, report: ParameterReport) -> str:
    index = list(report.worst_index or ())
    return (f"{what}{index}: yours {report.analytic:.8g}, expected {report.reference:.8g} "
            f"(relative error {report.max_relative_error:.2e}; {report.mismatched} of "
            f"{report.size} entries differ)")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# -- instructor-only flags -------------------------------------------------------------------------


def _flags(assignment: Assignment, runs: Sequence[_Run]) -> tuple[str, ...]:
    """Signals for the instructor that never change a score."""
    flag = _finite_difference_flag(assignment, runs)
    return (flag,) if flag else ()


def _finite_difference_flag(assignment: Assignment, runs: Sequence[_Run]) -> str | None:
    """A backward pass that returns finite differences of the forward pass, not derivatives.

    Two analytic float64 gradients agree to rounding (``||a - r|| / (||a|| + ||r||)`` about
    1e-16, 1e-13 at worst); finite differences cannot get below about 1e-11 (truncation and
    cancellation), whatever the step. When every gradient passes on every case and the
    typical disagreement is of the second size, the gradients were computed numerically.
    """
    differences = []
    for run in runs:
        for report in run.gradients:
            if report.status == "unexpected":
                continue
            value = run.gradients_value.get(report.name) if isinstance(run.gradients_value, Mapping) else None
            if not report.ok or not isinstance(value, np.ndarray) or value.dtype != np.float64:
                return None  # float32 work has errors of this size for honest reasons
            if np.any(run.reference.gradients[report.name]):  # a zero gradient tells nothing
                differences.append(report.norm_difference)
    if len(differences) < 2 or float(np.median(differences)) < _FINITE_DIFFERENCE_FLOOR:
        return None
    return (f"{_backward_name(assignment)} looks like finite differences, not backpropagation: "
            f"its gradients differ from the reference by {min(differences):.1e} to "
            f"{max(differences):.1e} (norm of the difference over the norms) on {len(runs)} "
            "examples, where two analytic float64 gradients agree to about 1e-16 (1e-13 at worst)")
