"""The pytest plugin, through real pytest sessions (pytester), as an instructor uses it."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
from pathlib import Path

import jsonschema
import nbformat
import pytest

import gradcheck.plugin  # noqa: F401 - imported once here: in-process runs must not re-import numpy

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
INSTRUCTOR_FILE = ROOT / "examples" / "instructor" / "test_two_hidden.py"
SOLUTIONS = ROOT / "solutions"

# Gradescope's results.json, as far as the plugin writes it.
GRADESCOPE_SCHEMA = {
    "type": "object",
    "required": ["score", "tests"],
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "stdout_visibility": {"enum": ["visible", "hidden", "after_due_date", "after_published"]},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "score", "max_score", "output", "visibility"],
                "properties": {
                    "name": {"type": "string"},
                    "score": {"type": "number", "minimum": 0},
                    "max_score": {"type": "number", "minimum": 0},
                    "status": {"enum": ["passed", "failed"]},
                    "output": {"type": "string"},
                    "visibility": {"enum": ["visible", "hidden", "after_due_date", "after_published"]},
                },
            },
        },
    },
}


def _plugin_args() -> list[str]:
    # Installed (pip install -e .), the entry point loads the plugin; from a bare checkout, -p does.
    installed = any(ep.value == "gradcheck.plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "gradcheck.plugin"]


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocesses import gradcheck from this checkout."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("CI", raising=False)  # inner runs use hypothesis' defaults, not our profile
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider", *args)


def _student(pytester: pytest.Pytester, name: str, source: str, folder: str = "student") -> Path:
    path = pytester.path / folder / f"{name}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    return path.parent


def _solution(name: str) -> str:
    return (SOLUTIONS / f"{name}.py").read_text()


def _score(result: pytest.RunResult) -> tuple[float, float]:
    match = re.search(r"^Score: ([\d.]+) / ([\d.]+)$", result.stdout.str(), re.MULTILINE)
    assert match, result.stdout.str()
    return float(match[1]), float(match[2])


def test_correct_submission_scores_full_points(session: pytest.Pytester) -> None:
    shutil.copy(INSTRUCTOR_FILE, session.path)
    _student(session, "two_hidden", _solution("two_hidden"))
    result = _run(session, "--submission", "student", "--gradcheck-seed", "7")
    result.assert_outcomes(passed=4)
    assert _score(result) == (12, 12)
    result.stdout.fnmatch_lines(["gradcheck: seed=7 *submission=*student*"])


def test_transposed_gradient_loses_its_points_and_results_json_matches(session: pytest.Pytester) -> None:
    shutil.copy(INSTRUCTOR_FILE, session.path)
    buggy = _solution("two_hidden").replace(
        'grads[f"W{layer}"] = delta @ a_prev.T',
        'grads[f"W{layer}"] = (delta @ a_prev.T).T if layer == 2 else delta @ a_prev.T')
    assert buggy != _solution("two_hidden")
    _student(session, "two_hidden", buggy)
    result = _run(session, "--submission", "student", "--gradescope-results", "out/results.json")
    result.assert_outcomes(passed=2, failed=2)
    # The grader's verdict: W2's share (1 of bprop's 6) is lost, nothing else; the hypothesis
    # test (2 points, its own check) loses everything.
    assert _score(result) == (9, 12)
    output = result.stdout.str()
    # The verdict with the worst entry and the diagnosis, not a traceback or a numpy dump.
    result.stdout.fnmatch_lines(["*two_hidden bprop: W2: 0/1*", "*dW2*yours*expected*",
                                 "*likely cause: dW2 matches the reference transposed*",
                                 "*param*shape*status*max rel err*", "*W2*(2, 2)*MISMATCH*"])
    assert "array(" not in output and "checking.py" not in output

    data = json.loads((session.path / "out" / "results.json").read_text())
    jsonschema.validate(data, GRADESCOPE_SCHEMA)
    assert data["score"] == sum(t["score"] for t in data["tests"]) == 9
    assert sum(t["max_score"] for t in data["tests"]) == 12
    tests = {t["name"].split("::")[-1]: t for t in data["tests"]}
    assert tests["test_bprop"]["score"] == 5 and "transposed" in tests["test_bprop"]["output"]
    assert tests["test_fprop"]["score"] == 2 and tests["test_fprop"]["status"] == "passed"
    assert tests["test_bprop_any_batch"]["visibility"] == "after_due_date"


def test_hypothesis_shrinks_a_transposed_gradient_to_the_smallest_network(session: pytest.Pytester) -> None:
    # dW2 of binary_classifier is (1, H): its transpose only fails from H = 2, so the
    # smallest failing network is H = 2 with one example.
    buggy = _solution("binary_classifier").replace("dW2 = dz2 @ a1.T", "dW2 = (dz2 @ a1.T).T")
    assert buggy != _solution("binary_classifier")
    _student(session, "binary_classifier", buggy)
    session.makepyfile(test_shapes="""
        import pytest
        from hypothesis import Phase, given, settings
        from gradcheck import strategies

        @pytest.mark.points(3)
        @settings(max_examples=30, deadline=None, database=None, phases=[Phase.generate, Phase.shrink])
        @given(example=strategies.examples("binary_classifier"))
        def test_bprop_any_shape(submission, example):
            submission("binary_classifier").check_gradients(example)
    """)
    result = _run(session, "--submission", "student")
    result.assert_outcomes(failed=1)
    assert _score(result) == (0, 3)
    result.stdout.fnmatch_lines(["*binary_classifier on random example of binary_classifier (m=1, hidden=2)*",
                                 "*W2*WRONG_SHAPE*"])
    # The shrunk example is named, as hypothesis reports it (the wording differs across versions).
    assert re.search(r"^(Falsifying example|Failing test case)", result.stdout.str(), re.MULTILINE)


def test_notebook_submission_with_magics_and_a_failing_cell(session: pytest.Pytester) -> None:
    shutil.copy(INSTRUCTOR_FILE, session.path)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Homework: two hidden layers"),
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np"),
        nbformat.v4.new_code_cell(_solution("two_hidden")),
        nbformat.v4.new_code_cell("data = np.load('training_data.npy')  # not shipped"),
        nbformat.v4.new_code_cell("print('demo loss', 0.25)"),
    ]
    (session.path / "student").mkdir()
    nbformat.write(notebook, str(session.path / "student" / "two_hidden.ipynb"))
    result = _run(session, "--submission", "student", "--gradescope-results", "results.json")
    result.assert_outcomes(passed=4)
    assert _score(result) == (12, 12)
    data = json.loads((session.path / "results.json").read_text())
    jsonschema.validate(data, GRADESCOPE_SCHEMA)
    assert "training_data.npy" in data["output"] or "FileNotFoundError" in data["output"]


@pytest.mark.parametrize(("policy", "outcomes"), [("skip", {"skipped": 4}), ("fail", {"failed": 4})])
def test_missing_assignment_scores_zero(session: pytest.Pytester, policy: str, outcomes: dict[str, int]) -> None:
    shutil.copy(INSTRUCTOR_FILE, session.path)
    _student(session, "mlp", _solution("mlp"))  # another assignment: two_hidden is missing
    result = _run(session, "--submission", "student", f"--submission-missing={policy}",
                  "--gradescope-results", "results.json", "-rs")
    result.assert_outcomes(**outcomes)
    assert _score(result) == (0, 12)
    assert "neither two_hidden.py nor two_hidden.ipynb" in result.stdout.str()
    data = json.loads((session.path / "results.json").read_text())
    assert data["score"] == 0 and "two_hidden.py" in data["output"]


def test_syntax_error_fails_instead_of_skipping(session: pytest.Pytester) -> None:
    session.makepyfile(test_one="""
        import pytest

        @pytest.mark.points(2)
        def test_fprop(submission):
            submission("three_node").check_loss()
    """)
    _student(session, "three_node", "def fprop(x, y, params)\n    return {}\n")
    result = _run(session, "--submission", "student")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*three_node.py has a syntax error on line 1*"])


def test_reference_network_parametrisation(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        def test_all(reference_network):
            assert reference_network.param_shapes()

        @pytest.mark.network("two_hidden", "mlp")
        def test_marked(reference_network):
            assert reference_network.name in ("two_hidden", "mlp")

        @pytest.mark.parametrize("reference_network", ["three_node"], indirect=True)
        def test_indirect(reference_network):
            assert reference_network.name == "three_node"
    """)
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(["*test_all?binary_classifier? PASSED*", "*test_marked?mlp? PASSED*",
                                 "*test_indirect?three_node? PASSED*"])


def test_points_marker_is_validated_and_summed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.points(1.5)
        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_weighted(n):
            assert n != 2

        def test_unweighted():
            pass
    """)
    result = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    assert _score(result) == (3, 4.5)
    result.stdout.fnmatch_lines(["lost 1.5: *test_weighted?2?"])

    pytester.makepyfile(test_bad="""
        import pytest

        @pytest.mark.points("ten")
        def test_x():
            pass
    """)
    bad = pytester.runpytest(*_plugin_args(), "-p", "no:cacheprovider", "test_bad.py")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*use @pytest.mark.points(N) with one number N >= 0*"])


PLUGIN_CHEATS = {
    # Each: the reference solution reached from the student's code, through the plugin.
    "imports_the_solution": (
        "import gradcheck\n_sol = gradcheck.networks.get('two_hidden').solution()\n"
        "fprop, bprop, update = _sol.fprop, _sol.bprop, _sol.update\n"),
    "reads_the_solution_file": (
        "import pathlib\n_src = pathlib.Path({solution!r}).read_text()\nexec(_src)\n"),
    "reads_the_parent_s_command_line": (
        "import os\n_cmd = open(f'/proc/{{os.getppid()}}/cmdline').read()\n"
        "raise SystemExit(_cmd)\n"),
}


@pytest.mark.parametrize("cheat", sorted(PLUGIN_CHEATS))
def test_the_plugin_sandbox_gives_a_cheat_no_points(session: pytest.Pytester, cheat: str) -> None:
    shutil.copy(INSTRUCTOR_FILE, session.path)
    source = PLUGIN_CHEATS[cheat].format(solution=str(SOLUTIONS / "two_hidden.py"))
    _student(session, "two_hidden", source)
    result = _run(session, "--submission", "student")
    assert _score(result)[0] == 0
    output = result.stdout.str()
    assert "Permission denied" in output or "PermissionError" in output, output[-3000:]


def test_a_submission_that_links_to_the_answer_key_is_refused_not_followed(session: pytest.Pytester) -> None:
    # The grader copies the file into the scratch folder itself, outside the sandbox's walls.
    shutil.copy(INSTRUCTOR_FILE, session.path)
    (session.path / "student").mkdir()
    (session.path / "student" / "two_hidden.py").symlink_to(SOLUTIONS / "two_hidden.py")
    result = _run(session, "--submission", "student")
    assert _score(result)[0] == 0
    assert "two_hidden.py is a symbolic link, which the grader does not follow" in result.stdout.str()


def test_in_process_mode_is_only_for_debugging_and_runs_unconfined(session: pytest.Pytester) -> None:
    # The escape hatch does what it says: the same cheat works in the pytest process.
    shutil.copy(INSTRUCTOR_FILE, session.path)
    _student(session, "two_hidden", PLUGIN_CHEATS["imports_the_solution"])
    result = _run(session, "--submission", "student", "--gradcheck-in-process")
    assert _score(result) == (12, 12)
