"""The fast check: detection, no false alarms, the sparse-bug hole, exact costs, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradcheck
from gradcheck import InvalidArgument, networks, strategies
from gradcheck.fast import DEFAULT_PROBES, direction, fast_check

MLP = networks.get("mlp")
SOLUTION = MLP.solution()
# A square hidden layer (W2: 20 x 20) so that a transposed gradient keeps its shape.
WIDTHS = (30, 20, 20, 1)
PARAMS = ("W1", "b1", "W2", "b2", "W3", "b3")


def mlp_example(seed: int = 0, widths: tuple[int, ...] = WIDTHS, m: int = 5):
    return MLP.random_example(np.random.default_rng(seed), m, widths=widths,
                              activations=("tanh",) * (len(widths) - 2) + ("sigmoid",))


class Counting:
    """fprop that counts its calls (the deterministic cost of a check)."""

    def __init__(self, fprop):
        self.fprop, self.calls = fprop, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fprop(*args, **kwargs)


def buggy(bug: str, key: str):
    """bprop of the solution with one parameter's gradient wrong in the way ``bug`` says."""

    def bprop(cache):
        grads = dict(SOLUTION.bprop(cache))
        g = np.array(grads[key], dtype=float)
        if bug == "sign":
            g = -g
        elif bug == "scale":
            g = g / 5.0  # e.g. a mean where the loss is a sum over a batch of 5
        elif bug == "half":
            g = 0.5 * g
        elif bug == "transposed":
            g = g.T if g.shape[0] == g.shape[1] else np.flip(g).copy()  # entries swapped
        elif bug == "sparse":
            flat = g.reshape(-1)
            for index in (0, flat.size // 2, flat.size - 1)[: max(1, min(3, flat.size))]:
                flat[index] = -flat[index] + 0.1 * np.sign(flat[index] or 1.0)
        elif bug == "zero_row":
            g[0] = 0.0 if abs(g[0]).max() > 0 else 1.0
        grads[key] = g
        return grads

    return bprop


def check(bprop, example, **options):
    return gradcheck.check_gradients(SOLUTION.fprop, bprop, example.x, example.y, example.params,
                                     fprop_kwargs=example.options, mode="fast", **options)


# -- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize("bug", ["sign", "scale", "half", "transposed", "sparse", "zero_row"])
@pytest.mark.parametrize("key", PARAMS)
def test_every_single_parameter_bug_is_flagged_and_named(bug, key):
    if bug == "transposed" and key == "b3":
        pytest.skip("a 1 x 1 gradient has no transpose")
    example = mlp_example(seed=1)
    report = check(buggy(bug, key), example)
    assert not report.ok
    failing = [p.name for p in report.parameters if not p.ok]
    assert failing == [key], str(report)
    wrong = report[key]
    assert wrong.status == "mismatch" and wrong.mismatched >= 1
    assert key in str(report) and wrong.worst_index is not None
    # The worst index holds a genuinely wrong entry, with both values, as in the full check.
    full = gradcheck.check_gradients(SOLUTION.fprop, buggy(bug, key), example.x, example.y,
                                     example.params, fprop_kwargs=example.options)
    assert not full[key].ok and wrong.analytic != pytest.approx(wrong.reference, rel=1e-5)


def test_a_sparse_bug_in_a_large_matrix_is_found_by_bisection():
    # 120,000 entries, 3 of them wrong by 0.1: the sample alone would miss them.
    example = MLP.random_example(np.random.default_rng(3), 4, widths=(400, 300, 1))
    wrong = [(7, 11), (150, 200), (299, 399)]

    def bprop(cache):
        grads = SOLUTION.bprop(cache)
        grads["W1"] = grads["W1"].copy()
        for index in wrong:
            grads["W1"][index] += 0.1
        return grads

    report = gradcheck.check_gradients(SOLUTION.fprop, bprop, example.x, example.y, example.params,
                                       fprop_kwargs=example.options, mode="fast")
    assert [p.name for p in report.parameters if not p.ok] == ["W1"]
    assert report["W1"].worst_index in wrong
    assert report["W1"].message.startswith("W1: ")


def test_the_sparse_bug_passes_a_check_with_non_negative_directions_and_sum_scaled_tolerance():
    # Why the directions are signed and tau ignores sum(u): the hole of PyTorch's first fast
    # mode (PR #59615, issue #57166). Same bug, same exact loss, that scheme passes it.
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, size=(300, 400))
    g_true = p  # loss 0.5 * sum(p**2)
    g_wrong = p.copy()
    g_wrong[[7, 150, 299], [11, 200, 399]] += 0.1
    u = rng.uniform(0, 1, size=p.shape)  # non-negative
    atol, rtol = 1e-5, 1e-3  # torch's gradcheck defaults
    tolerance = atol * u.sum() + rtol * abs(float(np.sum(u * g_true)))
    assert abs(float(np.sum(u * (g_wrong - g_true)))) <= tolerance  # the hole: it passes

    def fprop(x, y, params):
        return {"loss": 0.5 * np.sum(params["p"] ** 2)}

    report = fast_check(fprop, lambda cache: {"p": g_wrong}, np.zeros(1), np.zeros(1), {"p": p})
    assert not report.ok and report["p"].worst_index in [(7, 11), (150, 200), (299, 399)]


def test_a_million_parameters_cost_at_most_50_loss_calls_and_a_bug_is_still_flagged():
    example = MLP.random_example(np.random.default_rng(0), 4, widths=(999, 999, 1),
                                 activations=("sigmoid", "sigmoid"))
    assert sum(v.size for v in example.params.values()) == 1_000_000
    fprop = Counting(SOLUTION.fprop)
    report = gradcheck.check_gradients(fprop, SOLUTION.bprop, example.x, example.y, example.params,
                                       fprop_kwargs=example.options, mode="fast")
    assert report.ok and fprop.calls == report.evaluations <= 50
    bad = gradcheck.check_gradients(SOLUTION.fprop, buggy("sparse", "W1"), example.x, example.y,
                                    example.params, fprop_kwargs=example.options, mode="fast")
    assert [p.name for p in bad.parameters if not p.ok] == ["W1"]


# -- no false alarms ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(networks.NAMES).flatmap(lambda name: st.tuples(st.just(name), strategies.examples(name))),
       st.integers(0, 2**32 - 1))
def test_correct_gradients_pass_the_fast_check_at_any_shape_and_seed(drawn, seed):
    name, example = drawn
    solution = networks.get(name).solution()
    report = gradcheck.check_gradients(solution.fprop, solution.bprop, example.x, example.y,
                                       example.params, fprop_kwargs=example.options, mode="fast",
                                       seed=seed)
    assert report.ok, str(report)


def test_correct_gradients_pass_over_many_seeds_on_a_larger_network():
    example = mlp_example(seed=4, widths=(60, 50, 40, 3))
    assert all(check(SOLUTION.bprop, example, seed=seed).ok for seed in range(30))


# -- the detection guarantee, statistically (fixed seeds: deterministic) --------------------


def _quadratic(x, y, params):
    return {"loss": 0.5 * np.sum(params["w"] ** 2)}  # gradient = w = 0: d is exactly 0


def _pass_count(error: np.ndarray, ratio: float, probes: int, seeds: int) -> int:
    """How many seeds let ``error`` pass, with tau = ratio * max|error| exactly."""
    rtol = ratio * np.abs(error).max() / np.linalg.norm(error)
    params = {"w": np.zeros(error.size)}
    return sum(
        fast_check(_quadratic, lambda cache: {"w": error}, np.zeros(1), np.zeros(1), params,
                   probes=probes, seed=seed, rtol=rtol, atol=0.0).ok
        for seed in range(seeds)
    )


@pytest.mark.parametrize("probes", [1, 2])
def test_a_wrong_pair_passes_as_often_as_the_guarantee_allows(probes):
    # e = (d, -d, 0, ...): a probe passes iff |u1 - u2| <= tau/d = t, which needs equal signs
    # and |r1 - r2| <= t: probability (1 - (1 - t)**2) / 2 per probe, under the bound t.
    t, seeds = 0.5, 600
    exact = ((1 - (1 - t) ** 2) / 2) ** probes
    error = np.zeros(10)
    error[[2, 7]] = [1.0, -1.0]
    passed = _pass_count(error, t, probes, seeds)
    sd = np.sqrt(seeds * exact * (1 - exact))
    assert abs(passed - seeds * exact) <= 4 * sd
    assert passed <= seeds * t**probes  # the documented bound (tau / e_max) ** k


def test_an_error_in_one_entry_larger_than_2_tau_never_passes():
    error = np.zeros(50)
    error[17] = 3.0
    assert _pass_count(error, 0.45, 1, 300) == 0


def test_dense_small_errors_pass_less_often_with_more_probes():
    error = np.random.default_rng(5).normal(size=200)
    counts = [_pass_count(error, 0.4, k, 200) for k in (1, 2, 4)]
    assert counts[0] > counts[1] > counts[2] and counts[0] <= 0.4 * 200


# -- exact costs, state, restoration -----------------------------------------------------------


def test_a_correct_check_costs_one_plus_two_calls_per_probe_per_parameter():
    example = mlp_example(seed=2, widths=(40, 30, 1))  # W1 30x40, b1 30x1, W2 1x30, b2 1x1
    fprop = Counting(SOLUTION.fprop)
    report = gradcheck.check_gradients(fprop, SOLUTION.bprop, example.x, example.y, example.params,
                                       fprop_kwargs=example.options, mode="fast")
    # b2 has one entry (<= probes): checked entry by entry for 2 calls; 2 more calls at the
    # starting point check that the loss is reproducible.
    assert fprop.calls == report.evaluations == 3 + 3 * 2 * DEFAULT_PROBES + 2
    for probes in (1, 3, 6):
        fprop.calls = 0
        fast_check(fprop, SOLUTION.bprop, example.x, example.y, example.params,
                   fprop_kwargs=example.options, probes=probes)
        assert fprop.calls == 3 + 3 * 2 * probes + 2


def test_the_same_seed_gives_the_same_report_and_numpy_global_state_is_untouched():
    example = mlp_example(seed=6)
    state = np.random.get_state()[1].copy()
    first = check(buggy("sparse", "W2"), example, seed=11)
    second = check(buggy("sparse", "W2"), example, seed=11)
    assert np.array_equal(np.random.get_state()[1], state)
    assert str(first) == str(second)


def test_the_callers_params_are_untouched_even_when_fprop_raises_mid_check():
    example = mlp_example(seed=7)
    before = {k: v.tobytes() for k, v in example.params.items()}
    calls = []

    def flaky(x, y, params, **options):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("boom")
        return SOLUTION.fprop(x, y, params, **options)

    report = gradcheck.check_gradients(flaky, SOLUTION.bprop, example.x, example.y, example.params,
                                       fprop_kwargs=example.options, mode="fast")
    assert not report.ok and "boom" in str(report)
    assert all(example.params[k].tobytes() == before[k] for k in before)


def test_directions_are_signed_bounded_and_regenerated_slice_by_slice():
    u = direction(3, 1, 2, 200_000)
    assert np.all((np.abs(u) >= 0.5) & (np.abs(u) < 1.5))
    assert 0.45 < np.mean(u > 0) < 0.55  # signed, never non-negative
    assert np.array_equal(u[65_000:140_000], direction(3, 1, 2, 200_000, 65_000, 140_000))
    assert not np.array_equal(u[:100], direction(3, 1, 3, 200_000)[:100])


# -- the full check's sampling ------------------------------------------------------------------


def test_the_full_check_samples_every_large_parameter_and_says_how_many_entries():
    example = mlp_example(seed=8, widths=(30, 25, 1))  # W1 750, b1 25, W2 25, b2 1
    fprop = Counting(SOLUTION.fprop)
    report = gradcheck.check_gradients(fprop, SOLUTION.bprop, example.x, example.y, example.params,
                                       fprop_kwargs=example.options, max_entries=20)
    assert report.ok and fprop.calls == report.evaluations
    assert report["W1"].extras == {"checked": 20, "entries": 750}
    assert report["b1"].extras == {"checked": 20, "entries": 25}  # biases too
    assert not report["b2"].extras  # small: checked in full
    notes = "\n".join(report.warnings)
    assert "W1: 20 of 750 entries checked" in notes and "b1: 20 of 25" in notes
    assert "W1: 20 of 750 entries checked" in str(report)
    assert report.evaluations >= 3 + 2 * (20 + 20 + 20 + 1)


def test_the_full_check_samples_only_very_large_parameters_by_default_and_all_on_request():
    example = mlp_example(seed=10, widths=(130, 80, 1))  # W1 10,400 entries, b1 80, W2 80, b2 1
    fprop = Counting(SOLUTION.fprop)
    report = gradcheck.check_gradients(fprop, SOLUTION.bprop, example.x, example.y, example.params,
                                       fprop_kwargs=example.options)
    assert report.ok and report["W1"].extras == {"checked": 1_000, "entries": 10_400}
    assert not report["b1"].extras and not report["W2"].extras  # under 10,000: in full
    assert "W1: 1000 of 10400 entries checked" in str(report)
    assert fprop.calls == 3 + 2 * (1_000 + 80 + 80 + 1)  # 2: the loss is reproducible
    everything = gradcheck.check_gradients(SOLUTION.fprop, buggy("sign", "W1"), example.x,
                                           example.y, example.params,
                                           fprop_kwargs=example.options, max_entries="all")
    assert "checked" not in everything["W1"].extras and everything["W1"].mismatched == 10_400


def test_a_sampled_full_check_flags_a_wrong_parameter_at_a_sampled_index():
    example = mlp_example(seed=9, widths=(30, 25, 1))
    report = gradcheck.check_gradients(SOLUTION.fprop, buggy("sign", "W1"), example.x, example.y,
                                       example.params, fprop_kwargs=example.options, max_entries=20)
    assert [p.name for p in report.parameters if not p.ok] == ["W1"]
    w1 = report["W1"]
    assert w1.mismatched == 20 and "of 20 checked entries" in w1.message
    assert len(w1.worst_index) == 2 and w1.analytic == pytest.approx(-w1.reference, rel=1e-5)


@pytest.mark.parametrize("options, message", [
    (dict(mode="sideways"), "mode"),
    (dict(mode="fast", max_entries=0), "max_entries"),
    (dict(max_entries="most"), "max_entries"),
    (dict(mode="fast", max_entries="most"), "max_entries"),
])
def test_misuse_says_how_to_fix_the_call(options, message):
    example = mlp_example()
    with pytest.raises(InvalidArgument, match=message):
        gradcheck.check_gradients(SOLUTION.fprop, SOLUTION.bprop, example.x, example.y,
                                  example.params, fprop_kwargs=example.options, **options)
    with pytest.raises(InvalidArgument, match="probes"):
        fast_check(SOLUTION.fprop, SOLUTION.bprop, example.x, example.y, example.params, probes=0)
