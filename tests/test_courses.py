"""Course folders: an instructor's own layers, losses and networks, graded without touching
gradcheck, through grader.py and the pytest plugin (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gradcheck.assignments import Fixed, Input, Labels, Layer, Loss, Network
from gradcheck.courses import load_course
from gradcheck.errors import InvalidArgument

ROOT = Path(__file__).resolve().parent.parent
GRADER = ROOT / "grader.py"

pytest_plugins = ["pytester"]

COURSE = '''
from gradcheck.assignments import Input, Labels, Layer, Loss, Network, Fixed

TITLE = "a tiny course"
ASSIGNMENTS = (
    Layer(name="affine", forward="affine_forward", backward="affine_backward",
          inputs={"x": Input(("N", "D")), "w": Input(("D", "M")), "b": Input(("M",))}),
    Layer(name="scale", forward="scale_forward", backward="scale_backward",
          inputs={"x": Input(("N", "D")), "options": Fixed({"factor": 3.0})}),
    Loss(name="softmax", function="softmax_loss",
         inputs={"x": Input(("N", "C")), "y": Labels(("N",), classes="C")}),
    Network(name="linear_net", x=Input(("N", "D")), y=Input(("N", "K")),
            params={"W": Input(("D", "K"))}, loss="squared"),
)
'''

REFERENCES = {
    "affine": '''
        import numpy as np

        def affine_forward(x, w, b):
            ### BEGIN SOLUTION
            return x @ w + b, (x, w)
            ### END SOLUTION

        def affine_backward(dout, cache):
            ### BEGIN SOLUTION
            x, w = cache
            return dout @ w.T, x.T @ dout, dout.sum(axis=0)
            ### END SOLUTION
        ''',
    "scale": '''
        def scale_forward(x, options):
            return options["factor"] * x, options["factor"]

        def scale_backward(dout, cache):
            return cache * dout
        ''',
    "softmax": '''
        import numpy as np

        def softmax_loss(x, y):
            shifted = x - x.max(axis=1, keepdims=True)
            p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
            n = x.shape[0]
            loss = -np.log(p[np.arange(n), y]).sum() / n
            dx = p.copy()
            dx[np.arange(n), y] -= 1
            return loss, dx / n
        ''',
    "linear_net": '''
        import numpy as np

        def fprop(x, y, params):
            yhat = x @ params["W"]
            return {"x": x, "y": y, "yhat": yhat, "loss": 0.5 * np.sum((yhat - y) ** 2)}

        def bprop(cache):
            return {"W": cache["x"].T @ (cache["yhat"] - cache["y"])}

        def update(params, grads, lr):
            return {k: params[k] - lr * grads[k] for k in params}
        ''',
}

# student -> {file: edit of the reference (old, new)}; None: the reference as it is
STUDENTS = {
    "good": {"affine": None, "scale": None, "softmax": None, "linear_net": None},
    "buggy": {
        "affine": ("x.T @ dout", "(x.T @ dout).T"),            # dw transposed (D != M)
        "scale": ("cache * dout", "-cache * dout"),             # sign flipped
        "softmax": ("return loss, dx / n", "return loss * n, dx"),  # not averaged
        "linear_net": ("params[k] - lr * grads[k]", "params[k] + lr * grads[k]"),  # ascent
    },
}

EXPECTED = {  # points per check, as the grader and the plugin must give them
    "good": {"affine": 8.0, "scale": 8.0, "softmax": 8.0, "linear_net": 10.0},
    # (a layer or a loss has no update: forward 2, backward 6.) affine: dw's share (6/3) lost; scale: dx's 6 lost; softmax: the loss's 2 lost and half
    # of dx's 6 (dx is the gradient of the student's own, unaveraged loss); linear_net:
    # update's 2 lost.
    "buggy": {"affine": 6.0, "scale": 2.0, "softmax": 3.0, "linear_net": 8.0},
}


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("course")
    (folder / "course.py").write_text(COURSE)
    for name, source in REFERENCES.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
    (folder / "support").mkdir()
    (folder / "support" / "helpers.py").write_text("FACTOR = 3.0\n")
    return folder


@pytest.fixture(scope="module")
def submissions(course: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("submit")
    for student, edits in STUDENTS.items():
        (root / student).mkdir()
        for name, edit in edits.items():
            source = textwrap.dedent(REFERENCES[name])
            if edit is not None:
                assert edit[0] in source
                source = source.replace(*edit)
            (root / student / f"{name}.py").write_text(source)
    # A support module imported by the student: copied into every scratch copy.
    (root / "good" / "scale.py").write_text(
        "from helpers import FACTOR\n" + (root / "good" / "scale.py").read_text())
    (root / "good" / "notes.txt").write_text("not an assignment\n")
    return root


def _grade(submit: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GRADER), str(submit), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def graded(course: Path, submissions: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("out")
    result = _grade(submissions, out, "--course", str(course), "--workers", "2")
    assert result.returncode == 0, result.stderr
    return json.loads((out / "run.json").read_text())


def _scores(run: dict, student: str) -> dict[str, float]:
    found = next(s for s in run["students"] if s["student"] == student)
    return {a["assignment"]: sum(c["score"] for c in a["checks"]) for a in found["assignments"]}


def _checks(run: dict, student: str, name: str) -> dict[str, dict]:
    found = next(s for s in run["students"] if s["student"] == student)
    assignment = next(a for a in found["assignments"] if a["assignment"] == name)
    return {c["name"]: c for c in assignment["checks"]}


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_the_grader_scores_an_instructors_course(graded: dict, student: str) -> None:
    assert _scores(graded, student) == pytest.approx(EXPECTED[student])


def test_layer_checks_name_every_input_gradient(graded: dict) -> None:
    checks = _checks(graded, "buggy", "affine")
    assert list(checks) == ["affine_forward", "affine_backward: dx", "affine_backward: dw",
                            "affine_backward: db"]
    assert not checks["affine_backward: dw"]["passed"] and checks["affine_backward: dx"]["passed"]
    assert "transpose" in checks["affine_backward: dw"]["diagnosis"]


def test_loss_checks_and_a_sign_flipped_layer_gradient(graded: dict) -> None:
    softmax = _checks(graded, "buggy", "softmax")
    assert list(softmax) == ["softmax_loss: loss", "softmax_loss: dx"]
    assert "times the reference loss" in softmax["softmax_loss: loss"]["diagnosis"]
    scale = _checks(graded, "buggy", "scale")["scale_backward: dx"]
    assert "sign" in scale["diagnosis"] and "prediction" not in scale["diagnosis"]


def test_an_update_that_climbs_the_gradient_is_named(graded: dict) -> None:
    update = _checks(graded, "buggy", "linear_net")["update"]
    assert "gradient ascent" in update["diagnosis"]


def test_files_that_are_not_assignments_are_listed_not_graded(graded: dict) -> None:
    good = next(s for s in graded["students"] if s["student"] == "good")
    assert good["unknown_files"] == ["notes.txt"]
    assert {a["assignment"] for a in good["assignments"]} == set(REFERENCES)


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_the_plugin_gives_the_grader_s_points(course: Path, submissions: Path, student: str,
                                              pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_course='''
        import pytest

        @pytest.mark.points(10)
        @pytest.mark.parametrize("name", ["affine", "scale", "softmax", "linear_net"])
        def test_assignment(submission, name):
            submission(name).check()
        ''')
    result = pytester.runpytest_subprocess("--course", str(course), "--submission",
                                           str(submissions / student), "-p", "no:cacheprovider",
                                           timeout=300)
    line = next(line for line in result.outlines if line.startswith("Score: "))
    rubric_max = {"affine": 8, "scale": 8, "softmax": 8, "linear_net": 10}
    # Each test is worth 10 and earns 10 times the share of its assignment's points.
    expected = sum(10 * EXPECTED[student][n] / rubric_max[n] for n in rubric_max)
    assert float(line.split()[1]) == pytest.approx(expected)


def test_a_course_without_course_py_is_a_one_line_usage_error(tmp_path: Path) -> None:
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / "affine.py").write_text("")
    result = _grade(tmp_path / "student", tmp_path / "out", "--course", str(tmp_path))
    assert result.returncode == 2
    assert "has no course.py" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_course_package_is_named(course: Path, tmp_path: Path) -> None:
    folder = tmp_path / "course"
    folder.mkdir()
    for file in course.glob("*.py"):
        (folder / file.name).write_text(file.read_text())
    (folder / "requirements.txt").write_text("numpy>=1.24\nno-such-package-xyz==1.0\n")
    result = _grade(course.parent, tmp_path / "out", "--course", str(folder))
    assert result.returncode == 2
    assert "no_such_package_xyz" in result.stderr and "numpy" not in result.stderr.split(":")[-1]


def test_the_model_draws_distinct_sizes_and_keeps_inputs_away_from_kinks() -> None:
    relu = Layer(name="relu", forward="f", backward="b",
                 inputs={"x": Input(("N", "D"), kinks=(0.0,)), "w": Input(("D", "M"))})
    for case in relu.cases(seed=3, hidden=5)[:5]:
        assert len(set(case.sizes.values())) == len(case.sizes)  # no square matrix by accident
        assert np.abs(case.inputs["x"]).min() >= 1e-2
        assert case.batch_size == case.sizes["N"]


def test_the_model_refuses_a_gradient_of_an_input_that_is_not_an_array() -> None:
    with pytest.raises(InvalidArgument, match="wrt names"):
        Loss(name="svm", function="svm_loss", wrt=("y",),
             inputs={"x": Input(("N", "C")), "y": Labels(("N",), classes="C")})


def test_the_document_course_is_the_default() -> None:
    course = load_course()
    assert course.names == ("three_node", "batch_sigmoid", "two_hidden", "binary_classifier",
                            "three_input", "mlp")
    assert isinstance(course.get("mlp"), Network)
    with pytest.raises(InvalidArgument, match="choose one of three_node"):
        course.get("softmax")


def test_a_fixed_input_is_passed_as_it_is_and_never_differentiated() -> None:
    layer = Layer(name="scale", forward="f", backward="b",
                  inputs={"x": Input(("N",)), "options": Fixed({"factor": 3.0})})
    assert layer.wrt == ("x",)
    (case,) = layer.cases(hidden=1)
    assert case.inputs["options"] == {"factor": 3.0}
