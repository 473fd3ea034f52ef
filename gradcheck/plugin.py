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

Student code runs in the pytest process: this is for students' own CI and instructors'
test files on one submission. Grading many untrusted submissions goes through
``grader.py``, which runs each one in an isolated child process.

Example test file (``pytest --submission student/ --gradescope-results results.json``)::

    import pytest

    @pytest.mark.points(6)
    def test_bprop(submission):
        submission("two_hidden").check_gradients()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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

    @property
    def passed(self) -> bool:
        """Earned its points: the test body ran and nothing failed (a skip earns nothing)."""
        return self.ran and not self.failed


@dataclass
class _State:
    seed: int
    submission: Path | None
    missing: str
    started: float = field(default_factory=time.monotonic)
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
            terminalreporter.write_line(f"lost {_fmt(o.points)}: {o.name}")
    score, total = _score(outcomes)
    terminalreporter.write_line(f"Score: {_fmt(score)} / {_fmt(total)}", bold=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write Gradescope's results.json when asked to, whatever the tests' outcomes."""
    path = session.config.getoption("--gradescope-results")
    if not path:
        return
    from .reports import ResultEntry, atomic_write, gradescope_json

    state = session.config.stash[_STATE]
    entries = [ResultEntry(o.name, o.points if o.passed else 0.0, o.points,
                           o.message or ("" if o.passed else "the test did not run"), o.visibility, o.passed)
               for o in state.outcomes.values()]
    data = gradescope_json(entries, execution_time=time.monotonic() - state.started,
                           output="\n".join(dict.fromkeys(state.problems)))
    import json

    atomic_write(session.config.invocation_params.dir / path, json.dumps(data, indent=2) + "\n")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def submission(pytestconfig: pytest.Config) -> Submission:
    """The student's submission: ``submission("two_hidden")`` is that assignment, loaded once."""
    state = pytestconfig.stash[_STATE]
    return Submission(state.submission, missing=state.missing, seed=state.seed, problems=state.problems)


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
                 problems: list[str] | None = None) -> None:
        self.path = path
        self.missing = missing
        self.seed = seed
        self._problems = problems if problems is not None else []
        self._loaded: dict[str, Assignment | str] = {}

    def __call__(self, name: str) -> Assignment:
        from .networks import NAMES

        if name not in NAMES:
            pytest.fail(f"submission({name!r}): no such assignment; choose one of {', '.join(NAMES)}",
                        pytrace=False)
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

    def _load(self, name: str) -> Assignment | str:
        path = self.find(name)
        if path is None:
            reason = (f"{name}: no --submission given" if self.path is None else
                      f"{name}: neither {name}.py nor {name}.ipynb is in {self.path}")
            self._problems.append(reason)
            if self.missing == "skip":
                pytest.skip(reason)
            return reason
        from .loading import LoadError, load_submission

        try:
            loaded = load_submission(path)
        except LoadError as error:
            self._problems.append(f"{name}: {error}")
            return f"{name}: {error}"
        self._problems += [f"{name}: {problem}" for problem in loaded.problems]
        return Assignment(name, path, loaded.namespace, tuple(loaded.problems), seed=self.seed)


class Assignment:
    """One loaded assignment: the student's functions as attributes, and checks that raise.

    ``fprop``, ``bprop``, ``update`` (any name the file defines) are attributes. The checks
    raise ``AssertionError`` (:class:`gradcheck.GradientMismatchError` for gradients) with
    a message for the student; by default they run on the network's worked example and on
    two random examples drawn from the run's seed.
    """

    def __init__(self, name: str, path: Path, namespace: dict[str, Any], problems: tuple[str, ...],
                 *, seed: int = _DEFAULT_SEED) -> None:
        self.name = name
        self.path = path
        self.namespace = namespace
        self.problems = problems
        self.seed = seed

    def __getattr__(self, attribute: str) -> Any:
        namespace = self.__dict__.get("namespace", {})
        if attribute in namespace:
            return namespace[attribute]
        defined = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_"))
        raise AttributeError(f"{self.__dict__.get('path', 'the submission')} defines no {attribute!r} "
                             f"(it defines: {', '.join(defined) or 'nothing callable'})")

    def __repr__(self) -> str:
        return f"<Assignment {self.name} from {self.path}>"

    def examples(self) -> tuple[Any, ...]:
        """The examples checks use by default: the worked example(s) and two random ones."""
        import numpy as np

        from .networks import get

        network = get(self.name)
        rng = np.random.default_rng([self.seed, len(self.name)])
        return (*network.worked_examples, *(network.random_example(rng, m) for m in (3, 5)))

    def check_gradients(self, example: Any = None, **options: Any) -> None:
        """Check the student's bprop against finite differences of the student's own fprop.

        Args:
            example: a ``gradcheck.networks.Example`` (e.g. drawn by
                ``gradcheck.strategies.examples``); default :meth:`examples`.
            **options: passed to :func:`gradcheck.assert_gradients_close` (rtol, eps, ...).

        Raises:
            GradientMismatchError: with the per-parameter table.
        """
        from .checking import assert_gradients_close

        for ex in self._examples(example):
            ex = ex.fresh()
            assert_gradients_close(self.fprop, self.bprop, ex.x, ex.y, ex.params,
                                   fprop_kwargs=ex.options, name=f"{self.name} on {_source(ex)}", **options)

    def check_loss(self, example: Any = None, *, rtol: float = 1e-6) -> None:
        """Check the student's fprop loss against the reference solution's.

        Raises:
            AssertionError: the loss differs, or fprop fails or returns no usable loss.
        """
        from .networks import get

        reference = get(self.name).solution()
        for ex in self._examples(example):
            expected = _loss(reference.fprop, ex, "the reference fprop")
            got = _loss(self.fprop, ex, "fprop")
            difference = abs(got - expected)
            if difference > rtol * max(abs(expected), abs(got), 1e-12):
                raise AssertionError(
                    f"fprop of {self.name} on {_source(ex)}: the loss is {got:.10g} but should be "
                    f"{expected:.10g} (relative error {difference / max(abs(expected), 1e-300):.2e}); "
                    "check the forward pass and that the loss is summed over the batch")

    def check_update(self, example: Any = None) -> None:
        """Check ``update(params, grads, lr)`` returns ``p - lr * dp`` for every parameter.

        The gradients passed are the reference solution's, so a wrong bprop cannot fail it.

        Raises:
            AssertionError: naming each parameter that is wrong, with the worst entry.
        """
        from .comparison import compare_gradients
        from .networks import get
        from .tolerances import Tolerance

        reference = get(self.name).solution()
        for ex in self._examples(example):
            grads = reference.bprop(reference.fprop(ex.x.copy(), ex.y.copy(), ex.fresh().params, **ex.options))
            expected = {key: ex.params[key] - ex.lr * grads[key] for key in ex.params}
            fresh = ex.fresh()
            try:
                returned = self.update(fresh.params, {k: v.copy() for k, v in grads.items()}, ex.lr)
            except Exception as error:  # noqa: BLE001 - student code may raise anything
                raise AssertionError(f"update of {self.name} raised {type(error).__name__}: {error}") from None
            reports, problems = compare_gradients(returned, expected, Tolerance(1e-9, 1e-12, 0.0), what="update")
            wrong = [*problems, *(r.message + _worst(r) for r in reports if not r.ok)]
            if wrong:
                raise AssertionError(f"update of {self.name} on {_source(ex)} (lr={ex.lr}): "
                                     + "; ".join(wrong))

    def _examples(self, example: Any) -> tuple[Any, ...]:
        return (example,) if example is not None else self.examples()


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


def _loss(fprop: Callable[..., Any], example: Any, who: str) -> float:
    from .checking import loss_of

    ex = example.fresh()
    try:
        return loss_of(fprop(ex.x, ex.y, ex.params, **ex.options))
    except Exception as error:  # noqa: BLE001 - student code may raise anything
        raise AssertionError(f"{who} on {_source(example)} failed: {type(error).__name__}: {error}") from None


def _worst(report: Any) -> str:
    if report.worst_index is None or report.analytic is None:
        return ""
    return (f" (at {report.worst_index}: returned {report.analytic:.8g}, expected {report.reference:.8g})")


def _source(example: Any) -> str:
    # Worked examples carry a paragraph of provenance: its first clause names the example.
    source = (example.source or "the example").split(";")[0]
    return source if len(source) <= 80 else source[:77] + "..."


def _score(outcomes: list[_Outcome]) -> tuple[float, float]:
    return (round(sum(o.points for o in outcomes if o.passed), 6), round(sum(o.points for o in outcomes), 6))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(round(value, 6))
