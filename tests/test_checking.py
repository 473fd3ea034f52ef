"""check_gradients: passes every correct solution, flags and names each classic bug."""

import dataclasses
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradcheck import (GradientMismatchError, assert_gradients_close, check_gradients, networks,
                       strategies)


def solution_and(name):
    return networks.get(name).solution()


def check(name, example, bprop=None, fprop=None, **options):
    sol = solution_and(name)
    return check_gradients(fprop or sol.fprop, bprop or sol.bprop, example.x, example.y,
                           example.params, fprop_kwargs=example.options, name=name, **options)


@pytest.mark.parametrize("name", networks.NAMES)
@given(data=st.data())
def test_every_solution_passes_in_float64(name, data):
    example = data.draw(strategies.examples(name))
    report = check(name, example)
    assert report.ok, str(report)


@pytest.mark.parametrize("name", networks.NAMES)
@given(data=st.data())
def test_every_solution_passes_in_float32_with_float32_tolerances(name, data):
    example = data.draw(strategies.examples(name))
    as32 = dataclasses.replace(
        example, x=example.x.astype(np.float32), y=example.y.astype(np.float32),
        params={k: v.astype(np.float32) for k, v in example.params.items()})
    with pytest.warns(UserWarning, match="float32"):
        report = check(name, as32)
    assert report.ok, str(report)
    assert report.tolerance.rtol == pytest.approx(2e-3)


def mutated_bprop(name, key, change):
    sol = solution_and(name)

    def bprop(cache):
        grads = sol.bprop(cache)
        grads[key] = change(grads[key])
        return grads

    return bprop


BUGS = {
    "transposed": lambda g: g.T,
    "sign flipped": lambda g: -g,
    "scaled by 2": lambda g: 2 * g,
}


@pytest.mark.parametrize("bug", BUGS)
@pytest.mark.parametrize("name, key", [("two_hidden", "W2"), ("binary_classifier", "W1"),
                                       ("three_input", "W1"), ("batch_sigmoid", "W1")])
def test_a_single_parameter_bug_fails_and_names_that_parameter_only(bug, name, key):
    example = networks.get(name).random_example(np.random.default_rng(7), m=5)
    report = check(name, example, bprop=mutated_bprop(name, key, BUGS[bug]))
    assert not report.ok
    assert [p.name for p in report.parameters if not p.ok] == [key]
    assert key in str(report)


def test_transposed_shape_is_reported_as_the_transpose():
    example = networks.get("binary_classifier").random_example(np.random.default_rng(1), m=3, hidden=4)
    report = check("binary_classifier", example, bprop=mutated_bprop("binary_classifier", "W1", lambda g: g.T))
    w1 = report["W1"]
    assert w1.status == "wrong_shape" and w1.returned_shape == (2, 4) and w1.expected_shape == (4, 2)
    assert "transpose" in w1.message


def test_a_missing_activation_derivative_is_caught_in_the_hidden_layer():
    sol = solution_and("three_input")

    def bprop(cache):  # forgets sigma'(z1) = a1 (1 - a1)
        x, y, a1, a2, W2 = (cache[k] for k in ("x", "y", "a1", "a2", "W2"))
        delta2 = (a2 - y) * a2 * (1 - a2)
        return {"W1": (W2.T @ delta2) @ x.T, "W2": delta2 @ a1.T}

    example = networks.get("three_input").random_example(np.random.default_rng(3), m=4)
    report = check_gradients(sol.fprop, bprop, example.x, example.y, example.params)
    assert not report["W1"].ok and report["W2"].ok


@pytest.mark.parametrize(
    "returned, finding",
    [
        (lambda g: [g["W1"], g["W2"]], "not a dict"),
        (lambda g: {"W1": g["W1"]}, "no key for 'W2'"),
        (lambda g: {**g, "W3": g["W1"]}, "not a parameter"),
        (lambda g: {"W1": g["W1"], "W2": np.full_like(g["W2"], np.nan)}, "non-finite"),
        (lambda g: {"W1": g["W1"], "W2": None}, "None"),
        (lambda g: {"W1": g["W1"], "W2": "dW2"}, "not an array"),
    ],
)
def test_structural_problems_are_findings_not_crashes(returned, finding):
    sol = solution_and("three_input")
    example = networks.get("three_input").random_example(np.random.default_rng(0), m=2)
    report = check_gradients(sol.fprop, lambda c: returned(sol.bprop(c)), example.x, example.y, example.params)
    assert not report.ok
    assert finding in str(report)


@pytest.mark.parametrize(
    "fprop, finding",
    [
        (lambda x, y, p: 3.0, "not a dict"),
        (lambda x, y, p: {"yhat": 1.0}, "no 'loss' key"),
        (lambda x, y, p: {"loss": np.ones((1, 4))}, "not a scalar"),
        (lambda x, y, p: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_a_broken_fprop_is_a_finding(fprop, finding):
    example = networks.get("three_input").random_example(np.random.default_rng(0), m=4)
    report = check_gradients(fprop, lambda c: {}, example.x, example.y, example.params)
    assert not report.ok and report.max_relative_error == float("inf")
    assert finding in str(report)


def test_a_relu_input_at_zero_is_a_kink_not_a_mismatch():
    net = networks.get("mlp")
    sizes = dict(widths=(3, 5, 1), activations=("relu", "sigmoid"))
    example = net.random_example(np.random.default_rng(0), m=3, **sizes)
    params = {k: v.copy() for k, v in example.params.items()}
    z = net.architecture(**sizes).preactivations(example.x, params)[0]
    params["b1"][0, 0] -= z[0, 0] - 1e-9  # unit 0 of example 0 sits 1e-9 from the kink
    sol = net.solution()
    report = check_gradients(sol.fprop, sol.bprop, example.x, example.y, params, fprop_kwargs=example.options)
    assert report.ok, str(report)
    assert report["b1"].status == "kink" and report["b1"].kinks >= 1


def test_a_wrong_gradient_at_a_kink_still_fails():
    net = networks.get("mlp")
    sizes = dict(widths=(3, 5, 1), activations=("relu", "sigmoid"))
    example = net.random_example(np.random.default_rng(0), m=1, **sizes)
    params = {k: v.copy() for k, v in example.params.items()}
    z = net.architecture(**sizes).preactivations(example.x, params)[0]
    params["b1"][0, 0] -= z[0, 0] - 1e-9
    sol = net.solution()

    def bprop(cache):
        grads = sol.bprop(cache)
        grads["b1"] = grads["b1"] + 0.5  # outside [left, right] everywhere
        return grads

    report = check_gradients(sol.fprop, bprop, example.x, example.y, params, fprop_kwargs=example.options)
    assert report["b1"].status == "mismatch"


def test_reports_are_frozen_and_inputs_untouched():
    net = networks.get("two_hidden")
    example = net.random_example(np.random.default_rng(0), m=3)
    before = {k: v.copy() for k, v in example.params.items()}
    report = check("two_hidden", example)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.loss = 0.0  # type: ignore[misc]
    assert all(np.array_equal(before[k], example.params[k]) for k in before)


def test_an_fprop_that_modifies_params_gets_a_warning():
    sol = solution_and("three_input")

    def fprop(x, y, params):
        params["W2"] *= 1.0000001
        return sol.fprop(x, y, params)

    example = networks.get("three_input").random_example(np.random.default_rng(0), m=2)
    report = check_gradients(fprop, sol.bprop, example.x, example.y, example.params)
    assert any("modified params['W2']" in w for w in report.warnings)


def test_assert_gradients_close_raises_an_assertion_error_with_the_table():
    example = networks.get("two_hidden").random_example(np.random.default_rng(2), m=4)
    sol = solution_and("two_hidden")
    with pytest.raises(GradientMismatchError) as info:
        assert_gradients_close(sol.fprop, mutated_bprop("two_hidden", "W3", lambda g: -g),
                               example.x, example.y, example.params)
    assert isinstance(info.value, AssertionError)
    message = str(info.value)
    assert "W3" in message and "MISMATCH" in message and "sign" in message
    assert "array(" not in message  # a table, never a numpy dump
    assert info.value.report.parameters


def test_norm_difference_is_the_course_notebook_figure():
    from gradcheck import norm_difference
    a, n = np.array([1.0, 2.0]), np.array([1.0, 2.2])
    assert norm_difference(a, n) == pytest.approx(0.2 / (np.sqrt(5) + np.sqrt(1 + 4.84)))
    assert norm_difference(np.zeros(3), np.zeros(3)) == 0.0


def _affine(x, w, b):
    return x @ w + b, (x, w)


def _affine_backward_mean(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout / x.shape[0], dout.sum(0)


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_sampled_parameter_is_diagnosed_on_its_sample(dtype, mode) -> None:
    # w has 12,000 entries: the full check samples 1,000, and the numerical gradient is NaN
    # elsewhere; the diagnosis read the NaN ("no simple pattern, alpha = nan"). The fast
    # check checks 101 entries of a failing parameter and gave no cause at all.
    from gradcheck import check_layer

    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 120)).astype(dtype)
    w = (rng.standard_normal((120, 100)) * 0.05).astype(dtype)
    b = np.zeros(100, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32's accuracy warning
        report = check_layer(_affine, _affine_backward_mean, (x, w, b), mode=mode)
    assert not report.ok and report["w"].extras["checked"] == (1000 if mode == "full" else 101)
    hint = report["w"].hint
    # In full mode the entries keep their place, so the factor is named after the batch size.
    assert ("scaled by 1/N with N = 16" if mode == "full" else "scaled by 0.0625") in hint
    assert "nan" not in hint and "no simple pattern" not in hint
    assert "on 0% of entries" not in hint
