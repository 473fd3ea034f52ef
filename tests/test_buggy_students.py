"""Common student bugs graded by the real grader: the points lost and the cause named.

Each student is a reference solution with one line changed, the way real students get it
wrong. One grader run per course (module-scoped fixtures) grades them all; each test reads
one student's results.json and checks the score of every check, that the failing check
names the cause in a student's words, and that no wrong cause is named.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GRADER = ROOT / "grader.py"
LAYERS = ROOT / "examples" / "courses" / "layers"


@dataclass(frozen=True)
class Student:
    assignment: str
    old: str
    new: str
    lost: dict[str, float]
    """Points lost, by check name (e.g. "bprop: W1"); every other check scores in full."""
    words: tuple[str, ...] = ()
    """Phrases the failing checks' output must contain."""
    never: tuple[str, ...] = ()
    """Phrases it must not contain (a wrong cause)."""


def patched(folder: Path, s: Student) -> str:
    """The reference with ``s.old`` replaced inside its solution blocks (exactly once)."""
    parts = (folder / f"{s.assignment}.py").read_text().split("### BEGIN SOLUTION")
    bodies = [part.partition("### END SOLUTION") for part in parts[1:]]
    assert sum(body.count(s.old) for body, _, _ in bodies) == 1, s.old
    return "### BEGIN SOLUTION".join(
        [parts[0]] + [body.replace(s.old, s.new) + sep + rest for body, sep, rest in bodies])


DOCUMENT: dict[str, Student] = {
    "gradients_in_a_list": Student(
        "three_node", 'return {"W1": dW1, "W2": dW2}', "return [dW1, dW2]",
        {"bprop: W1": 3, "bprop: W2": 3},
        ("bprop returned a list of 2 items, not a dict", "return a dict with one array per "
         "gradient, dW1 under the key 'W1'"), ("returned no gradient for",)),
    # With cross-entropy and a sigmoid output, sigma' cancels; students multiply by it anyway.
    "sigmoid_derivative_with_cross_entropy": Student(
        "binary_classifier", "dz2 = a2 - y  #", "dz2 = (a2 - y) * a2 * (1 - a2)  #",
        {"bprop: W1": 1.5, "bprop: b1": 1.5, "bprop: W2": 1.5, "bprop: b2": 1.5},
        ("the derivative cancels, dloss/dz2 = a2 - y, so do not multiply by a2 * (1 - a2)",),
        ("constant factor", "no simple pattern")),
    "activation_of_the_wrong_layer": Student(
        "two_hidden", "(2, delta2, a1), (1, delta1, a0)", "(2, delta2, a2), (1, delta1, a0)",
        {"bprop: W2": 1},
        ("dW2 matches the reference with a2 in place of a1", "dW2 = delta2 @ a1.T"),
        ("no simple pattern",)),
    "update_in_place_returns_none": Student(
        "three_input", "return {key: params[key] - lr * grads[key] for key in params}",
        "for key in params:\n        params[key] -= lr * grads[key]", {"update": 2},
        ("update returned None instead of the new parameters: updating params in place",),
        ("NoneType", "W1 included")),
    "update_returns_the_step": Student(
        "three_node", "params[key] - lr * grads[key]", "lr * grads[key]", {"update": 2},
        ("update returned lr * dp for W1, not the new value",)),
    "sigmoid_formula_on_z": Student(
        "batch_sigmoid", "* sigmoid_prime(z2)", "* z2 * (1 - z2)", {"bprop: W1": 3},
        ("z1 * (1 - z1) in place of a1 * (1 - a1)", "not the pre-activation z1"),
        ("no simple pattern",)),
    "pre_activation_as_input": Student(
        "binary_classifier", "dW2 = dz2 @ a1.T", "dW2 = dz2 @ z1.T", {"bprop: W2": 1.5},
        ("the pre-activation z1 in place of the activation a1", "dW2 = delta2 @ a1.T"),
        ("no simple pattern",)),
}

LAYER_STUDENTS: dict[str, Student] = {
    # The worked example has N = 2: "scaled by 2" there would name a factor nobody wrote.
    "softmax_no_1_over_n": Student(
        "softmax", "return float(loss), dx / n", "return float(loss), dx", {"softmax_loss: dx": 6},
        ("scaled by N with N = 3, the batch size",), ("factor 2",)),
    "affine_dw_mean": Student(
        "affine", "dw = x.T @ dout", "dw = x.T @ dout / x.shape[0]", {"affine_backward: dw": 2},
        ("scaled by 1/N with N = 4, the batch size",), ("factor 1/2",)),
    # The course's second worked example has scores near 1000: exp overflows without the max.
    "softmax_without_the_max": Student(
        "softmax", "shifted = x - x.max(axis=1, keepdims=True)", "shifted = x",
        {"softmax_loss: loss": 2, "softmax_loss: dx": 6},
        ("softmax_loss's loss is inf", "Subtract each row's maximum before exp",
         "dx is computed from the same overflowed values"), ("no simple pattern",)),
    "softmax_correct_class_term_missing": Student(
        "softmax", "dx[np.arange(n), y] -= 1.0", "pass", {"softmax_loss: dx": 6},
        ("dx is right everywhere except at each example's own class",
         "dx = (p - 1 at the correct class) / N"), ("no simple pattern",)),
    "softmax_correct_class_plus_one": Student(
        "softmax", "dx[np.arange(n), y] -= 1.0", "dx[np.arange(n), y] += 1.0",
        {"softmax_loss: dx": 6}, ("missing or has the wrong sign",), ("no simple pattern",)),
    "affine_db_over_features": Student(
        "affine", "db = dout.sum(axis=0)", "db = dout.sum(axis=1)", {"affine_backward: db": 2},
        ("one entry per example: it is summed over the wrong axis", "sum over axis 0"),
        ("check which operands the product multiplies",)),
    "conv_padding_kept": Student(
        "conv", "dx = dxpad[:, :, p:p + x_shape[2], p:p + x_shape[3]]", "dx = dxpad",
        {"conv_backward_naive: dx": 2},
        ("the shape of the padded x (pad = 1 on each side)", "dx = dxpad[:, :, 1:-1, 1:-1]",
         "expected (2, 3, 7, 8), the shape of x itself"),
        ("check which operands the product multiplies", "parameter")),
    "relu_gradient_not_gated": Student(
        "relu", "return dout * (x > 0)", "return dout", {"relu_backward: dx": 6},
        ("dx is right where x > 0 and not zero where x <= 0", "dx = dout * (x > 0)"),
        ("no simple pattern",)),
    # Gated the wrong way round: wrong where x > 0 too, so not "not gated".
    "relu_gate_inverted": Student(
        "relu", "return dout * (x > 0)", "return dout * (x < 0)", {"relu_backward: dx": 6},
        (), ("unit was inactive",)),
    "batchnorm_mean_term_missing": Student(
        "batchnorm", "(n * dxhat - dxhat.sum(axis=0) - xhat", "(n * dxhat - xhat",
        {"batchnorm_backward: dx": 2},
        ("dx is the expected gradient plus the same row for each of the N = 5 examples",
         "comes through the batch mean"), ("no simple pattern",)),
    # The variance term is not a per-column offset: no mean term may be claimed for it.
    "batchnorm_variance_term_missing": Student(
        "batchnorm", " - xhat * (dxhat * xhat).sum(axis=0))", ")", {"batchnorm_backward: dx": 2},
        ("a multiple of the standardised input xhat", "comes through the batch variance"),
        ("batch mean", "no simple pattern")),
    "batchnorm_only_the_local_term": Student(
        "batchnorm", "dx = inv_std / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat)"
        ".sum(axis=0))", "dx = dxhat * inv_std", {"batchnorm_backward: dx": 2},
        ("through the batch mean and the batch variance are missing",), ("no simple pattern",)),
    "net_gradients_in_a_list": Student(
        "two_layer_net",
        'return {"W1": x.T @ dh, "b1": dh.sum(axis=0), "W2": a.T @ dscores, '
        '"b2": dscores.sum(axis=0)}',
        "return [x.T @ dh, dh.sum(axis=0), a.T @ dscores, dscores.sum(axis=0)]",
        {"bprop: W1": 1.5, "bprop: b1": 1.5, "bprop: W2": 1.5, "bprop: b2": 1.5},
        ("bprop returned a list of 4 items where db2 should be",), ("returned no gradient for",)),
}


def _grade(folder: Path, students: dict[str, Student], tmp: Path, *args: str) -> Path:
    submit, out = tmp / "submit", tmp / "out"
    for name, s in students.items():
        (submit / name).mkdir(parents=True)
        (submit / name / f"{s.assignment}.py").write_text(patched(folder, s))
    result = subprocess.run(
        [sys.executable, str(GRADER), str(submit), "--out", str(out), "--workers", "2", *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _grade(ROOT / "solutions", DOCUMENT, tmp_path_factory.mktemp("document"))


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _grade(LAYERS, LAYER_STUDENTS, tmp_path_factory.mktemp("layers"),
                  "--course", str(LAYERS))


def check(out: Path, name: str, s: Student) -> None:
    tests = json.loads((out / name / "results.json").read_text())["tests"]
    prefix = f"{s.assignment}: "
    mine = {t["name"][len(prefix):]: t for t in tests if t["name"].startswith(prefix)}
    assert mine and set(s.lost) <= set(mine), sorted(mine)
    for check_name, t in mine.items():
        lost = t["max_score"] - t["score"]
        assert lost == pytest.approx(s.lost.get(check_name, 0)), (check_name, t)
    text = "\n".join(mine[c]["output"] for c in s.lost)
    for words in s.words:
        assert words in text, f"{words!r} not in\n{text}"
    for words in s.never:
        assert words not in text, f"{words!r} in\n{text}"


@pytest.mark.parametrize("name", list(DOCUMENT))
def test_a_document_student_loses_the_wrong_share_and_hears_why(document: Path, name: str) -> None:
    check(document, name, DOCUMENT[name])


@pytest.mark.parametrize("name", list(LAYER_STUDENTS))
def test_a_layers_student_loses_the_wrong_share_and_hears_why(layers: Path, name: str) -> None:
    check(layers, name, LAYER_STUDENTS[name])


@pytest.mark.parametrize("name", ["softmax_without_the_max", "batchnorm_mean_term_missing"])
def test_the_plugin_gives_a_buggy_layers_student_the_graders_points(layers: Path, name: str,
                                                                    tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(LAYERS / "test_layers.py"), "--course", str(LAYERS),
         "--submission", str(layers.parent / "submit" / name),
         "--gradescope-results", str(results)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, cwd=tmp_path)
    plugin = json.loads(results.read_text())
    grader = json.loads((layers / name / "results.json").read_text())
    assert plugin["score"] == pytest.approx(grader["score"])
    text = "\n".join(t["output"] for t in plugin["tests"])
    assert LAYER_STUDENTS[name].words[0] in text, text
