"""The layers course (examples/courses/layers/): references, example students, README table.

These tests use no assignment-model API: ``course.py`` is read through a stand-in for
``gradcheck.assignments`` that only records the declarations (with the constructors'
signatures, so a misspelt field fails here), every reference gradient is checked against
``gradcheck.numerical_gradient`` on the declared sizes, and each example student is scored
by a small oracle of the README's rubric, so the README's table is asserted, not trusted.
"""

import copy
import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest
from scipy import signal, special

from gradcheck import numerical_gradient

COURSE = Path(__file__).resolve().parent.parent / "examples" / "courses" / "layers"
SUBMIT = COURSE / "submit"
RTOL = 1e-6

# Points per assignment for every example student (the README's table says the same).
FULL = {"affine": 8, "relu": 8, "batchnorm": 8, "conv": 8, "softmax": 8, "two_layer_net": 10}
EXPECTED = {
    "good": FULL,
    "transposed": {**FULL, "affine": 6},
    "sign": {**FULL, "relu": 2},
    "batchnorm_no_mean_term": {**FULL, "batchnorm": 6},
    "conv_no_pad": {**FULL, "conv": 6},
    "softmax_not_averaged": {**FULL, "softmax": 3},
    "notebook": FULL,
    "missing": {**dict.fromkeys(FULL, 0), "affine": 8, "softmax": 8},
}


# -- a stand-in for gradcheck.assignments: records what course.py declares -------------------

@dataclasses.dataclass
class Input:
    shape: tuple
    low: float = -1.0
    high: float = 1.0
    kinks: tuple = ()
    dtype: str = "float64"


@dataclasses.dataclass
class Labels:
    shape: tuple
    classes: str


@dataclasses.dataclass
class Fixed:
    value: object


@dataclasses.dataclass
class Example:
    inputs: dict
    source: str = ""
    expected: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Rubric:
    forward: float = 2.0
    backward: float = 6.0
    update: float = 2.0
    per_gradient: dict | None = None


_COMMON = {"wrt": None, "sizes": None, "examples": (), "rubric": None, "title": "",
           "notation": "", "valid": None, "tolerance": None}


def _kind(kind, *fields):
    def make(*, name, **kwargs):
        unknown = set(kwargs) - set(fields) - set(_COMMON)
        if unknown:
            raise TypeError(f"{kind}() got unexpected fields {sorted(unknown)}")
        return types.SimpleNamespace(kind=kind, name=name, **{**_COMMON, **kwargs})
    return make


def _stand_in():
    module = types.ModuleType("gradcheck.assignments")
    module.Input, module.Labels, module.Fixed = Input, Labels, Fixed
    module.Example, module.Rubric = Example, Rubric
    module.Layer = _kind("layer", "forward", "backward", "inputs")
    module.Loss = _kind("loss", "function", "inputs")
    module.Network = _kind("network", "x", "y", "params", "loss", "lr")
    return module


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def course():
    saved = sys.modules.get("gradcheck.assignments")
    sys.modules["gradcheck.assignments"] = _stand_in()
    try:
        module = _load(COURSE / "course.py", "layers_course")
    finally:
        if saved is None:
            del sys.modules["gradcheck.assignments"]
        else:
            sys.modules["gradcheck.assignments"] = saved
    return {a.name: a for a in module.ASSIGNMENTS}


@pytest.fixture(scope="module")
def references(course):
    return {name: _load(COURSE / f"{name}.py", f"layers_ref_{name}") for name in course}


# -- drawing inputs as declared ------------------------------------------------------------

def _specs(a):
    """The assignment's inputs by name, in call order (a network's x, y, then params)."""
    if a.kind == "network":
        return {"x": a.x, "y": a.y, **a.params}
    return a.inputs


def _sizes(a):
    if a.sizes:
        return a.sizes
    # Undeclared: distinct sizes 2..8 for the shape symbols, as the model's default draws.
    shapes = [spec.shape for spec in _specs(a).values() if hasattr(spec, "shape")]
    symbols = sorted({symbol for shape in shapes for symbol in shape})
    rng = np.random.default_rng(len(a.name))
    return tuple(dict(zip(symbols, (int(v) for v in rng.choice(np.arange(2, 9), len(symbols),
                                                                  replace=False))))
                 for _ in range(3))


def _draw(spec, sizes, rng):
    if isinstance(spec, Fixed):
        return copy.deepcopy(spec.value)
    shape = tuple(sizes[s] for s in spec.shape)
    if isinstance(spec, Labels):
        return rng.integers(0, sizes[spec.classes], shape)
    value = rng.uniform(spec.low, spec.high, shape).astype(spec.dtype)
    for kink in spec.kinks:  # redraw what is too close to a kink for finite differences
        while (near := np.abs(value - kink) < 1e-2).any():
            value[near] = rng.uniform(spec.low, spec.high, near.sum())
    return value


def _wrt(a):
    if a.wrt:
        return tuple(a.wrt)
    if a.kind == "network":
        return tuple(a.params)
    return tuple(k for k, spec in a.inputs.items() if isinstance(spec, Input))


def _cases(a, seed=0):
    """(inputs, dout seed) for each declared size, each from its own generator."""
    for index, sizes in enumerate(_sizes(a)):
        rng = np.random.default_rng([seed, index])
        yield {k: _draw(spec, sizes, rng) for k, spec in _specs(a).items()}


def _tuple(grads):
    return grads if isinstance(grads, tuple) else (grads,)


# -- forward, gradients and finite differences, the same for any module ----------------------

def _run(a, module, inputs, dout_seed=1):
    """(value, {name: gradient}, objective(perturbable dict) -> float) for one case."""
    if a.kind == "layer":
        forward, backward = getattr(module, a.forward), getattr(module, a.backward)
        out, cache = forward(*inputs.values())
        dout = np.random.default_rng(dout_seed).standard_normal(np.shape(out))
        grads = dict(zip(_wrt(a), _tuple(backward(dout, cache))))

        def objective(p):
            return float(np.sum(forward(*(p.get(k, v) for k, v in inputs.items()))[0] * dout))
        return out, grads, objective
    if a.kind == "loss":
        function = getattr(module, a.function)
        loss, grads = function(*inputs.values())
        grads = dict(zip(_wrt(a), _tuple(grads)))
        return loss, grads, lambda p: float(function(*(p.get(k, v) for k, v in inputs.items()))[0])
    x, y = inputs["x"], inputs["y"]
    params = {k: v for k, v in inputs.items() if k not in ("x", "y")}
    cache = module.fprop(x, y, params)
    return cache["loss"], module.bprop(cache), lambda p: float(module.fprop(x, y, p)["loss"])


def _numerical(a, inputs, objective):
    arrays = {k: inputs[k] for k in _wrt(a)}
    return numerical_gradient(objective, arrays, eps=1e-6)


def _close(actual, expected, rtol=RTOL):
    actual = np.asarray(actual, dtype=float)
    expected = np.asarray(expected, dtype=float)
    scale = np.max(np.abs(expected), initial=1.0)  # rounding in the differences scales with it
    return actual.shape == expected.shape and np.allclose(actual, expected, rtol=rtol,
                                                          atol=1e-9 * scale)


# -- the references ------------------------------------------------------------------------

def test_the_course_declares_six_assignments_with_references(course):
    assert list(course) == ["affine", "relu", "batchnorm", "conv", "softmax", "two_layer_net"]
    for name in course:
        text = (COURSE / f"{name}.py").read_text()
        assert text.count("### BEGIN SOLUTION") == text.count("### END SOLUTION") >= 1
        assert 'if __name__ == "__main__":' in text


@pytest.mark.parametrize("name", list(FULL))
def test_every_reference_gradient_matches_finite_differences(course, references, name):
    a = course[name]
    for inputs in _cases(a):
        _, grads, objective = _run(a, references[name], inputs)
        assert set(grads) == set(_wrt(a))
        for key, numerical in _numerical(a, inputs, objective).items():
            error = np.max(np.abs(grads[key] - numerical)) / np.max(np.abs(numerical))
            assert grads[key].shape == numerical.shape, f"d{key} of {name}"
            assert _close(grads[key], numerical), f"d{key} of {name}: relative error {error:.1e}"


def test_the_conv_sizes_fit_stride_and_padding(course):
    conv = course["conv"]
    stride, pad = conv.inputs["conv_param"].value["stride"], conv.inputs["conv_param"].value["pad"]
    for sizes in conv.sizes:
        assert (sizes["H"] + 2 * pad - sizes["HH"]) % stride == 0
        assert (sizes["W"] + 2 * pad - sizes["WW"]) % stride == 0
        assert len(set(sizes.values())) == len(sizes), sizes  # a swapped axis is a shape error


@pytest.mark.parametrize("name", ["affine", "two_layer_net", "batchnorm"])
def test_the_batch_size_differs_from_every_width(course, name):
    for sizes in _sizes(course[name]):
        assert list(sizes.values()).count(sizes["N"]) == 1, sizes


def test_the_worked_examples_give_their_expected_values(course, references):
    checked = 0
    for name, a in course.items():
        for example in a.examples:
            inputs = {k: np.asarray(v) for k, v in example.inputs.items()}
            value, _, _ = _run(a, references[name], inputs)
            (key, expected), = example.expected.items()
            assert key in ("out", "loss")
            np.testing.assert_allclose(value, expected, atol=1e-12)
            checked += 1
    assert checked == 4


def test_the_forward_passes_agree_with_independent_formulas(course, references):
    for inputs in _cases(course["conv"]):
        out, _ = references["conv"].conv_forward_naive(*inputs.values())
        s, p = inputs["conv_param"]["stride"], inputs["conv_param"]["pad"]
        xpad = np.pad(inputs["x"], ((0, 0), (0, 0), (p, p), (p, p)))
        for n in range(xpad.shape[0]):
            for f, w in enumerate(inputs["w"]):
                full = signal.correlate(xpad[n], w, mode="valid")[0]  # sums over channels
                np.testing.assert_allclose(out[n, f], full[::s, ::s] + inputs["b"][f], atol=1e-12)
    for inputs in _cases(course["softmax"]):
        x, y = inputs["x"], inputs["y"]
        loss, _ = references["softmax"].softmax_loss(x, y)
        expected = np.mean(special.logsumexp(x, axis=1) - x[np.arange(len(y)), y])
        assert loss == pytest.approx(expected, rel=1e-12)
    for inputs in _cases(course["batchnorm"]):
        out, _ = references["batchnorm"].batchnorm_forward(*inputs.values())
        xhat = (out - inputs["beta"]) / inputs["gamma"]
        np.testing.assert_allclose(xhat.mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(xhat.var(axis=0), 1.0, rtol=1e-3)  # eps shrinks it a little


def test_the_softmax_loss_is_stable_for_huge_scores(references):
    loss, dx = references["softmax"].softmax_loss(np.array([[1000.0, 0.0], [0.0, -1000.0]]),
                                                  np.array([0, 1]))
    assert loss == pytest.approx(500.0) and np.isfinite(dx).all()


def test_the_two_layer_net_update_is_a_descent_step_that_keeps_params(course, references):
    params = {"W1": np.ones((2, 3)), "b1": np.zeros(3)}
    grads = {"W1": np.full((2, 3), 2.0), "b1": np.ones(3)}
    new = references["two_layer_net"].update(params, grads, 0.1)
    np.testing.assert_allclose(new["W1"], 0.8)
    np.testing.assert_allclose(new["b1"], -0.1)
    np.testing.assert_array_equal(params["W1"], 1.0)


@pytest.mark.parametrize("name", list(FULL))
def test_the_self_check_students_run_reports_tiny_errors(name, tmp_path):
    # As in a student's folder: the file, with the support files copied beside it.
    for path in (COURSE / f"{name}.py", *(COURSE / "support").iterdir()):
        shutil.copy(path, tmp_path)
    result = subprocess.run([sys.executable, f"{name}.py"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    errors = [float(e) for e in re.findall(r"max relative error (\S+)", result.stdout)]
    assert errors and max(errors) < 1e-6, result.stdout


# -- the example students ------------------------------------------------------------------

def _student_module(folder, name):
    if (folder / f"{name}.py").exists():
        return _load(folder / f"{name}.py", f"layers_{folder.name}_{name}")
    if not (folder / f"{name}.ipynb").exists():
        return None
    notebook = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    module = types.ModuleType(f"layers_{folder.name}_{name}")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, f"{name}.ipynb", "exec"), module.__dict__)
    return module


def _all_cases(a, check):
    """True when ``check(case)`` holds on every hidden case; an exception counts as False."""
    try:
        return all(check(inputs) for inputs in _cases(a, seed=7))
    except Exception:  # a student's shape error is a failed check, not a test error
        return False


def _points(a, reference, student):
    """The README's rubric: forward, each gradient (half when consistent with the student's
    own forward only), update; on every hidden case."""
    rubric = a.rubric or Rubric()
    wrt = _wrt(a)
    per_gradient = rubric.per_gradient or {k: rubric.backward / len(wrt) for k in wrt}

    def both(inputs):
        return _run(a, reference, copy.deepcopy(inputs)), _run(a, student, copy.deepcopy(inputs))

    points = rubric.forward * _all_cases(a, lambda i: _close(both(i)[1][0], both(i)[0][0]))
    for key in wrt:
        def matches(inputs, key=key):
            (_, ref_grads, _), (_, grads, _) = both(inputs)
            return _close(grads[key], ref_grads[key])

        def consistent(inputs, key=key):
            _, grads, objective = _run(a, student, inputs)
            return _close(grads[key], _numerical(a, inputs, objective)[key])
        points += per_gradient[key] * (1.0 if _all_cases(a, matches) else
                                       0.5 if _all_cases(a, consistent) else 0.0)
    if a.kind == "network":
        def descends(inputs):
            params = {k: v for k, v in inputs.items() if k not in ("x", "y")}
            rng = np.random.default_rng(3)
            grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
            new = student.update(params, grads, a.lr)
            return all(_close(new[k], params[k] - a.lr * grads[k]) for k in params)
        points += rubric.update * _all_cases(a, descends)
    return points


@pytest.mark.parametrize("student", list(EXPECTED))
def test_each_example_student_scores_the_expected_points(course, references, student, monkeypatch):
    monkeypatch.syspath_prepend(str(COURSE / "support"))  # the notebook's demo cell imports it
    folder = SUBMIT / student
    scores = {}
    for name, a in course.items():
        module = _student_module(folder, name)
        scores[name] = 0 if module is None else _points(a, references[name], module)
    assert scores == EXPECTED[student]


def test_the_buggy_students_say_their_bug_and_score_at_the_top():
    for student, points in EXPECTED.items():
        wrong = [name for name, p in points.items() if p not in (FULL[name], 0)]
        for name in wrong:
            head = (SUBMIT / student / f"{name}.py").read_text().splitlines()[:5]
            assert head[0].startswith("# Bug: "), (student, name)
            assert any(f"{name} {points[name]}/{FULL[name]}" in line for line in head)


def test_the_missing_student_has_an_unrelated_file():
    assert sorted(p.name for p in (SUBMIT / "missing").iterdir()) == [
        "affine.py", "notes.txt", "softmax.py"]


def test_the_readme_table_is_the_expected_points():
    rows = {}
    for line in (COURSE / "README.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == len(FULL) + 2 and cells[0] in EXPECTED:
            rows[cells[0]] = {name: float(c) for name, c in zip(FULL, cells[1:-1])}
            assert float(cells[-1]) == sum(rows[cells[0]].values())
    assert rows == EXPECTED


def test_the_students_are_generated_from_the_references(tmp_path):
    result = subprocess.run([sys.executable, str(COURSE / "make_submissions.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(SUBMIT) for p in SUBMIT.rglob("*") if p.is_file())
    assert generated == committed, "run: python examples/courses/layers/make_submissions.py"
    for path in generated:
        assert (tmp_path / path).read_text() == (SUBMIT / path).read_text(), path
