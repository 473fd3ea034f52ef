"""feedback.md names the cause of a wrong gradient: real grader runs over one-line bugs.

One grader run (a module-scoped fixture) grades a class of students, each a solution with
one line changed (most taken from ``bug_corpus``), plus the assignment template as handed
out, the bundled carol, and a correct student. Each test reads one student's section of
feedback.md and checks that it names the cause in the words a student would read.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gradcheck import networks

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bug_corpus import BUGS, Bug  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GRADER = ROOT / "grader.py"


def grade(submit: Path, out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GRADER), str(submit), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def bug(name: str) -> Bug:
    return next(b for b in BUGS if b.name == name)


def patched_source(b: Bug) -> str:
    """The solution of ``b.assignment`` with its one line replaced (as bug_corpus does)."""
    lines = (networks.solutions_dir() / f"{b.assignment}.py").read_text().splitlines()
    hits = [i for i, line in enumerate(lines) if line.strip() == b.old]
    assert len(hits) == 1, f"{b.name}: {b.old!r} occurs {len(hits)} times"
    indent = lines[hits[0]][: len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
    lines[hits[0]] = indent + b.new
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Student:
    assignment: str
    source: str
    words: tuple[str, ...]
    """Phrases that feedback.md must contain in this assignment's section."""


def corpus(name: str, *words: str) -> Student:
    b = bug(name)
    return Student(b.assignment, patched_source(b), words)


STUDENTS: dict[str, Student] = {
    "transposed": corpus("operands of dW swapped", "dW2 matches the reference transposed",
                         "dW2 = delta2 @ a1.T"),
    "sign": corpus("y - a2", "has the sign flipped", "prediction - target"),
    "mean_dw1": corpus("dW1 divided by m", "divided by the batch size", "not a mean"),
    "derivative_missing": corpus("hidden derivative missing, three inputs",
                                 "left out", "multiply the error arriving at layer 1"),
    "sigma_of_a": corpus("sigma'(a1) for sigma'(z1)", "sigma'(a1) in place of sigma'(z1)"),
    "bias_not_summed": corpus("bias not summed", "one column per example",
                              "sum the bias gradient over the batch"),
    "swapped": corpus("layers 1 and 2 swapped", "dW1 and dW2 are swapped"),
    "wrong_key": corpus("db2 under 'db2'", "returned under the key 'db2'"),
    "zeros": corpus("db2 left at zero", "db2 is all zeros"),
    "batch_one": corpus("db2 from the first example", "right for one example (m=1)"),
    "own_fprop": corpus("fprop halves its input", "consistent with your fprop",
                        "the bug is in the forward pass"),
    "mutates_cache": corpus("a2 -= y in the cache", "bprop modified the cache it was given"),
    "mutates_x": corpus("fprop normalises x in place", "fprop modified X in place"),
    # Gradients accumulated in a module-level dict: each call adds to the last one's.
    "stale": Student("three_input", (networks.solutions_dir() / "three_input.py").read_text()
                     + "\n\n_correct_bprop, _SUMS = bprop, {}\n\n\ndef bprop(cache):\n"
                       "    for key, g in _correct_bprop(cache).items():\n"
                       "        _SUMS[key] = _SUMS.get(key, 0) + g\n"
                       "    return dict(_SUMS)\n",
                     ("two calls of bprop on the same cache returned different",)),
    "template": Student("three_input", (ROOT / "assignments" / "three_input.py").read_text(),
                        ("fprop is not implemented yet", "raises NotImplementedError")),
    "bprop_template": Student(
        "three_input",
        (networks.solutions_dir() / "three_input.py").read_text()
        + "\n\ndef bprop(cache):\n    raise NotImplementedError('write this function')\n",
        ("bprop raised NotImplementedError: replace the `raise NotImplementedError`",)),
    # The bundled carol averages the loss and, consistently, its gradients: both causes.
    "carol": Student("binary_classifier",
                     (ROOT / "examples" / "submit" / "carol" / "binary_classifier.py").read_text(),
                     ("consistent with your fprop", "divided by the batch size",
                      "your loss is the reference loss divided by the batch size m = 4")),
}
CORRECT = tuple(networks.NAMES)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    submit = tmp_path_factory.mktemp("class")
    for student, spec in STUDENTS.items():
        (submit / student).mkdir()
        (submit / student / f"{spec.assignment}.py").write_text(spec.source)
    (submit / "correct").mkdir()
    for name in CORRECT:
        shutil.copy(networks.solutions_dir() / f"{name}.py", submit / "correct" / f"{name}.py")
    out = tmp_path_factory.mktemp("out")
    result = grade(submit, out, "--workers", "2")
    assert result.returncode == 0, result.stderr
    return out


def section(out: Path, student: str, assignment: str) -> str:
    """The part of a student's feedback.md about one assignment."""
    text = (out / student / "feedback.md").read_text()
    parts = re.split(r"^## ", text, flags=re.MULTILINE)
    found = [part for part in parts if part.startswith(f"{assignment}:")]
    assert found, f"no section for {assignment} in {student}'s feedback:\n{text}"
    return found[0]


def scores(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


@pytest.mark.parametrize("student", list(STUDENTS))
def test_feedback_names_the_cause(graded: Path, student: str) -> None:
    spec = STUDENTS[student]
    text = section(graded, student, spec.assignment)
    assert "Likely cause" in text or "Problems:" in text, text
    for words in spec.words:
        assert words in text, f"{student}: {words!r} not in\n{text}"


def test_a_correct_student_gets_full_marks_and_no_diagnosis(graded: Path) -> None:
    text = (graded / "correct" / "feedback.md").read_text()
    assert scores(graded)["correct"]["total"] == str(10 * len(CORRECT)), text
    assert "Likely cause" not in text and "Problems:" not in text, text


def test_an_answer_right_only_on_first_call_keeps_its_score(graded: Path) -> None:
    # The first bprop is right; only the second call on the same cache differs. Documented:
    # found and reported, never scored.
    assert scores(graded)["mutates_cache"]["binary_classifier"] == "10"


def test_consistent_with_own_fprop_says_each_cause_once(graded: Path) -> None:
    text = section(graded, "carol", "binary_classifier")
    for check in re.split(r"^### ", text, flags=re.MULTILINE)[1:]:
        if check.startswith("bprop"):
            assert check.count("consistent with your fprop") == 1, check
            assert check.count("divided by the batch size") == 1, check
