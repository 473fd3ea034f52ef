"""Large networks through the real grader: a wrong gradient of a large parameter is checked
against the student's own forward pass on a sample, never with 2P forward calls (which took
more memory than the machine had for a 784-256-128-10 network). The sizes here are small
enough to run in seconds; a forward pass that sleeps 1 ms and a short --timeout stand in for
a large network's cost."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRADER = ROOT / "grader.py"

COURSE = '''
from gradcheck.assignments import Input, Network

TITLE = "a wide network"
ASSIGNMENTS = (
    Network(name="wide", x=Input(("D", "N")), y=Input(("C", "N"), low=0.0, high=1.0),
            params={"W1": Input(("H", "D")), "b1": Input(("H", 1)),
                    "W2": Input(("C", "H")), "b2": Input(("C", 1))},
            loss="squared", sizes=({"N": 7, "D": 60, "H": 40, "C": 3},), hidden_count=2),
)
'''

# W1 has 2,400 entries: more than the consistency sample (60).
REFERENCE = '''
import time
import numpy as np

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))

def fprop(x, y, params):
    z1 = params["W1"] @ x + params["b1"]; a1 = np.maximum(z1, 0)
    a2 = sigmoid(params["W2"] @ a1 + params["b2"])
    return {"x": x, "y": y, "z1": z1, "a1": a1, "a2": a2, "p": params,
            "loss": 0.5 * np.sum((y - a2) ** 2)}

def bprop(c):
    d2 = (c["a2"] - c["y"]) * c["a2"] * (1 - c["a2"])
    d1 = (c["p"]["W2"].T @ d2) * (c["z1"] > 0)
    grads = {"W1": d1 @ c["x"].T, "b1": d1.sum(1, keepdims=True),
             "W2": d2 @ c["a1"].T, "b2": d2.sum(1, keepdims=True)}
    return grads

def update(params, grads, lr):
    return {k: params[k] - lr * grads[k] for k in params}
'''

STUDENTS = {
    "good": [],
    # tanh instead of relu in both passes, and a slow forward pass: 2P calls would not fit
    # in the time limit, the sample does.
    "consistent": [("np.maximum(z1, 0)", "np.tanh(z1)"), ("(c[\"z1\"] > 0)", "(1 - c[\"a1\"] ** 2)"),
                   ("def fprop(x, y, params):\n", "def fprop(x, y, params):\n    time.sleep(0.001)\n")],
    # The same with a forward pass of 20 ms: the sample shrinks to what the time limit allows.
    "slow_consistent": [("np.maximum(z1, 0)", "np.tanh(z1)"), ("(c[\"z1\"] > 0)", "(1 - c[\"a1\"] ** 2)"),
                        ("def fprop(x, y, params):\n", "def fprop(x, y, params):\n    time.sleep(0.02)\n")],
    # One entry of dW1 wrong, the forward pass right: a random sample would miss the entry
    # and give the consistency share.
    "one_entry": [("    return grads", "    grads[\"W1\"][3, 17] += 1.0\n    return grads")],
    "no_relu_derivative": [("* (c[\"z1\"] > 0)", "")],
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict:
    course = tmp_path_factory.mktemp("course")
    (course / "course.py").write_text(COURSE)
    (course / "wide.py").write_text(textwrap.dedent(REFERENCE))
    submit = tmp_path_factory.mktemp("submit")
    for student, edits in STUDENTS.items():
        source = REFERENCE
        for old, new in edits:
            assert old in source
            source = source.replace(old, new)
        (submit / student).mkdir()
        (submit / student / "wide.py").write_text(source)
    out = tmp_path_factory.mktemp("out")
    result = subprocess.run([sys.executable, str(GRADER), str(submit), "--course", str(course),
                             "--out", str(out), "--workers", "2", "--timeout", "3",
                             "--memory", "600"],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "run.json").read_text())


def _checks(run: dict, student: str) -> dict[str, dict]:
    found = next(s for s in run["students"] if s["student"] == student)
    return {c["name"]: c for a in found["assignments"] for c in a["checks"]}


def _scores(run: dict, student: str) -> dict[str, float]:
    return {name: check["score"] for name, check in _checks(run, student).items()}


def test_a_correct_wide_network_gets_full_marks(graded: dict) -> None:
    assert sum(_scores(graded, "good").values()) == 10


def test_a_consistent_wide_gradient_earns_half_on_a_sample(graded: dict) -> None:
    scores, checks = _scores(graded, "consistent"), _checks(graded, "consistent")
    assert scores["fprop"] == 0 and scores["update"] == 2
    assert all(scores[f"bprop: {p}"] == 0.75 for p in ("W1", "b1", "W2", "b2")), scores
    diagnosis = checks["bprop: W1"]["diagnosis"]
    assert "your bprop is consistent with your fprop" in diagnosis
    # How many entries depends on the forward pass's speed (a quarter of the time limit is
    # the budget): at most the sample of 60, never all 2400.
    checked = re.search(r"on (\d+) of 2400 entries of dW1", diagnosis)
    assert checked and 10 <= int(checked.group(1)) <= 60, diagnosis
    # b1 (40 entries) is differentiated whole: no sample to mention.
    assert "entries of db1" not in checks["bprop: b1"]["diagnosis"]


def test_a_slow_forward_pass_is_differentiated_on_a_smaller_sample(graded: dict) -> None:
    scores, checks = _scores(graded, "slow_consistent"), _checks(graded, "slow_consistent")
    assert all(scores[f"bprop: {p}"] == 0.75 for p in ("W1", "b1", "W2", "b2")), scores
    assert "on 10 of 2400 entries of dW1" in checks["bprop: W1"]["diagnosis"]
    assert "on 10 of 40 entries of db1" in checks["bprop: b1"]["diagnosis"]


def test_one_wrong_entry_of_a_wide_gradient_is_not_sampled_away(graded: dict) -> None:
    scores, checks = _scores(graded, "one_entry"), _checks(graded, "one_entry")
    assert scores["bprop: W1"] == 0 and sum(scores.values()) == 10 - 1.5
    assert "dW1[3, 17]" in checks["bprop: W1"]["details"][0]
    assert "consistent" not in checks["bprop: W1"]["diagnosis"]


def test_a_missing_relu_derivative_costs_the_first_layer(graded: dict) -> None:
    scores = _scores(graded, "no_relu_derivative")
    assert scores["bprop: W1"] == 0 and scores["bprop: b1"] == 0
    assert sum(scores.values()) == 10 - 3


MLP_COURSE = '''
from gradcheck.assignments import Network

TITLE = "the document mlp, wider"
ASSIGNMENTS = (
    Network.document("mlp", sizes=(
        {"widths": (30, 40, 20, 3), "activations": ("relu", "tanh", "sigmoid"), "m": 7},
        {"widths": (25, 35, 15, 2), "activations": ("tanh", "relu", "sigmoid"),
         "loss": "cross_entropy"},
    )),
)
'''


def _mlp_course(tmp_path: Path, course_source: str) -> Path:
    course = tmp_path / "course"
    course.mkdir()
    (course / "course.py").write_text(course_source)
    reference = (ROOT / "solutions" / "mlp.py").read_text()
    (course / "mlp.py").write_text(reference)
    return course


def test_an_instructor_sizes_the_document_mlp(tmp_path: Path) -> None:
    course = _mlp_course(tmp_path, MLP_COURSE)
    answer = "\n".join(line for line in (course / "mlp.py").read_text().splitlines()
                       if "### " not in line)
    averaged = answer.replace('delta @ inputs[layer - 1].T', 'delta @ inputs[layer - 1].T / y.shape[1]')
    assert averaged != answer
    for student, source in {"good": answer, "averaged": averaged}.items():
        (tmp_path / "submit" / student).mkdir(parents=True)
        (tmp_path / "submit" / student / "mlp.py").write_text(source)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(GRADER), str(tmp_path / "submit"), "--course",
                             str(course), "--out", str(out), "--workers", "2"],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    run = json.loads((out / "run.json").read_text())
    assert sum(_scores(run, "good").values()) == 10
    scores, checks = _scores(run, "averaged"), _checks(run, "averaged")
    assert sum(scores.values()) == 7 and scores["bprop: b1"] == 1
    assert checks["bprop: W3"]["example"] == "hidden example 1 (batch of 7)"
    assert "divided by the batch size m = 7" in checks["bprop: W3"]["diagnosis"]


def test_sizes_of_different_depths_are_a_usage_error(tmp_path: Path) -> None:
    course = _mlp_course(tmp_path, MLP_COURSE.replace("(25, 35, 15, 2)", "(25, 2)").replace(
        '("tanh", "relu", "sigmoid")', '("sigmoid",)'))
    (tmp_path / "submit").mkdir()
    result = subprocess.run([sys.executable, str(GRADER), str(tmp_path / "submit"), "--course",
                             str(course), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "the sizes give different parameters" in result.stderr
    assert "Traceback" not in result.stderr
