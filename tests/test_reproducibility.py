"""False passes of issue 12: a loss that is not reproducible between calls never passes.

Before the fix, a loss that moved between calls made every entry look like a kink (the
one-sided quotients measured the drift), and the kink bracket accepted any value: an LSTM
backward with dWx times 3 passed with ok=True.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck import check_gradients, networks
from gradcheck.kinks import bracket

RNG = np.random.default_rng(12)
N, D, H = 3, 4, 5


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """CS231n's LSTM step: gates i, f, o, g from one affine map of x and prev_h."""
    a = x @ Wx + prev_h @ Wh + b
    i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, cache, *, wx_factor=1.0):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_h * o * (1 - tc**2)
    da = np.hstack([dc * g * i * (1 - i), dc * prev_c * f * (1 - f), dnext_h * tc * o * (1 - o),
                    dc * i * (1 - g**2)])
    return {"x": da @ Wx.T, "prev_h": da @ Wh.T, "Wx": wx_factor * (x.T @ da), "Wh": prev_h.T @ da,
            "b": da.sum(axis=0)}


LSTM_PARAMS = {"Wx": RNG.normal(size=(D, 4 * H)) * 0.3, "Wh": RNG.normal(size=(H, 4 * H)) * 0.3,
               "b": RNG.normal(size=4 * H) * 0.1}
LSTM_X, LSTM_H0, LSTM_C0 = RNG.normal(size=(N, D)), RNG.normal(size=(N, H)), RNG.normal(size=(N, H))
LSTM_DOUT = RNG.normal(size=(N, H))


def stateful_lstm(wx_factor: float):
    """A stateful LSTM cell: each call starts from the cell state the previous call left."""
    state = {"c": LSTM_C0.copy()}

    def fprop(x, y, params):
        next_h, cache = lstm_step_forward(x, LSTM_H0, state["c"], params["Wx"], params["Wh"], params["b"])
        state["c"] = cache[-1]  # kept between calls, as a stateful RNN does
        return {"loss": float(np.sum(next_h * y)), "cache": cache, "dout": y}

    def bprop(cache):
        grads = lstm_step_backward(cache["dout"], cache["cache"], wx_factor=wx_factor)
        return {key: grads[key] for key in ("Wx", "Wh", "b")}

    return fprop, bprop


def test_an_lstm_backward_with_dwx_times_3_and_state_kept_between_calls_fails():
    fprop, bprop = stateful_lstm(wx_factor=3.0)
    report = check_gradients(fprop, bprop, LSTM_X, LSTM_DOUT, LSTM_PARAMS)
    assert not report.ok
    assert report["Wx"].status == "mismatch" and report["Wx"].kinks == 0
    assert any("not reproducible" in problem for problem in report.problems)
    assert "not reproducible" in str(report) and "state is kept between calls" in str(report)


def test_the_same_stateful_lstm_fails_in_fast_mode_too():
    fprop, bprop = stateful_lstm(wx_factor=1.0)  # even with right gradients: the loss moves
    report = check_gradients(fprop, bprop, LSTM_X, LSTM_DOUT, LSTM_PARAMS, mode="fast")
    assert not report.ok and any("not reproducible" in problem for problem in report.problems)


def test_a_correct_lstm_step_passes():
    def fprop(x, y, params):
        next_h, cache = lstm_step_forward(x, LSTM_H0, LSTM_C0, params["Wx"], params["Wh"], params["b"])
        return {"loss": float(np.sum(next_h * y)), "cache": cache, "dout": y}

    def bprop(cache):
        grads = lstm_step_backward(cache["dout"], cache["cache"])
        return {key: grads[key] for key in ("Wx", "Wh", "b")}

    report = check_gradients(fprop, bprop, LSTM_X, LSTM_DOUT, LSTM_PARAMS)
    assert report.ok and not report.problems, str(report)
    assert check_gradients(fprop, bprop, LSTM_X, LSTM_DOUT, LSTM_PARAMS, mode="fast").ok


def affine_times_3_mutating_x():
    """An affine layer whose backward is 3x too large and scales its input x in place."""
    dout = RNG.normal(size=(4, 3))

    def fprop(x, y, params):
        out = params["x"] @ params["w"] + params["b"]
        return {"loss": float(np.sum(out * dout)), "x": params["x"], "w": params["w"]}

    def bprop(cache):
        dx = 3 * dout @ cache["w"].T
        cache["x"] *= 3  # mutates its input, which the cache shares with the caller
        return {"x": dx, "w": cache["x"].T @ dout, "b": 3 * dout.sum(axis=0)}

    params = {"x": RNG.normal(size=(4, 5)), "w": RNG.normal(size=(5, 3)), "b": RNG.normal(size=3)}
    return fprop, bprop, params


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_an_affine_backward_times_3_that_mutates_x_in_place_fails(mode):
    fprop, bprop, params = affine_times_3_mutating_x()
    before = {key: value.copy() for key, value in params.items()}
    report = check_gradients(fprop, bprop, np.zeros(1), np.zeros(1), params, mode=mode)
    assert not report.ok
    assert {p.name for p in report.parameters if not p.ok} == {"x", "w", "b"}
    assert sum(p.kinks for p in report.parameters) == 0
    assert "modified params['x'] in place" in str(report)
    assert all(np.array_equal(before[key], params[key]) for key in params)  # the caller's arrays


def test_an_fprop_that_drifts_during_the_numerical_gradient_fails():
    net = networks.get("three_input")
    sol = net.solution()
    example = net.random_example(np.random.default_rng(0), m=3)
    calls = []

    def fprop(x, y, params):  # reproducible for the first two calls only
        calls.append(1)
        if len(calls) > 2:
            params["W2"] *= 1.0 + 1e-9
        return sol.fprop(x, y, params)

    report = check_gradients(fprop, sol.bprop, example.x, example.y, example.params)
    assert not report.ok
    assert any("after the numerical gradient" in problem for problem in report.problems)


# -- the kink bracket --------------------------------------------------------------------------


def _quotients(loss, p, h):
    eye = np.eye(p["z"].size)
    plus = np.array([loss({"z": p["z"] + h * e}) for e in eye])
    minus = np.array([loss({"z": p["z"] - h * e}) for e in eye])
    return plus, minus, loss(p)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=1, max_size=6), st.floats(-1.8e-7, 1.8e-7), st.integers(0, 5))
def test_a_relu_within_a_fifth_of_the_step_of_its_kink_is_a_kink_wherever_it_sits(values, offset, which):
    h = 1e-6
    z = np.array(values, dtype=float)
    z[np.abs(z) < 1e-3] = 1.0  # only the chosen entry is near the kink
    z[which % z.size] = offset
    weights = np.linspace(1.0, 2.0, z.size)

    def loss(p):
        return float(np.sum(weights * np.maximum(p["z"], 0.0)))

    plus, minus, center = _quotients(loss, {"z": z}, h)
    kinks = bracket(loss, {"z": z.copy()}, "z", plus, minus, center, h).kink
    assert kinks.tolist() == [i == which % z.size for i in range(z.size)]


@pytest.mark.parametrize("size", [1e-9, 1e-7, 1e-5])
@pytest.mark.parametrize("seed", range(5))
def test_a_loss_that_moves_between_calls_has_no_kinks(seed, size):
    h, drift = 1e-6, iter(np.random.default_rng(seed).normal(size=1000) * size)

    def loss(p):  # smooth, plus a drift of each call (unseeded randomness, state)
        return float(np.sum(p["z"] ** 2)) + next(drift)

    p = {"z": np.linspace(-1.0, 1.0, 20)}
    plus, minus, center = _quotients(loss, p, h)
    assert not bracket(loss, p, "z", plus, minus, center, h).kink.any()


def test_a_kink_off_the_point_accepts_only_the_smooth_sides_slope():
    h = 1e-6

    def loss(p):  # slope 1 below 1e-7 above the point, slope 4 beyond: the point is on slope 1
        return float(np.sum(np.where(p["z"] < 1e-7, p["z"], 1e-7 + 4 * (p["z"] - 1e-7))))

    p = {"z": np.zeros(1)}
    plus, minus, center = _quotients(loss, p, h)
    found = bracket(loss, p, "z", plus, minus, center, h)
    assert found.kink[0] and found.left[0] == pytest.approx(1.0, abs=1e-6)
    assert found.right[0] == pytest.approx(1.0, abs=1e-6)  # not the slope 4 beyond the kink
    raw = bracket(loss, p, "z", plus, minus, center, h, capped=False)
    assert raw.right[0] > 3.0  # the raw one-sided quotient straddles the kink


def test_a_jump_in_the_loss_is_not_a_kink():
    h = 1e-6

    def loss(p):  # a step of height 1 just above the point: no slope accepts it
        return float(np.sum(p["z"] + (p["z"] > 1e-8)))

    p = {"z": np.zeros(1)}
    plus, minus, center = _quotients(loss, p, h)
    assert not bracket(loss, p, "z", plus, minus, center, h).kink.any()
