"""pytest plugin for gradcheck (registered through the ``pytest11`` entry point).

Adds, for instructors' test files and students' own CI:

- ``--submission PATH`` (a ``.py`` module, a ``.ipynb`` notebook, or a folder of them) and
  ``--submission-missing=skip|fail``; the ``submission`` fixture: ``submission("two_hidden")``
  is the student's assignment (``.fprop``, ``.bprop``, ``.update`` and ready-made checks);
- the ``reference_network`` fixture, parametrised over the six networks, narrowed with
  ``@pytest.mark.network("two_hidden")`` or an indirect parameter;
- ``@pytest.mark.points(N)`` and ``@pytest.mark.visibility("after_due_date")``: a
  ``Score: X / Y`` line at the end and, with ``--gradescope-results PATH``, Gradescope's
  ``results.json`` (rendered by :func:`gradcheck.reports.gradescope_json`, like the grader's);
- ``--gradcheck-seed N`` for the random examples, printed in the header.

- ``--course DIR``: the course whose assignments and reference solutions are used;
- ``--gradcheck-in-process``: run the student's code in the pytest process, for debugging.

Student code runs in the grader's sandboxed child (time and memory limits, a scratch copy,
confinement), and the checks are the grader's own verdict: the same points as ``grader.py``.

Example test file (``pytest --submission student/ --gradescope-results results.json``)::

    import pytest

    @pytest.mark.points(6)
    def test_bprop(submission):
        submission("two_hidden").check_gradients()
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Importing this module happens in every pytest run once gradcheck is installed: numpy and
# the rest of gradcheck are imported only when a fixture or a check is used.

__all__ = ["Assignment", "Submission"]

_MISSING_POLICIES = ("skip", "fail")
_DEFAULT_SEED = 0
_FAILURE_CHARS = 4_000


@dataclass
class _Outcome:
    """How one test fared, for the score and results.json."""

    name: str
    points: float
    visibility: str
    ran: bool = False
    failed: bool = False
    message: str = ""
    credit: float | None = None
    """Share of the points its verdict checks earned (partial credit), when it asked any."""

    @property
    def passed(self) -> bool:
        """Earned its points: the test body ran and nothing failed (a skip earns nothing)."""
        return self.ran and not self.failed

    @property
    def earned(self) -> float:
        if self.passed:
            return self.points
        return round(self.points * self.credit, 6) if self.credit else 0.0


@dataclass
class _State:
    seed: int
    submission: Path | None
    missing: str
    course: str | None = None
    in_process: bool = False
    started: float = field(default_factory=time.monotonic)
    credits: list[tuple[float, float]] = field(default_factory=list)
    """(earned, max) of the verdict checks the running test asked for."""
    outcomes: dict[str, _Outcome] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


_STATE = pytest.StashKey[_State]()


# -- hooks -----------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare gradcheck's options in their own group."""
    group = parser.getgroup("gradcheck", "gradcheck: grade hand-written backprop")
    group.addoption("--submission", metavar="PATH", default=None,
                    help="the student's submission: a .py module, a .ipynb notebook, or a folder of them")
    group.addoption("--submission-missing", choices=_MISSING_POLICIES, default="skip",
                    help="when an assignment's file is missing: skip its tests (default) or fail them; "
                         "either way they score 0")
    group.addoption("--gradescope-results", metavar="PATH", default=None,
                    help="write Gradescope's results.json here, one test entry per test")
    group.addoption("--gradcheck-seed", type=int, default=None, metavar="N",
                    help=f"seed of the random examples (default {_DEFAULT_SEED})")
    group.addoption("--course", dest="gradcheck_course", metavar="DIR", default=None,
                    help="course folder (course.py, reference solutions, support/); "
                         "default: the bundled document course")
    group.addoption("--gradcheck-in-process", action="store_true", default=False,
                    help="run the student's code in the pytest process instead of the sandbox "
                         "(debugging only: the code can then read and change anything)")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and keep the run's settings in the stash."""
    config.addinivalue_line("markers", "points(n): the test is worth n points (Score: X / Y, results.json)")
    config.addinivalue_line("markers", "visibility(v): Gradescope visibility of the test: visible, hidden, "
                                       "after_due_date or after_published")
    config.addinivalue_line("markers", "network(*names): run the test with reference_network set to these "
                                       "networks only")
    path = config.getoption("--submission")
    seed = config.getoption("--gradcheck-seed")
    config.stash[_STATE] = _State(
        seed=_DEFAULT_SEED if seed is None else seed,
        submission=(config.invocation_params.dir / path) if path else None,
        missing=config.getoption("--submission-missing"),
        course=config.getoption("gradcheck_course"),
        in_process=config.getoption("--gradcheck-in-process"),
    )


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Print the seed and the submission, so every run can be reproduced."""
    state = config.stash[_STATE]
    where = str(state.submission) if state.submission else "none (use --submission PATH)"
    return [f"gradcheck: seed={state.seed} (--gradcheck-seed), submission={where}"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``reference_network`` over the networks of its marker, or all six."""
    if "reference_network" not in metafunc.fixturenames or _parametrized_by_user(metafunc):
        return
    from .networks import NAMES

    marker = metafunc.definition.get_closest_marker("network")
    names = tuple(marker.args) if marker and marker.args else NAMES
    metafunc.parametrize("reference_network", names, indirect=True, ids=list(names))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Check the points and visibility markers of the selected tests; they make up the score."""
    from .reports import VISIBILITIES

    state = session.config.stash[_STATE]
    for item in session.items:
        points = item.get_closest_marker("points")
        visibility = item.get_closest_marker("visibility")
        if points is not None and (len(points.args) != 1 or not _is_number(points.args[0])):
            raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.points(N) with one number N >= 0")
        if visibility is not None and (len(visibility.args) != 1 or visibility.args[0] not in VISIBILITIES):
            raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.visibility(V) with V one of "
                                    f"{', '.join(VISIBILITIES)}")
        file, _, rest = item.nodeid.partition("::")
        state.outcomes[item.nodeid] = _Outcome(
            name=f"{Path(file).name}::{rest}" if rest else item.nodeid,
            points=float(points.args[0]) if points else 0.0,
            visibility=visibility.args[0] if visibility else "visible",
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Record each test's outcome; show a gradient mismatch as its table, not a traceback."""
    result = yield
    report: pytest.TestReport = result.get_result()
    outcome = item.config.stash[_STATE].outcomes.get(item.nodeid)
    if outcome is None:
        return
    state = item.config.stash[_STATE]
    if report.when == "setup":
        state.credits.clear()
    if report.when == "call":
        earned, total = (sum(c) for c in zip(*state.credits)) if state.credits else (0.0, 0.0)
        outcome.credit = earned / total if total else None
        state.credits.clear()
    if report.when == "call" and report.passed:
        outcome.ran = True
    if report.failed or (report.skipped and report.when != "teardown"):
        outcome.failed = True
        if not outcome.message:
            outcome.message = _failure_message(call, report)
    if report.failed and call.excinfo is not None and _is_mismatch(call.excinfo.value):
        report.longrepr = _short_longrepr(item, call.excinfo)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print ``Score: X / Y`` over the tests marked with points."""
    outcomes = [o for o in config.stash[_STATE].outcomes.values() if o.points]
    if not outcomes:
        return
    terminalreporter.write_sep("=", "gradcheck score")
    for o in outcomes:
        if not o.passed:
            terminalreporter.write_line(f"lost {_fmt(o.points - o.earned)}: {o.name}")
    score, total = _score(outcomes)
    terminalreporter.write_line(f"Score: {_fmt(score)} / {_fmt(total)}", bold=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write Gradescope's results.json when asked to, whatever the tests' outcomes."""
    path = session.config.getoption("--gradescope-results")
    if not path:
        return
    from .reports import ResultEntry, atomic_write, gradescope_json

    state = session.config.stash[_STATE]
    entries = [ResultEntry(o.name, o.earned, o.points,
                           o.message or ("" if o.passed else "the test did not run"), o.visibility, o.passed)
               for o in state.outcomes.values()]
    data = gradescope_json(entries, execution_time=time.monotonic() - state.started,
                           output="\n".join(dict.fromkeys(state.problems)))
    import json

    atomic_write(session.config.invocation_params.dir / path, json.dumps(data, indent=2) + "\n")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def submission(pytestconfig: pytest.Config) -> Iterator[Submission]:
    """The student's submission: ``submission("two_hidden")`` is that assignment, loaded once."""
    state = pytestconfig.stash[_STATE]
    loaded = Submission(state.submission, missing=state.missing, seed=state.seed,
                        problems=state.problems, course=state.course, in_process=state.in_process,
                        credits=state.credits)
    yield loaded
    loaded.close()


@pytest.fixture
def reference_network(request: pytest.FixtureRequest) -> Any:
    """A reference network (``gradcheck.networks.Network``); parametrised over all six by default."""
    from . import networks

    name = getattr(request, "param", None)
    if name is None:
        pytest.fail("reference_network needs a name: use @pytest.mark.network(\"two_hidden\") or "
                    "parametrize it with indirect=True", pytrace=False)
    return networks.get(name)


@pytest.fixture(scope="session")
def gradcheck_seed(pytestconfig: pytest.Config) -> int:
    """The seed of this run's random examples (``--gradcheck-seed``)."""
    return pytestconfig.stash[_STATE].seed


# -- the submission --------------------------------------------------------------------------


class Submission:
    """The ``--submission`` path, loading each assignment at most once per session.

    Calling it with an assignment name returns an :class:`Assignment`. A missing file skips
    or fails the calling test (``--submission-missing``); a file that cannot be loaded (a
    syntax error, an import that raises) always fails it: a broken file must cost points.
    """

    def __init__(self, path: Path | None, *, missing: str = "skip", seed: int = _DEFAULT_SEED,
                 problems: list[str] | None = None, course: str | None = None,
                 in_process: bool = False, credits: list[tuple[float, float]] | None = None) -> None:
        self.path = path
        self.missing = missing
        self.seed = seed
        self.course = course
        self.in_process = in_process
        self._problems = problems if problems is not None else []
        self._credits = credits if credits is not None else []
        self._loaded: dict[str, Assignment | str] = {}

    def __call__(self, name: str) -> Assignment:
        course = self._course()
        if name not in course.assignments:
            pytest.fail(f"submission({name!r}): no such assignment in the course {course.title!r}; "
                        f"choose one of {', '.join(course.names)}", pytrace=False)
        if name not in self._loaded:
            self._loaded[name] = self._load(name)
        loaded = self._loaded[name]
        if isinstance(loaded, str):
            pytest.fail(loaded, pytrace=False)
        return loaded

    def find(self, name: str) -> Path | None:
        """The file graded as assignment ``name``: ``NAME.py``, else ``NAME.ipynb``.

        A ``--submission`` that is a single file is graded as whatever assignment is asked for.
        """
        if self.path is None:
            return None
        if self.path.is_file():
            return self.path
        for suffix in (".py", ".ipynb"):
            candidate = self.path / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        return None

    def close(self) -> None:
        """Stop every sandbox this session started."""
        for loaded in self._loaded.values():
            if isinstance(loaded, Assignment):
                loaded.close()

    def _course(self) -> Any:
        from .courses import load_course
        from .errors import InvalidArgument

        try:
            return load_course(self.course)
        except InvalidArgument as error:
            raise pytest.UsageError(str(error)) from None

    def _load(self, name: str) -> Assignment | str:
        path = self.find(name)
        if path is None:
            reason = (f"{name}: no --submission given" if self.path is None else
                      f"{name}: neither {name}.py nor {name}.ipynb is in {self.path}")
            self._problems.append(reason)
            if self.missing == "skip":
                pytest.skip(reason)
            return reason
        course = self._course()
        box = _in_process_box(path) if self.in_process else _sandbox(path, course)
        if isinstance(box, str):
            self._problems.append(f"{name}: {box}")
            return f"{name}: {box}"
        loaded = box.load()
        if not loaded.ok:
            box.close()
            self._problems.append(f"{name}: {loaded.error}")
            return f"{name}: {loaded.error}"
        self._problems += [f"{name}: {problem}" for problem in loaded.problems]
        return Assignment(course.get(name), path, box, tuple(loaded.problems), seed=self.seed,
                          reference=course.reference(name), names=tuple(loaded.names),
                          credits=self._credits)


def _sandbox(path: Path, course: Any) -> Any:
    """The student's code in an isolated child, as the grader runs it."""
    from .scoring import GradingOptions, sandbox_for

    box = sandbox_for(path, GradingOptions(course=str(course.folder)), support=course.support)
    box.start()
    return box


def _in_process_box(path: Path) -> Any:
    """``--gradcheck-in-process``: the student's code in the pytest process (debugging only)."""
    from .loading import LoadError, load_submission
    from .scoring import LocalBox

    try:
        loaded = load_submission(path)
    except LoadError as error:
        return str(error)
    return LocalBox(loaded.namespace, loaded.problems)


class Assignment:
    """One loaded assignment: checks that raise, and the student's functions as attributes.

    The checks ask the grader's own verdict (:func:`gradcheck.scoring.grade_assignment`, run
    once per assignment and session), so a test file and ``grader.py`` give the same points:
    a test marked ``points(N)`` earns N times the share of the points its checks earned
    (half of a gradient's share when the gradient is consistent with a wrong forward pass).
    Student code runs in the grader's sandboxed child unless ``--gradcheck-in-process``.
    Attributes (``fprop``, ``affine_forward``...) call the student's function there, with
    arguments and results copied across.
    """

    def __init__(self, assignment: Any, path: Path, box: Any, problems: tuple[str, ...], *,
                 seed: int = _DEFAULT_SEED, reference: Any = None, names: tuple[str, ...] = (),
                 credits: list[tuple[float, float]] | None = None) -> None:
        self.assignment = assignment
        self.name = assignment.name
        self.path = path
        self.problems = problems
        self.seed = seed
        self._box = box
        self._reference = reference
        self._names = names
        self._credits = credits if credits is not None else []
        self._verdict: Any = None

    def __getattr__(self, attribute: str) -> Any:
        names = self.__dict__.get("_names", ())
        if attribute in names:
            return _Remote(self.__dict__["_box"], attribute)
        defined = sorted(n for n in names if not n.startswith("_"))
        raise AttributeError(f"{self.__dict__.get('path', 'the submission')} defines no {attribute!r} "
                             f"(it defines: {', '.join(defined) or 'nothing callable'})")

    def __repr__(self) -> str:
        return f"<Assignment {self.name} from {self.path}>"

    def close(self) -> None:
        self._box.close()

    def verdict(self) -> Any:
        """The grader's :class:`~gradcheck.results.AssignmentResult` for this file."""
        if self._verdict is None:
            from .scoring import GradingOptions, grade_assignment

            self._verdict = grade_assignment(self.assignment, self.path, GradingOptions(seed=self.seed),
                                             reference=self._reference, sandbox=self._box)
        return self._verdict

    def check(self, *kinds: str) -> None:
        """Assert that the checks of these kinds ("fprop", "bprop", "update"; all by default)
        earned their points, crediting the calling test with the share they did earn."""
        checks = [c for c in self.verdict().checks if not kinds or c.kind in kinds]
        self._credits.append((sum(c.score for c in checks), sum(c.max_score for c in checks)))
        failed = [c for c in checks if not c.passed]
        if failed:
            raise _failure(self.name, failed)

    def check_loss(self, example: Any = None, *, rtol: float | None = None) -> None:
        """The forward pass (fprop's loss, a layer's output, a loss function's value)."""
        if example is None:
            return self.check("fprop")
        from .checking import loss_of

        expected = loss_of(self._reference.fprop(*_network_args(example)))
        got = loss_of(self.fprop(*_network_args(example)))
        tolerance = rtol if rtol is not None else self.assignment.tol.rtol
        if abs(got - expected) > tolerance * max(abs(expected), abs(got), 1e-12):
            raise AssertionError(f"fprop of {self.name} on {_source(example)}: the loss is {got:.10g} "
                                 f"but should be {expected:.10g}")

    def check_gradients(self, example: Any = None, **options: Any) -> None:
        """Every gradient against the reference's (and, when wrong, the student's own forward).

        With ``example`` (a ``gradcheck.networks.Example``, e.g. from
        :mod:`gradcheck.strategies`), checks bprop against finite differences of the student's
        own fprop on it instead, with :func:`gradcheck.assert_gradients_close`.
        """
        if example is None:
            return self.check("bprop")
        from .checking import assert_gradients_close

        ex = example.fresh()
        assert_gradients_close(self.fprop, self.bprop, ex.x, ex.y, ex.params, fprop_kwargs=ex.options,
                               name=f"{self.name} on {_source(ex)}", **options)

    def check_update(self, example: Any = None) -> None:
        """``update(params, grads, lr)`` against ``p - lr * dp`` (never the reference gradients)."""
        if example is not None:
            raise TypeError("check_update() checks the grader's examples; it takes no example")
        self.check("update")

    check_forward = check_loss
    check_backward = check_gradients


class _Remote:
    """A student's function, called in the sandbox; what it returns is copied back."""

    def __init__(self, box: Any, name: str) -> None:
        self._box, self._name = box, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .scoring import _plain

        result = self._box.call(self._name, *args, **kwargs)
        if not result.ok:
            raise AssertionError(result.error)
        return _plain(result.value)


def _network_args(example: Any) -> tuple[Any, ...]:
    ex = example.fresh()
    return ex.x, ex.y, ex.params


def _failure(name: str, failed: list[Any]) -> AssertionError:
    from .errors import GradientMismatchError

    lines = []
    for check in failed:
        lines.append(f"{name} {check.name}: {check.score:g}/{check.max_score:g}. {check.summary}")
        lines += [f"  {detail}" for detail in check.details if detail]
        if check.diagnosis:
            lines.append(f"  likely cause: {check.diagnosis}")
    error_type = GradientMismatchError if any(c.kind == "bprop" for c in failed) else AssertionError
    return error_type("\n".join(lines))


# -- helpers ---------------------------------------------------------------------------------


def _parametrized_by_user(metafunc: pytest.Metafunc) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", "")
        names = [n.strip() for n in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
        if "reference_network" in names:
            return True
    return False


def _is_mismatch(error: BaseException) -> bool:
    from .errors import GradientMismatchError

    return isinstance(error, GradientMismatchError)


def _short_longrepr(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    # Where the test called the check, then the table: the frames inside gradcheck are noise.
    where = ""
    for entry in excinfo.traceback:
        if Path(str(entry.path)) == Path(str(item.path)):
            where = f"{item.path.name}:{entry.lineno + 1}: "
    # Hypothesis attaches the falsifying (shrunk) example as notes: keep them, capped.
    notes = [_cap_line(str(note)) for note in getattr(excinfo.value, "__notes__", ())]
    return "\n".join([f"{where}GradientMismatchError", str(excinfo.value), *notes])


def _cap_line(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def _failure_message(call: pytest.CallInfo[None], report: pytest.TestReport) -> str:
    excinfo = call.excinfo
    if excinfo is None:
        text = report.longreprtext
    elif isinstance(excinfo.value, AssertionError) and str(excinfo.value):
        notes = [_cap_line(str(note)) for note in getattr(excinfo.value, "__notes__", ())]
        text = "\n".join([str(excinfo.value), *notes])
    elif isinstance(excinfo.value, (pytest.skip.Exception, pytest.fail.Exception)):
        text = str(excinfo.value.msg)
    else:
        text = excinfo.exconly()
    if report.skipped and report.when == "setup" or isinstance(getattr(excinfo, "value", None), pytest.skip.Exception):
        text = f"skipped: {text}"
    return text if len(text) <= _FAILURE_CHARS else text[:_FAILURE_CHARS] + "\n... (cut)"


def _source(example: Any) -> str:
    # Worked examples carry a paragraph of provenance: its first clause names the example.
    source = (example.source or "the example").split(";")[0]
    return source if len(source) <= 80 else source[:77] + "..."


def _score(outcomes: list[_Outcome]) -> tuple[float, float]:
    return (round(sum(o.earned for o in outcomes), 6), round(sum(o.points for o in outcomes), 6))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(round(value, 6))
