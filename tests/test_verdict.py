"""One rubric, one verdict: grader.py and the pytest plugin give the same points.

Real subprocesses for both front ends, on students derived from the document course's
reference solutions by one edit each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gradcheck import networks

ROOT = Path(__file__).resolve().parent.parent
GRADER = ROOT / "grader.py"

pytest_plugins = ["pytester"]

INSTRUCTOR_TESTS = """
import pytest

@pytest.mark.points(2)
def test_fprop(submission):
    submission("{name}").check_loss()

@pytest.mark.points(6)
def test_bprop(submission):
    submission("{name}").check_gradients()

@pytest.mark.points(2)
def test_update(submission):
    submission("{name}").check_update()
"""


def _solution(name: str) -> str:
    return (networks.solutions_dir() / f"{name}.py").read_text()


def _edited(name: str, old: str, new: str) -> str:
    source = _solution(name)
    assert old in source, f"{old!r} is not in the {name} solution"
    return source.replace(old, new)


def _grade(folder: Path, out: Path) -> dict:
    result = subprocess.run([sys.executable, str(GRADER), str(folder), "--out", str(out),
                             "--workers", "1"], capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "run.json").read_text())


def _assignment(run: dict, name: str) -> dict:
    (student,) = run["students"]
    return next(a for a in student["assignments"] if a["assignment"] == name)


def _points(assignment: dict) -> dict[str, float]:
    return {check["name"]: check["score"] for check in assignment["checks"]}


def _plugin_score(pytester: pytest.Pytester, name: str, student: Path) -> float:
    pytester.makepyfile(test_instructor=INSTRUCTOR_TESTS.format(name=name))
    result = pytester.runpytest_subprocess("--submission", str(student), "-p", "no:cacheprovider",
                                           timeout=300)
    line = next(line for line in result.outlines if line.startswith("Score: "))
    return float(line.split()[1])


# name, the edit, the grader's points per check, what the feedback says
STUDENTS = {
    "fprop_half_input": (
        "two_hidden", "    a0 = x\n", "    a0 = x / 2\n",
        # bprop is consistent with the wrong fprop on every example: half of each share.
        {"fprop": 0.0, "bprop: W1": 0.5, "bprop: b1": 0.5, "bprop: W2": 0.5, "bprop: b2": 0.5,
         "bprop: W3": 0.5, "bprop: b3": 0.5, "update": 2.0},
    ),
    "loss_per_example": (
        # Document 003's own code: the loss of each example, not their sum.
        "binary_classifier", "loss = -np.sum(y * np.log(a2) + (1 - y) * np.log(1 - a2))",
        "loss = -(y * np.log(a2) + (1 - y) * np.log(1 - a2))",
        {"fprop": 0.0, "bprop: W1": 1.5, "bprop: b1": 1.5, "bprop: W2": 1.5, "bprop: b2": 1.5,
         "update": 2.0},
    ),
}


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_grader_and_plugin_give_the_same_points(student: str, tmp_path: Path,
                                                pytester: pytest.Pytester) -> None:
    name, old, new, expected = STUDENTS[student]
    folder = tmp_path / student
    folder.mkdir()
    (folder / f"{name}.py").write_text(_edited(name, old, new))
    graded = _assignment(_grade(folder, tmp_path / "out"), name)
    assert _points(graded) == pytest.approx(expected)
    assert _plugin_score(pytester, name, folder) == pytest.approx(sum(expected.values()))


def test_a_loss_that_is_not_a_scalar_costs_fprop_only_and_says_why(tmp_path: Path) -> None:
    name, old, new, _ = STUDENTS["loss_per_example"]
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / f"{name}.py").write_text(_edited(name, old, new))
    fprop = next(c for c in _assignment(_grade(tmp_path / "s", tmp_path / "out"), name)["checks"]
                 if c["name"] == "fprop")
    assert "not a scalar" in fprop["details"][0] and "np.sum" in fprop["details"][0]


def test_a_bprop_made_of_finite_differences_is_flagged_for_the_instructor_only(tmp_path: Path) -> None:
    finite_differences = _solution("three_input") + textwrap.dedent("""

        def bprop(cache):
            x, y, params = cache["_x"], cache["_y"], cache["_params"]
            grads = {}
            for key, value in params.items():
                grad = np.zeros_like(value)
                for index in np.ndindex(value.shape):
                    plus = {k: v.copy() for k, v in params.items()}
                    minus = {k: v.copy() for k, v in params.items()}
                    plus[key][index] += 1e-5
                    minus[key][index] -= 1e-5
                    grad[index] = (_fprop(x, y, plus)["loss"] - _fprop(x, y, minus)["loss"]) / 2e-5
                grads[key] = grad
            return grads

        _fprop = fprop

        def fprop(x, y, params):
            cache = _fprop(x, y, params)
            cache.update(_x=x, _y=y, _params={k: v.copy() for k, v in params.items()})
            return cache
        """)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "three_input.py").write_text(finite_differences)
    run = _grade(tmp_path / "s", tmp_path / "out")
    graded = _assignment(run, "three_input")
    assert sum(_points(graded).values()) == 10  # not a score change
    (flag,) = graded["flags"]
    assert "finite differences" in flag and "1e-16" in flag
    feedback = (tmp_path / "out" / "s" / "feedback.md").read_text()
    assert "finite differences" not in feedback
    results = json.loads((tmp_path / "out" / "s" / "results.json").read_text())
    assert results["extra_data"]["flags"] == {"three_input": [flag]}  # Gradescope hides extra_data
    assert "finite differences" not in json.dumps(results["tests"]) + results.get("output", "")


def test_an_honest_bprop_written_differently_is_never_flagged(tmp_path: Path) -> None:
    # Another order of operations: the bias gradient as a product with a vector of ones.
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "two_hidden.py").write_text(_edited(
        "two_hidden", "np.sum(delta, axis=1, keepdims=True)", "delta @ np.ones((delta.shape[1], 1))"))
    graded = _assignment(_grade(tmp_path / "s", tmp_path / "out"), "two_hidden")
    assert sum(_points(graded).values()) == 10 and graded["flags"] == []
