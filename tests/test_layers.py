"""check_layer and check_loss on a CS231n-style layer library, used as it is."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cs231n_layers as L
from gradcheck import (GradientMismatchError, GradientReport, InvalidArgument, assert_layer_close,
                       assert_loss_close, check_layer, check_loss)
from gradcheck.tolerances import Float32Warning

RNG = np.random.default_rng(231)


def normal(*shape):
    return RNG.normal(size=shape)


AFFINE = (normal(4, 3, 2), normal(6, 5), normal(5))
BATCHNORM = (normal(6, 4), normal(4), normal(4), {"mode": "train"})
CONV = (normal(2, 3, 7, 7), normal(4, 3, 3, 3), normal(4), {"stride": 2, "pad": 1})
POOL = (normal(2, 3, 6, 6), {"pool_height": 2, "pool_width": 2, "stride": 2})
LSTM = (normal(3, 4), normal(3, 5), normal(3, 5), normal(4, 20) * 0.5, normal(5, 20) * 0.5, normal(20))
LABELS = np.array([0, 4, 1, 1])

LAYERS = {
    "affine": (L.affine_forward, L.affine_backward, AFFINE, ["x", "w", "b"]),
    "relu": (L.relu_forward, L.relu_backward, (normal(5, 6),), ["x"]),
    "batchnorm": (L.batchnorm_forward, L.batchnorm_backward, BATCHNORM, ["x", "gamma", "beta"]),
    "conv": (L.conv_forward_naive, L.conv_backward_naive, CONV, ["x", "w", "b"]),
    "max_pool": (L.max_pool_forward_naive, L.max_pool_backward_naive, POOL, ["x"]),
    "lstm_step": (L.lstm_step_forward, L.lstm_step_backward, LSTM,
                  ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]),
}


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("layer", LAYERS)
def test_every_correct_layer_passes_with_one_row_per_differentiable_input(layer, mode):
    forward, backward, inputs, names = LAYERS[layer]
    report = check_layer(forward, backward, inputs, mode=mode)
    assert isinstance(report, GradientReport)
    assert report.ok, str(report)
    assert [p.name for p in report.parameters] == names
    assert report.name == backward.__name__ and report.noun == "inputs"


@pytest.mark.parametrize("loss_fn", [L.softmax_loss, L.svm_loss])
def test_losses_pass_and_integer_labels_are_passed_through(loss_fn):
    report = check_loss(loss_fn, normal(4, 5), LABELS)
    assert report.ok, str(report)
    assert [p.name for p in report.parameters] == ["x"]


def test_a_w_x_y_reg_loss_is_checked_with_respect_to_its_first_argument():
    W, X = normal(7, 5) * 0.01, normal(4, 7)
    assert [p.name for p in check_loss(L.svm_loss_naive, W, X, LABELS, 0.1).parameters] == ["W"]

    def missing_reg_factor(W, X, y, reg):
        loss, dW = L.svm_loss_naive(W, X, y, reg)
        return loss, dW - reg * W  # d(reg * W^2) = 2 reg W, written as reg W

    report = check_loss(missing_reg_factor, W, X, LABELS, 0.5, wrt="W")
    assert not report.ok and report["W"].status == "mismatch"
    both = check_loss(lambda W, X, y, reg: (L.svm_loss_naive(W, X, y, reg)[0], {"dW": L.svm_loss_naive(W, X, y, reg)[1],
                                                                              "dX": L.svm_loss(X @ W, y)[1] @ W.T}),
                      W, X, LABELS, 0.1, wrt=("W", "X"))
    assert both.ok and [p.name for p in both.parameters] == ["W", "X"]


BUGS = {
    "affine db not summed over the batch": (
        L.affine_forward, lambda dout, cache: (*L.affine_backward(dout, cache)[:2], dout[0]), AFFINE, "b"),
    "affine dw scaled by 2": (
        L.affine_forward, lambda dout, cache: (lambda g: (g[0], 2 * g[1], g[2]))(L.affine_backward(dout, cache)),
        AFFINE, "w"),
    "batchnorm dx without the mean term": (
        L.batchnorm_forward,
        lambda dout, cache: ((dout * cache[1]) / cache[2], *L.batchnorm_backward(dout, cache)[1:]),
        BATCHNORM, "x"),
    "conv dw sign flipped": (
        L.conv_forward_naive, lambda dout, cache: (lambda g: (g[0], -g[1], g[2]))(L.conv_backward_naive(dout, cache)),
        CONV, "w"),
    "lstm dprev_c forgets the forget gate": (
        L.lstm_step_forward,
        lambda dh, dc, cache: (lambda g: (*g[:2], g[2] / cache[6], *g[3:]))(L.lstm_step_backward(dh, dc, cache)),
        LSTM, "prev_c"),
}


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("bug", BUGS)
def test_a_wrong_gradient_fails_and_names_that_input_only(bug, mode):
    forward, backward, inputs, wrong = BUGS[bug]
    report = check_layer(forward, backward, inputs, mode=mode)
    assert not report.ok
    assert [p.name for p in report.parameters if not p.ok] == [wrong]
    worst = report[wrong]
    assert worst.worst_index is not None and worst.analytic is not None and worst.reference is not None
    assert wrong in str(report) and "MISMATCH" in str(report)


def test_a_scaled_softmax_gradient_is_diagnosed_as_a_factor():
    def mean_forgotten(x, y):
        loss, dx = L.softmax_loss(x, y)
        return loss, dx * x.shape[0]

    report = check_loss(mean_forgotten, normal(4, 5), LABELS)
    assert not report.ok and "dx is scaled by N with N = 4, the batch size" in report["x"].hint


def test_a_transposed_dw_is_a_shape_finding():
    backward = lambda dout, cache: (lambda g: (g[0], g[1].T, g[2]))(L.affine_backward(dout, cache))  # noqa: E731
    report = check_layer(L.affine_forward, backward, AFFINE)
    assert report["w"].status == "wrong_shape" and "transpose" in report["w"].message


# -- kinks --------------------------------------------------------------------------------------


def test_relu_at_exact_zeros_is_a_kink_and_passes():
    x = normal(4, 5)
    x[0, :3] = 0.0  # relu(0): every value in [0, dout] is a valid subgradient
    x[1, 1] = 1e-9  # and one input 1e-9 from the kink
    report = check_layer(L.relu_forward, L.relu_backward, (x,))
    assert report.ok, str(report)
    assert report["x"].status == "kink" and report["x"].kinks >= 3


def test_relu_backward_times_3_fails_even_where_the_loss_has_kinks():
    x = normal(4, 5)
    x[0, :3] = 0.0
    report = check_layer(L.relu_forward, lambda dout, cache: 3 * L.relu_backward(dout, cache), (x,))
    assert not report.ok and report["x"].mismatched >= 10


def test_max_pool_with_ties_passes_as_kinks():
    x = normal(1, 2, 4, 4)
    x[0, 0, :2, :2] = 1.5  # a window whose four entries tie for the maximum
    backward = lambda dout, cache: L.max_pool_backward_naive(dout, cache) / np.maximum(  # noqa: E731
        1, L.max_pool_backward_naive(np.ones_like(dout), cache))  # split the gradient over ties
    report = check_layer(L.max_pool_forward_naive, backward, (x, POOL[1]))
    assert report.ok, str(report)
    assert report["x"].kinks >= 1


# -- false passes of issue 12 ---------------------------------------------------------------------


def test_an_affine_backward_times_3_that_mutates_x_in_place_fails():
    def backward(dout, cache):
        x, w, _ = cache
        dx, dw, db = L.affine_backward(dout, cache)
        x *= 3  # in place: the layer below would now see a changed input
        return 3 * dx, 3 * dw, 3 * db

    x, w, b = (a.copy() for a in AFFINE)
    report = check_layer(L.affine_forward, backward, (x, w, b))
    assert not report.ok
    assert {p.name for p in report.parameters if not p.ok} == {"x", "w", "b"}
    assert "modified inputs['x'] in place" in str(report)
    assert np.array_equal(x, AFFINE[0])  # the caller's arrays are untouched


def test_an_lstm_step_with_dwx_times_3_and_state_kept_between_calls_fails():
    state = {"c": LSTM[2].copy()}

    def stateful_forward(x, prev_h, Wx, Wh, b):
        next_h, next_c, cache = L.lstm_step_forward(x, prev_h, state["c"], Wx, Wh, b)
        state["c"] = next_c  # the cell state carried to the next call
        return next_h, cache

    def backward(dnext_h, cache):
        dx, dh, _, dWx, dWh, db = L.lstm_step_backward(dnext_h, np.zeros_like(dnext_h), cache)
        return dx, dh, 3 * dWx, dWh, db

    x, h0, _, Wx, Wh, b = LSTM
    for mode in ("full", "fast"):
        report = check_layer(stateful_forward, backward, (x, h0, Wx, Wh, b), mode=mode)
        assert not report.ok
        assert any("not reproducible" in problem for problem in report.problems)
        assert sum(p.kinks for p in report.parameters) == 0


def test_a_backward_that_modifies_dout_in_place_fails():
    def backward(dout, cache):
        dout *= cache > 0  # the right gradient, written over the layer above's dout
        return dout

    report = check_layer(L.relu_forward, backward, (normal(3, 4),))
    assert not report.ok and "modified dout in place" in str(report)


def test_unseeded_dropout_is_not_reproducible():
    rng = np.random.default_rng(5)

    def dropout_forward(x):
        mask = rng.random(x.shape) < 0.5
        return x * mask, mask

    report = check_layer(dropout_forward, lambda dout, mask: dout * mask, (normal(4, 4),))
    assert not report.ok and "seed any randomness" in str(report)


def test_bn_param_and_other_pass_through_values_are_never_modified():
    bn_param = {"mode": "train"}
    x = BATCHNORM[0].copy()
    assert check_layer(L.batchnorm_forward, L.batchnorm_backward, (x, BATCHNORM[1], BATCHNORM[2], bn_param)).ok
    assert bn_param == {"mode": "train"} and np.array_equal(x, BATCHNORM[0])


# -- conventions: dicts, several outputs, dout -----------------------------------------------


def test_keyword_inputs_and_gradients_returned_as_a_dict():
    x, w, b = AFFINE

    def backward(dout, cache):
        dx, dw, db = L.affine_backward(dout, cache)
        return {"dx": dx, "dw": dw, "db": db}

    report = check_layer(L.affine_forward, backward, {"b": b, "w": w, "x": x})
    assert report.ok and [p.name for p in report.parameters] == ["b", "w", "x"]


def test_wrt_restricts_the_check_and_backward_may_return_all_gradients():
    report = check_layer(L.affine_forward, L.affine_backward, AFFINE, wrt="dw")
    assert report.ok and [p.name for p in report.parameters] == ["w"]
    report = check_layer(L.affine_forward, L.affine_backward, AFFINE, wrt=(2, 0))
    assert report.ok and [p.name for p in report.parameters] == ["x", "b"]  # in input order


def test_a_given_dout_is_used_and_its_shape_checked_against_out():
    dout = normal(4, 5)
    seen = []

    def backward(d, cache):
        seen.append(d.copy())
        return L.affine_backward(d, cache)

    assert check_layer(L.affine_forward, backward, AFFINE, dout).ok
    assert np.array_equal(seen[0], dout)
    report = check_layer(L.affine_forward, L.affine_backward, AFFINE, normal(5, 4))
    assert not report.ok and "shape (4, 5), but dout has shape (5, 4)" in str(report)


def test_several_outputs_take_one_dout_each():
    douts = (normal(3, 5), normal(3, 5))
    assert check_layer(L.lstm_step_forward, L.lstm_step_backward, LSTM, douts).ok
    report = check_layer(L.lstm_step_forward, L.lstm_step_backward, LSTM, douts[:1])
    assert not report.ok and "2 output(s) before its cache, but 1 dout" in str(report)


def test_the_random_dout_is_seeded():
    first = check_layer(L.affine_forward, L.affine_backward, AFFINE, seed=3)
    again = check_layer(L.affine_forward, L.affine_backward, AFFINE, seed=3)
    other = check_layer(L.affine_forward, L.affine_backward, AFFINE, seed=4)
    assert first.loss == again.loss != other.loss
    assert "drawn from seed 3" in str(first)


@pytest.mark.parametrize(
    "forward, backward, finding",
    [
        (lambda x, w, b: L.affine_forward(x, w, b)[0], L.affine_backward, "not (out, cache)"),
        (L.affine_forward, lambda dout, cache: L.affine_backward(dout, cache)[:2],
         "returned 2 gradient(s); expected 3 (dx, dw, db)"),
        (L.affine_forward, lambda dout, cache: None, "returned None; expected the gradients"),
        (lambda x, w, b: (np.full((4, 5), np.nan), None), L.affine_backward, "non-finite"),
        (lambda x, w, b: ("out", None), L.affine_backward, "not a float array"),
        (L.affine_forward, lambda dout, cache: 1 / 0, "ZeroDivisionError"),
        (lambda x, w, b: 1 / 0, L.affine_backward, "raised ZeroDivisionError"),
    ],
)
def test_a_broken_layer_is_a_finding_not_a_crash(forward, backward, finding):
    report = check_layer(forward, backward, AFFINE)
    assert not report.ok
    assert finding in str(report)


def test_a_loss_that_returns_no_gradient_is_a_finding():
    report = check_loss(lambda x, y: L.softmax_loss(x, y)[0], normal(4, 5), LABELS)
    assert not report.ok and "not (loss, grad)" in str(report)


@pytest.mark.parametrize(
    "inputs, options, message",
    [
        (AFFINE, dict(wrt="z"), "not one of the inputs"),
        (AFFINE, dict(wrt=7), "not one of the inputs"),
        ((np.arange(3), np.ones((3, 2)), np.ones(2)), dict(wrt="x"), "dtype int"),
        ((np.arange(3),), {}, "nothing to differentiate"),
        ("x", {}, "a tuple of forward's arguments"),
        (AFFINE, dict(mode="sideways"), "mode"),
        (AFFINE, dict(max_entries="most"), "max_entries"),
    ],
)
def test_misuse_says_how_to_fix_the_call(inputs, options, message):
    with pytest.raises(InvalidArgument, match=message):
        check_layer(L.affine_forward, L.affine_backward, inputs, **options)


def test_a_bad_dout_is_misuse():
    with pytest.raises(InvalidArgument, match="dout must be a float array"):
        check_layer(L.affine_forward, L.affine_backward, AFFINE, "dout")


def test_float32_layers_get_float32_tolerances_and_a_warning():
    as32 = tuple(a.astype(np.float32) for a in AFFINE)
    with pytest.warns(Float32Warning):
        report = check_layer(L.affine_forward, L.affine_backward, as32)
    assert report.ok, str(report)
    assert report.dtype == "float32"
    assert report.tolerance.rtol == pytest.approx(2e-3)


def test_assert_variants_raise_an_assertion_error_with_the_table():
    with pytest.raises(GradientMismatchError) as info:
        assert_layer_close(*BUGS["affine dw scaled by 2"][:3])
    assert isinstance(info.value, AssertionError) and "MISMATCH" in str(info.value)
    assert assert_loss_close(L.softmax_loss, normal(4, 5), LABELS).ok


def test_fast_mode_on_a_conv_layer_costs_a_few_calls():
    calls = []

    def forward(*args):
        calls.append(1)
        return L.conv_forward_naive(*args)

    report = check_layer(forward, L.conv_backward_naive, CONV, mode="fast")
    assert report.ok and len(calls) == report.evaluations == 3 + 2 * 4 * 3


# -- properties -----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**31))
def test_a_correct_affine_layer_passes_and_a_scaled_dw_fails_at_any_shape(n, d1, d2, m, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(n, d1, d2)), rng.normal(size=(d1 * d2, m)), rng.normal(size=m)
    assert check_layer(L.affine_forward, L.affine_backward, (x, w, b), seed=seed).ok

    def scaled(dout, cache):
        dx, dw, db = L.affine_backward(dout, cache)
        return dx, 1.5 * dw, db

    report = check_layer(L.affine_forward, scaled, (x, w, b), seed=seed)
    assert [p.name for p in report.parameters if not p.ok] == ["w"]


def test_an_integer_output_gets_a_float_dout():
    seen = []

    def backward(dout, cache):
        seen.append(dout.dtype)
        return np.zeros_like(cache)

    report = check_layer(lambda x: (np.zeros(x.shape, dtype=int), x), backward, (normal(3),))
    assert seen == [np.float64] and report.ok  # a constant output: gradient 0


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.integers(0, 2**31))
def test_softmax_loss_passes_and_a_wrong_sign_fails_at_any_shape(n, classes, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, classes)), rng.integers(0, classes, size=n)
    assert check_loss(L.softmax_loss, x, y).ok
    flipped = check_loss(lambda x, y: (L.softmax_loss(x, y)[0], -L.softmax_loss(x, y)[1]), x, y)
    assert not flipped.ok and flipped["x"].status == "mismatch"


def _affine_dw_averaged(dout, cache):
    dx, dw, db = L.affine_backward(dout, cache)
    return dx, dw / dout.shape[0], db


def _batchnorm_without_the_mean_term(dout, cache):
    # The batch mean's own term added back: the student dropped "- dxhat.sum(axis=0)".
    dx, dgamma, dbeta = L.batchnorm_backward(dout, cache)
    x, gamma = BATCHNORM[0], BATCHNORM[1]
    inv_std = 1.0 / np.sqrt(x.var(axis=0) + 1e-5)
    return dx + inv_std * (dout * gamma).sum(axis=0) / x.shape[0], dgamma, dbeta


API_BUGS = {
    "affine dw / N": (L.affine_forward, _affine_dw_averaged, AFFINE, "w",
                      "dw is scaled by 1/N with N = 4, the batch size"),
    # Its own generator: drawing from RNG here would change every later test's inputs.
    "relu not gated": (L.relu_forward, lambda dout, cache: dout,
                       (np.random.default_rng(5).normal(size=(5, 6)),), "x",
                       "dx = dout * (x > 0)"),
    "batchnorm mean term": (L.batchnorm_forward, _batchnorm_without_the_mean_term, BATCHNORM, "x",
                            "the term of dx that comes through the batch mean is missing or wrong"),
}


@pytest.mark.parametrize("bug", API_BUGS)
def test_the_api_names_a_layer_s_bug_as_the_grader_does(bug):
    # The batch size and the inputs reach the diagnosis through check_layer too (it said
    # "scaled by 0.25" and "no simple pattern" for these).
    forward, backward, inputs, name, cause = API_BUGS[bug]
    report = check_layer(forward, backward, inputs)
    assert not report.ok
    assert cause in report[name].hint

