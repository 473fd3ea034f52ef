"""numerical_gradient: agrees with known gradients, costs exactly 2P calls, restores params."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradcheck
from gradcheck import InvalidArgument, numerical_gradient

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
param_dicts = st.dictionaries(
    st.sampled_from(["W1", "b1", "W2", "b2", "V"]), shapes, min_size=1, max_size=4
).flatmap(lambda spec: st.integers(0, 2**32 - 1).map(
    lambda seed: {k: np.random.default_rng([seed, i]).uniform(-1, 1, s) for i, (k, s) in enumerate(spec.items())}))


def smooth_loss(params):
    """sum(sin(p) + p**3 / 3) over all arrays: its gradient is cos(p) + p**2."""
    return float(sum(np.sum(np.sin(p) + p**3 / 3) for p in params.values()))


def smooth_gradient(params):
    return {k: np.cos(p) + p**2 for k, p in params.items()}


@given(param_dicts)
def test_central_agrees_with_the_known_gradient(params):
    numerical = numerical_gradient(smooth_loss, params)
    for key, expected in smooth_gradient(params).items():
        np.testing.assert_allclose(numerical[key], expected, rtol=1e-7, atol=1e-8)


@given(param_dicts)
def test_central_calls_the_loss_exactly_2p_times_and_restores_params_bit_for_bit(params):
    before = {k: v.copy() for k, v in params.items()}
    calls = []
    numerical_gradient(lambda p: calls.append(1) or smooth_loss(p), params)
    assert len(calls) == 2 * sum(v.size for v in params.values())
    for key in params:
        assert params[key].tobytes() == before[key].tobytes()


@given(param_dicts, st.integers(0, 50))
def test_params_are_restored_when_the_loss_raises(params, fail_at):
    before = {k: v.copy() for k, v in params.items()}
    calls = []

    def loss(p):
        calls.append(1)
        if len(calls) > fail_at:
            raise RuntimeError("boom")
        return smooth_loss(p)

    try:
        numerical_gradient(loss, params)
    except RuntimeError:
        pass
    for key in params:
        assert params[key].tobytes() == before[key].tobytes()


@given(param_dicts)
def test_complex_step_is_exact_to_rounding_with_one_call_per_entry(params):
    calls = []

    def loss(p):
        calls.append(1)
        return sum(np.sum(np.sin(v) + v**3 / 3) for v in p.values())

    numerical = numerical_gradient(loss, params, method="complex")
    assert len(calls) == sum(v.size for v in params.values())
    for key, expected in smooth_gradient(params).items():
        np.testing.assert_allclose(numerical[key], expected, rtol=1e-14, atol=1e-15)


def test_richardson_beats_central_where_the_third_derivative_is_large():
    params = {"w": np.array([1.3, -0.7, 2.1])}
    loss = lambda p: float(np.sum(np.exp(4 * p["w"])))  # noqa: E731
    exact = 4 * np.exp(4 * params["w"])
    central = numerical_gradient(loss, params, eps=1e-3)
    richardson = numerical_gradient(loss, params, eps=1e-3, method="richardson")
    central_error = np.max(np.abs(central["w"] - exact) / exact)
    richardson_error = np.max(np.abs(richardson["w"] - exact) / exact)
    assert richardson_error < central_error / 1000


def test_forward_and_backward_differences_are_first_order():
    params = {"w": np.array([0.4, -1.2])}
    exact = smooth_gradient(params)["w"]
    for method in ("forward", "backward"):
        g = numerical_gradient(smooth_loss, params, eps=1e-6, method=method)["w"]
        np.testing.assert_allclose(g, exact, rtol=1e-5)


def test_complex_step_rejects_a_loss_that_drops_the_imaginary_part():
    with pytest.raises(InvalidArgument, match="complex"):
        numerical_gradient(lambda p: float(np.sum(np.real(p["w"]) ** 2)),
                           {"w": np.ones(2)}, method="complex")


def test_sampled_entries_are_the_only_ones_computed():
    params = {"w": np.arange(6.0).reshape(2, 3)}
    g = numerical_gradient(smooth_loss, params, entries={"w": [1, 5]})
    assert np.isnan(g["w"]).sum() == 4
    np.testing.assert_allclose(g["w"].reshape(-1)[[1, 5]], smooth_gradient(params)["w"].reshape(-1)[[1, 5]], rtol=1e-7)


def test_directional_derivative_is_the_projection_of_the_gradient():
    rng = np.random.default_rng(0)
    params = {"a": rng.normal(size=(3, 4)), "b": rng.normal(size=(4, 1))}
    direction = {k: rng.normal(size=v.shape) for k, v in params.items()}
    before = {k: v.copy() for k, v in params.items()}
    expected = sum(np.sum(g * direction[k]) for k, g in smooth_gradient(params).items())
    assert gradcheck.directional_derivative(smooth_loss, params, direction) == pytest.approx(expected, rel=1e-7)
    assert all(params[k].tobytes() == before[k].tobytes() for k in params)


@pytest.mark.parametrize(
    "params, message",
    [
        ([np.ones(2)], "dict"),
        ({"w": [1.0, 2.0]}, "numpy array"),
        ({"w": np.array([1, 2])}, "floating-point"),
        ({"w": np.ones(2)}, "method"),
    ],
)
def test_misuse_gets_a_message_that_says_how_to_fix_the_call(params, message):
    method = "sideways" if message == "method" else "central"
    with pytest.raises(InvalidArgument, match=message):
        numerical_gradient(smooth_loss, params, method=method)


def test_a_loss_that_is_not_a_scalar_is_refused_with_the_fix():
    with pytest.raises(InvalidArgument, match="sum"):
        numerical_gradient(lambda p: p["w"] * 2, {"w": np.ones(3)})
