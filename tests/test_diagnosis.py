"""The diagnosis engine: a corpus of one-line bugs, correct solutions, verdicts, pictures."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradcheck
from gradcheck import networks, strategies
from gradcheck.diagnosis import (
    CAUSES,
    annotate,
    diagnose_batch_sizes,
    diagnose_gradients,
    diagnose_repeated_calls,
    diagnose_update,
    fit,
    judge_mismatches,
    smallest_failing_example,
    snapshot,
)
from gradcheck.diagnosis.backprop import gradients
from gradcheck.heatmaps import save_heatmap

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bug_corpus
from bug_corpus import BUGS, Bug

# -- the corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize("bug", BUGS, ids=[bug.name for bug in BUGS])
def test_each_one_line_bug_is_diagnosed_with_its_cause(bug: Bug) -> None:
    found = bug_corpus.diagnose(bug)
    causes = {name: diagnosis.cause for name, diagnosis in found.items()}
    assert {name: causes.get(name) for name in bug.params} == {
        name: bug.cause for name in bug.params
    } or (
        all(causes.get(name) in {bug.cause} | bug.also for name in bug.params)
        and any(causes.get(name) == bug.cause for name in bug.params)
    ), causes
    assert set(causes.values()) <= {bug.cause} | bug.also, causes
    for diagnosis in found.values():
        assert diagnosis.cause in CAUSES
        assert diagnosis.sentence.startswith(("d", "bprop", "fprop", "the", "two")), (
            diagnosis.sentence
        )
        assert diagnosis.sentence.endswith(".") and "\n" not in diagnosis.sentence
        assert f"{diagnosis.parameter}" in diagnosis.sentence


def test_the_corpus_covers_every_cause_the_issue_lists() -> None:
    listed = {
        "transposed",
        "sign_flipped",
        "scaled",
        "activation_derivative_missing",
        "derivative_at_activation",
        "bias_not_summed",
        "bias_wrong_axis",
        "swapped",
        "wrong_key",
        "zeros",
        "not_implemented",
        "batch_size_one",
        "consistent_with_own_fprop",
        "mutates_inputs",
    }
    assert listed <= {bug.cause for bug in BUGS}


def _correct_cases() -> list[tuple[str, dict, type]]:
    cases = [
        (name, {"hidden": 3} if name == "binary_classifier" else {}, dtype)
        for name in networks.DOCUMENT_NAMES
        for dtype in (np.float64, np.float32)
    ]
    for activations in (("relu", "sigmoid"), ("tanh", "relu", "identity"), ("sigmoid", "sigmoid")):
        widths = (3, 4, 2, 2)[: len(activations) + 1]
        sizes = {"widths": widths, "activations": activations, "loss": "squared"}
        cases += [("mlp", sizes, np.float64), ("mlp", sizes, np.float32)]
    return cases


CORRECT = _correct_cases()


@pytest.mark.parametrize("name, sizes, dtype", CORRECT)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_correct_solution_gets_no_diagnosis(
    name: str, sizes: dict, dtype: type, seed: int
) -> None:
    assert _diagnoses_of_correct(name, sizes, dtype, seed) == {}


def _diagnoses_of_correct(name: str, sizes: dict, dtype: type, seed: int) -> dict:
    solution, network = networks.get(name).solution(), networks.get(name)
    example = bug_corpus.example_for(name, 3, sizes, seed, dtype)
    one = bug_corpus.example_for(name, 1, sizes, seed, dtype)
    found = diagnose_gradients(
        bug_corpus.run(solution, example),
        bug_corpus.reference(name, example),
        network=network,
        example=example,
        numerical_own=bug_corpus.own_numerical(solution, example),
    )
    found.update(
        diagnose_batch_sizes(
            bug_corpus.run(solution, one),
            bug_corpus.reference(name, one),
            bug_corpus.run(solution, example),
            bug_corpus.reference(name, example),
            network=network,
            example_many=example,
            batch_size=3,
        )
    )
    found.update(bug_corpus._repeat(solution, example))
    return found


class _Summary:
    """Writes precision and recall into pytest's terminal summary (visible without -s)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_terminal_summary(self, terminalreporter) -> None:
        """Print the corpus scores."""
        if self.lines:
            terminalreporter.section("gradcheck diagnosis corpus")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def summary(request: pytest.FixtureRequest) -> _Summary:
    plugin = _Summary()
    request.config.pluginmanager.register(plugin, "gradcheck-diagnosis-summary")
    return plugin


def test_precision_and_recall_on_the_corpus(summary: _Summary) -> None:
    expected = hits = claims = right = 0
    for bug in BUGS:
        found = bug_corpus.diagnose(bug)
        expected += len(bug.params)
        hits += sum(found[p].cause in {bug.cause} | bug.also for p in bug.params if p in found)
        recognised = [d for d in found.values() if d.recognised]
        claims += len(recognised)
        right += sum(d.cause in {bug.cause} | bug.also for d in recognised)
    for name, sizes, dtype in CORRECT:
        claims += len(_diagnoses_of_correct(name, sizes, dtype, seed=2))
    recall, precision = hits / expected, right / claims
    line = (
        f"diagnosis corpus: {len(BUGS)} one-line bugs, {expected} wrong gradients, "
        f"{len(CORRECT)} correct solutions: recall {recall:.3f}, precision {precision:.3f}"
    )
    print(line)
    summary.lines.append(line)
    assert recall >= 0.9
    assert precision == 1.0


# -- the evidence -------------------------------------------------------------------------

matrices = st.tuples(st.integers(1, 4), st.integers(2, 4), st.integers(0, 2**32 - 1)).map(
    lambda t: np.random.default_rng(t[2]).uniform(-2, 2, size=(t[0], t[1]))
)


@settings(deadline=None)
@given(
    matrices,
    st.floats(0.05, 20.0).filter(lambda c: min(abs(c - 2), abs(c - 0.5), abs(c - 1)) > 0.01),
)
def test_alpha_and_cosine_name_the_factor(reference: np.ndarray, factor: float) -> None:
    r = {"W": reference}
    flipped = diagnose_gradients({"W": -reference}, r)["W"]
    assert flipped.cause == "sign_flipped"
    assert flipped.evidence["alpha"] == pytest.approx(-1) and flipped.evidence[
        "cosine"
    ] == pytest.approx(-1)
    scaled = diagnose_gradients({"W": factor * reference}, r)["W"]
    assert scaled.cause == "scaled" and scaled.evidence["factor"] == pytest.approx(factor)
    assert scaled.evidence["consistency"] == 1.0


@pytest.mark.parametrize("m", [3, 5])  # m = 2 reads as the factor 2 or 1/2 of the loss
def test_a_missing_or_extra_batch_factor_is_named_m_or_one_over_m(m: int) -> None:
    r = {"W": np.arange(1.0, 7.0).reshape(2, 3)}
    assert (
        diagnose_gradients({"W": r["W"] / m}, r, batch_size=m)["W"].evidence["factor_name"] == "1/m"
    )
    assert (
        diagnose_gradients({"W": r["W"] * m}, r, batch_size=m)["W"].evidence["factor_name"] == "m"
    )
    # No network: the batch gets its usual symbol N, and no claim about a summed loss.
    assert diagnose_gradients({"W": r["W"] * m}, r, batch_size=m)["W"].sentence.startswith(
        f"dW is scaled by N with N = {m}, the batch size: it is N times the expected gradient;"
    )
    network = networks.get("three_input")
    assert f"m = {m} times the reference" in (
        diagnose_gradients({"W": r["W"] * m}, r, batch_size=m, network=network)["W"].sentence
    )


def test_a_mismatch_in_one_row_is_located_and_not_explained() -> None:
    r = {"W": np.arange(1.0, 7.0).reshape(2, 3)}
    a = r["W"].copy()
    a[1] = [7.0, -3.0, 0.5]
    found = diagnose_gradients({"W": a}, r)["W"]
    assert found.cause == "no_simple_pattern" and not found.recognised
    assert found.evidence["pattern"] == "row 1" and "row 1" in found.sentence


def test_a_transposed_shape_is_named_with_the_layout_formula() -> None:
    network = networks.get("batch_sigmoid")
    example = network.random_example(np.random.default_rng(0), m=4)
    r = bug_corpus.reference("batch_sigmoid", example)
    found = diagnose_gradients({**r, "W1": r["W1"].T}, r, network=network, example=example)
    assert found["W1"].cause == "transposed" and "x.T @ delta1" in found["W1"].sentence


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(networks.NAMES).flatmap(
        lambda name: st.tuples(st.just(name), strategies.examples(name))
    )
)
def test_the_independent_backprop_agrees_with_every_solution(case) -> None:
    name, example = case
    arch = gradcheck.diagnosis.backprop.architecture_for(
        networks.get(name), example.params, example.options
    )
    mine = gradients(arch, example.x, example.y, example.params)
    theirs = bug_corpus.reference(name, example)
    assert set(mine) == set(theirs)
    for key in theirs:
        np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-9, atol=1e-12)


# -- layers and custom code: no network -------------------------------------------------

AFFINE = ("affine_forward", "affine_backward")


def _affine(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """An affine layer's inputs (N = 5, D = 3, M = 4) and its gradients for a random dout."""
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    dout = rng.normal(size=(5, 4))
    # out = x @ w + b, so dx = dout @ w.T, dw = x.T @ dout, db = the sum of dout over N.
    return {"x": x, "w": w, "b": b}, {"dx": dout @ w.T, "dw": x.T @ dout, "db": dout.sum(axis=0)}


def _one_entry_off(gradient: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    wrong = gradient.copy()
    wrong[index] += 1.0
    return wrong


def _layer_diagnosis(student: dict, **options: object) -> dict[str, tuple[str, str]]:
    inputs, reference = _affine()
    options = {"batch_size": 5, **options}  # the batch of _affine
    found = diagnose_gradients(
        student(reference), reference, inputs=inputs, functions=AFFINE, **options
    )
    return {name: (d.cause, d.sentence) for name, d in found.items()}


def test_a_factor_two_is_said_neutrally_when_no_loss_is_declared() -> None:
    assert _layer_diagnosis(lambda r: {**r, "dx": r["dx"] / 2}) == {
        "dx": (
            "scaled",
            (
                "dx is scaled by 1/2: it is half the expected gradient; look for a factor 1/2 "
                "(or a division by 2) that does not belong in its formula."
            ),
        )
    }
    twice = _layer_diagnosis(lambda r: {**r, "dw": 2 * r["dw"]}, loss="softmax")["dw"][1]
    assert twice.startswith("dw is scaled by 2: it is twice the expected gradient;")
    assert "0.5" not in twice and "squared" not in twice


def test_the_factor_of_the_squared_loss_is_explained_only_when_it_is_declared() -> None:
    assert _layer_diagnosis(lambda r: {**r, "dx": r["dx"] / 2}, loss="squared")["dx"][1] == (
        "dx is half the reference: the derivative of 0.5 * e**2 is e, so no second 1/2 "
        "belongs here."
    )
    # A document network declares its loss through its architecture.
    network = networks.get("three_input")
    example = network.random_example(np.random.default_rng(1), m=3)
    r = bug_corpus.reference("three_input", example)
    found = diagnose_gradients({**r, "W1": 2 * r["W1"]}, r, network=network, example=example)
    assert "the derivative of 0.5 * (y - yhat)**2" in found["W1"].sentence
    binary = networks.get("binary_classifier")  # cross-entropy: no 0.5 to blame
    example = binary.random_example(np.random.default_rng(1), m=3, hidden=3)
    r = bug_corpus.reference("binary_classifier", example)
    found = diagnose_gradients({**r, "W1": 2 * r["W1"]}, r, network=binary, example=example)
    assert found["W1"].sentence.startswith("dW1 is scaled by 2: it is twice the expected")


def test_scale_factors_are_named_from_the_callers_batch_size_and_dimensions() -> None:
    assert _layer_diagnosis(lambda r: {**r, "dw": 5 * r["dw"]}, batch_size=5)["dw"][1] == (
        "dw is scaled by N with N = 5, the batch size: it is N times the expected gradient; "
        "a loss that is a mean over the batch divides its gradient by N, and a product over "
        "the batch already sums the examples."
    )
    dims = {"B": 5, "D": 3, "M": 4}
    by_batch = _layer_diagnosis(lambda r: {**r, "db": r["db"] / 5}, batch_size=5, dims=dims)
    assert by_batch["db"][1].startswith("db is scaled by 1/B with B = 5, the batch size:")
    by_dimension = _layer_diagnosis(lambda r: {**r, "dx": r["dx"] / 3}, batch_size=5, dims=dims)
    assert by_dimension["dx"][1].startswith(
        "dx is scaled by 1/D with D = 3: it is the expected gradient divided by D;"
    )
    _, r = _affine()
    found = diagnose_gradients({**r, "dx": r["dx"] * 4}, r, dims=dims)["dx"]
    assert found.evidence["factor_name"] == "M" and "scaled by M with M = 4:" in found.sentence


@pytest.mark.parametrize(
    "bug, cause, phrase",
    [
        (lambda r: {**r, "dw": r["dw"].T}, "transposed",
         "dw matches the reference transposed: a gradient has the shape of its variable w"),
        (lambda r: {**r, "dx": -r["dx"]}, "sign_flipped", "dx has the sign flipped (alpha = -1"),
        (lambda r: {**r, "db": np.zeros(4)}, "zeros", "db is all zeros"),
        (lambda r: {**r, "dw": _one_entry_off(r["dw"], (1, 2))}, "no_simple_pattern",
         "the mismatch is in entry [1, 2]"),
        (lambda r: {**r, "db": np.tile(r["db"] / 5, (5, 1))}, "not_summed",
         "db has shape (5, 4), one entry per example along axis 0: summed over that axis"),
        (lambda r: {**r, "db": r["db"][:, None]}, "flattened",
         "db has the right values but shape (4, 1) instead of (4,): reshape it to the shape of b"),
    ],
)
def test_a_layers_gradients_are_diagnosed_without_a_network(bug, cause: str, phrase: str) -> None:
    found = _layer_diagnosis(bug)
    assert len(found) == 1 and next(iter(found.values()))[0] == cause, found
    assert phrase in next(iter(found.values()))[1]


def test_the_sign_is_explained_by_the_loss_only_when_one_is_declared() -> None:
    neutral = _layer_diagnosis(lambda r: {**r, "dx": -r["dx"]})["dx"][1]
    assert "prediction - target" not in neutral and "a minus sign too many" in neutral
    declared = _layer_diagnosis(lambda r: {**r, "dx": -r["dx"]}, loss="softmax")["dx"][1]
    assert "prediction - target" in declared


def test_sentences_name_the_callers_functions() -> None:
    inputs, reference = _affine()
    raised = diagnose_gradients(NotImplementedError(), reference, functions=AFFINE)["dx"]
    assert raised.sentence == (
        "affine_backward raised NotImplementedError: replace the `raise NotImplementedError` "
        "with the computation of dx and return it."
    )
    returned = diagnose_gradients("dx", reference, functions=AFFINE)["dx"].sentence
    assert returned == (
        "affine_backward returned a str where dx should be: return one array per gradient, "
        "dx among them."
    )
    dw = reference["dw"]
    own = diagnose_gradients(
        {**reference, "dw": 3 * dw}, reference, functions=AFFINE, numerical_own={"dw": 3 * dw}
    )["dw"].sentence
    assert own == (
        "dw is the exact gradient of your own affine_forward, but your affine_forward computes "
        "a different function than the reference's: the bug is in the forward pass, not in "
        "affine_backward."
    )
    cache = {"x": inputs["x"]}
    changed = diagnose_repeated_calls(
        reference, reference, before=snapshot(cache), after={"x": inputs["x"] + 1},
        who="affine_backward",
    )
    assert changed["dx"].sentence.startswith("affine_backward modified x in place")
    stale = diagnose_repeated_calls({"dx": 1.0}, {"dx": 2.0}, who="affine_backward")["dx"]
    assert "two calls of affine_backward on the same cache returned different dx:" in (
        stale.sentence
    )


affine_shapes = st.tuples(
    st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**32 - 1)
)


def _affine_at(shape: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    n, d, m, seed = shape
    rng = np.random.default_rng(seed)
    x, w, dout = rng.uniform(-2, 2, (n, d)), rng.uniform(-2, 2, (d, m)), rng.uniform(-2, 2, (n, m))
    return {"dx": dout @ w.T, "dw": x.T @ dout, "db": dout.sum(axis=0)}


@settings(deadline=None)
@given(affine_shapes)
def test_a_correct_layer_gets_no_diagnosis_and_a_swap_is_found_at_any_shape(shape) -> None:
    r = _affine_at(shape)
    assert diagnose_gradients(r, r, batch_size=shape[0], dims={"N": shape[0], "D": shape[1]}) == {}
    swapped = diagnose_gradients({**r, "dx": r["dw"], "dw": r["dx"]}, r)
    assert {name: d.cause for name, d in swapped.items()} == {"dx": "swapped", "dw": "swapped"}


def test_a_layer_right_only_for_one_example_is_named_by_its_gradient() -> None:
    one, many = _affine_at((1, 3, 4, 7)), _affine_at((4, 3, 4, 8))
    wrong = {**many, "dw": many["dw"] + np.eye(3, 4)}  # no factor: only the batch is to blame
    found = diagnose_batch_sizes(one, one, wrong, many, batch_size=4, functions=AFFINE)
    assert list(found) == ["dw"] and found["dw"].sentence.startswith(
        "dw is right for one example (m=1) but wrong for a batch of m=4"
    )
    halved = diagnose_batch_sizes(one, one, {**many, "db": many["db"] / 4}, many, batch_size=4)
    assert halved["db"].sentence.startswith("db is scaled by 1/N with N = 4, the batch size")


# -- gradients under each other's names ------------------------------------------------


def _two_hidden(seed: int = 3) -> tuple[networks.Network, object, dict[str, np.ndarray]]:
    network = networks.get("two_hidden")
    example = network.random_example(np.random.default_rng(seed), m=3)
    return network, example, bug_corpus.reference("two_hidden", example)


def test_swapped_biases_of_different_shapes_are_swapped_not_two_shape_errors() -> None:
    network, example, r = _two_hidden()
    assert r["b2"].shape == (2, 1) and r["b3"].shape == (1, 1)
    found = diagnose_gradients(
        {**r, "b2": r["b3"], "b3": r["b2"]}, r, network=network, example=example
    )
    assert {name: d.cause for name, d in found.items()} == {"b2": "swapped", "b3": "swapped"}
    assert found["b2"].sentence == (
        "db2 and db3 are swapped: your db2 is the expected db3 and your db3 the expected db2; "
        "check which gradient each name receives."
    )


def test_three_gradients_moved_round_a_cycle_are_swapped_in_a_cycle() -> None:
    network, example, r = _two_hidden()
    student = {**r, "b1": r["b2"], "b2": r["b3"], "b3": r["b1"]}
    found = diagnose_gradients(student, r, network=network, example=example)
    assert {d.cause for d in found.values()} == {"swapped"} and len(found) == 3
    assert found["b1"].sentence.startswith(
        "db1, db2 and db3 are swapped in a cycle: your db1 is the expected db2, your db2 the "
        "expected db3 and your db3 the expected db1;"
    )
    assert found["b3"].evidence["cycle"] == "b3 -> b1 -> b2"


@pytest.mark.parametrize("pair", [("dx", "dw"), ("dw", "db")])
def test_a_layers_swapped_gradients_are_named_whatever_their_shapes(pair) -> None:
    mine, theirs = pair
    found = _layer_diagnosis(lambda r: {**r, mine: r[theirs], theirs: r[mine]})
    sentence = (
        f"{mine} and {theirs} are swapped: your {mine} is the expected {theirs} and your "
        f"{theirs} the expected {mine}; check which gradient each name receives."
    )
    assert found[mine] == ("swapped", sentence)
    assert found[theirs][0] == "swapped" and set(found) == {mine, theirs}


@pytest.mark.parametrize("key", ["dW1", "w1", "grad_W1"])
def test_a_gradient_under_another_spelling_of_its_name_is_a_wrong_key(key: str) -> None:
    network, example, r = _two_hidden()
    student = {k: v for k, v in r.items() if k != "W1"}
    student[key] = r["W1"].T  # found by its name even when its value is wrong as well
    found = diagnose_gradients(student, r, network=network, example=example)
    assert found["W1"].cause == "wrong_key" and found["W1"].sentence == (
        f"the gradient of W1 is returned under the key {key!r}; use the parameter's own "
        f"name 'W1'."
    )


def test_a_layers_gradients_keyed_by_the_inputs_are_a_wrong_key() -> None:
    inputs, reference = _affine()
    student = {"x": reference["dx"], "w": reference["dw"], "db": reference["db"]}
    found = diagnose_gradients(student, reference, inputs=inputs)
    assert found["dx"].sentence == "the gradient of x is returned under the key 'x'; use the key 'dx'."
    assert set(found) == {"dx", "dw"}


# -- the update step ----------------------------------------------------------------------


def _update_of(new: str):
    """two_hidden's update with its one line replaced."""
    old = "return {key: params[key] - lr * grads[key] for key in params}"
    bug = Bug("update", "two_hidden", old, new, "", ())
    return bug_corpus.patched(bug).update


def test_an_update_that_adds_the_step_is_gradient_ascent() -> None:
    _, example, r = _two_hidden()
    update = _update_of("return {key: params[key] + lr * grads[key] for key in params}")
    found = diagnose_update(update(dict(example.params), r, 0.1), example.params, r, 0.1)
    assert set(found) == set(example.params) and {d.cause for d in found.values()} == {
        "gradient_ascent"
    }
    assert found["W2"].sentence == (
        "update adds the step to W2: p + lr * dp is gradient ascent; use p - lr * dp."
    )
    assert found["W2"].evidence["alpha"] == pytest.approx(-1.0)


@pytest.mark.parametrize(
    "line, cause",
    [
        ("return {key: params[key] - grads[key] for key in params}", "learning_rate_missing"),
        ("return {key: params[key] - lr * lr * grads[key] for key in params}", "learning_rate_twice"),
        ("return {key: params[key] for key in params}", "not_updated"),
        ("return {key: -lr * grads[key] for key in params}", "returned_step"),
        ("return {key: params[key] - 2 * lr * grads[key] for key in params}", "scaled"),
    ],
)
def test_each_wrong_update_step_is_named(line: str, cause: str) -> None:
    _, example, r = _two_hidden()
    found = diagnose_update(_update_of(line)(dict(example.params), r, 0.3), example.params, r, 0.3)
    assert {d.cause for d in found.values()} == {cause} and len(found) == len(example.params)
    assert all(d.sentence.endswith("p - lr * dp.") or "p - lr * dp" in d.sentence for d in found.values())


def test_a_correct_update_gets_no_diagnosis_and_a_missing_key_is_named() -> None:
    _, example, r = _two_hidden()
    solution = networks.get("two_hidden").solution()
    new = solution.update(dict(example.params), r, 0.3)
    assert diagnose_update(new, example.params, r, 0.3) == {}
    del new["b1"]
    found = diagnose_update(new, example.params, r, 0.3, function="sgd")
    assert list(found) == ["b1"] and found["b1"].sentence.startswith(
        "sgd returned no new value for b1"
    )
    assert diagnose_update(None, example.params, r, 0.3)["W1"].cause == "missing"


# -- the grader's helpers -----------------------------------------------------------------


def test_a_batch_factor_at_m_greater_than_one_keeps_its_specific_cause() -> None:
    network = networks.get("three_input")
    one, many = (network.random_example(np.random.default_rng(4), m=m) for m in (1, 4))
    r1, r4 = bug_corpus.reference("three_input", one), bug_corpus.reference("three_input", many)
    found = diagnose_batch_sizes({**r1}, r1, {**r4, "W2": r4["W2"] / 4}, r4, batch_size=4)
    assert found["W2"].cause == "scaled" and found["W2"].evidence["factor_name"] == "1/m"


def test_a_bprop_with_hidden_state_is_a_stale_cache() -> None:
    solution = networks.get("three_input").solution()
    calls = []

    def bprop(cache):  # a global counter leaks into the gradient from the second call on
        calls.append(1)
        grads = solution.bprop(cache)
        return {**grads, "W1": grads["W1"] * len(calls)}

    example = networks.get("three_input").random_example(np.random.default_rng(5), m=3)
    cache = solution.fprop(example.x, example.y, example.params)
    found = diagnose_repeated_calls(bprop(cache), bprop(cache))
    assert list(found) == ["W1"] and found["W1"].cause == "stale_cache"


def test_annotate_puts_the_sentence_on_failing_reports_of_check_gradients() -> None:
    network = networks.get("two_hidden")
    solution, example = network.solution(), network.random_example(np.random.default_rng(6), m=3)

    def bprop(cache):
        grads = solution.bprop(cache)
        return {**grads, "W2": grads["W2"].T}

    report = gradcheck.check_gradients(solution.fprop, bprop, example.x, example.y, example.params)
    assert "transposed" in report["W2"].hint and report["W1"].hint == ""
    r = bug_corpus.reference("two_hidden", example)
    reports, _ = gradcheck.comparison.compare_gradients(
        {**r, "b1": 2 * r["b1"]}, r, gradcheck.tolerance_for(np.float64)
    )
    annotated = annotate(reports, {**r, "b1": 2 * r["b1"]}, r, network=network, example=example)
    assert [p.name for p in annotated if p.hint] == ["b1"]
    assert next(p for p in annotated if p.name == "b1").extras["diagnosis"].cause == "scaled"


# -- verdicts from measured noise ---------------------------------------------------------


def _loss(name: str, example, dtype=np.float64):
    solution = networks.get(name).solution()
    x, y = example.x.astype(dtype), example.y.astype(dtype)
    return lambda p: solution.fprop(x, y, p, **example.options)["loss"]


def test_a_large_step_is_finite_difference_noise_and_a_real_bug_is_a_bug() -> None:
    example = networks.get("two_hidden").random_example(np.random.default_rng(8), m=3)
    r = bug_corpus.reference("two_hidden", example)
    tight = gradcheck.Tolerance(rtol=1e-9, atol=1e-12, eps=1e-2)
    verdicts = judge_mismatches(_loss("two_hidden", example), example.params, r, tolerance=tight)
    assert verdicts and {v.label for v in verdicts} == {"finite_difference_noise"}
    wrong = judge_mismatches(
        _loss("two_hidden", example), example.params, {**r, "W3": -r["W3"]}, tolerance=tight
    )
    assert {v.parameter for v in wrong if v.label == "bug"} == {"W3"}
    assert "bug" in next(v for v in wrong if v.label == "bug").sentence


def test_float32_rounding_is_float32_noise() -> None:
    example = bug_corpus.example_for("three_input", 4, {}, 9, np.float32)
    solution = networks.get("three_input").solution()
    analytic = solution.bprop(solution.fprop(example.x, example.y, example.params))
    tight = gradcheck.Tolerance(rtol=1e-6, atol=1e-9, eps=1e-4)
    verdicts = judge_mismatches(
        _loss("three_input", example, np.float32), example.params, analytic, tolerance=tight
    )
    assert verdicts and {v.label for v in verdicts} == {"float32_noise"}


def test_a_relu_kink_is_accepted_inside_the_bracket_and_the_unit_is_named() -> None:
    network = networks.get("mlp")
    sizes = {"widths": (2, 3, 1), "activations": ("relu", "identity"), "loss": "squared"}
    example = network.random_example(np.random.default_rng(10), m=1, **sizes)
    params = {k: v.copy() for k, v in example.params.items()}
    z = params["W1"] @ example.x + params["b1"]
    params["b1"][1, 0] -= z[1, 0] - 3e-7  # unit 1 of layer 1 now sits 3e-7 above the kink
    arch = gradcheck.diagnosis.backprop.architecture_for(network, params, example.options)
    analytic = gradients(arch, example.x, example.y, params)
    verdicts = judge_mismatches(
        _loss("mlp", example), params, analytic, network=network, example=example
    )
    kinks = [v for v in verdicts if v.label == "kink"]
    assert kinks and all(v.unit == "layer 1 unit 1 (example 0)" for v in kinks)
    assert not [v for v in verdicts if v.label == "bug"]
    params["b1"][1, 0] -= 3e-7 - 1e-8  # well inside half the step: the bracket alone sees it
    analytic = gradients(arch, example.x, example.y, params)
    alone = [
        v for v in judge_mismatches(_loss("mlp", example), params, analytic) if v.parameter == "b1"
    ]
    assert [(v.label, v.unit) for v in alone] == [("kink", "")]
    outside = {**analytic, "b1": analytic["b1"] + 5.0}
    labels = {
        v.label
        for v in judge_mismatches(_loss("mlp", example), params, outside)
        if v.parameter == "b1" and v.index == (1, 0)
    }
    assert labels == {"bug"}


# -- showing it ---------------------------------------------------------------------------


def test_a_heatmap_is_a_png_and_is_skipped_without_pillow(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("PIL")
    r = np.arange(1.0, 7.0).reshape(2, 3)
    path = save_heatmap("W1", r * [[1, 1, 1], [1, 2, 1]], r, tmp_path / "figs" / "W1.png")
    assert path == tmp_path / "figs" / "W1.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        save_heatmap("W1", r.T, r, tmp_path / "T.png") is None
    )  # no per-entry error for a transpose
    monkeypatch.setitem(sys.modules, "PIL", None)
    assert save_heatmap("W1", r, r, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def _cell_colours(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The colour near the corner of every cell of a heatmap (its label is in the middle)."""
    from PIL import Image

    from gradcheck import heatmaps

    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=float)
    cell = heatmaps._cell_size(shape)
    left, top = heatmaps._MARGIN["left"], heatmaps._MARGIN["top"]
    return np.array([[pixels[top + cell * i + 2, left + cell * j + 2]
                      for j in range(shape[1])] for i in range(shape[0])])


def test_a_heatmap_is_dark_exactly_where_the_gradient_is_wrong(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    reference = np.arange(1.0, 13.0).reshape(4, 3)
    analytic = reference.copy()
    analytic[2, 1] *= -1  # wholly wrong
    analytic[0, 2] *= 1 + 1e-4  # a little wrong
    colours = _cell_colours(save_heatmap("W2", analytic, reference, tmp_path / "W2.png"), (4, 3))
    brightness = colours.sum(axis=-1)
    assert brightness[2, 1] < 50  # near black
    assert brightness[0, 2] < brightness[1, 1] - 100  # darker than a right entry
    right = np.delete(brightness.ravel(), [2 * 3 + 1, 0 * 3 + 2])
    assert right.min() > 600  # the light end of the scale


def test_a_convolution_kernel_is_shown_one_row_per_output_channel(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    reference = np.ones((4, 2, 3, 3))
    analytic = reference.copy()
    analytic[2, 1, 0, 2] = -1.0  # row 2, column 1 * 9 + 0 * 3 + 2 = 11
    path = save_heatmap("K", analytic, reference, tmp_path / "K.png")
    brightness = _cell_colours(path, (4, 18)).sum(axis=-1)
    assert brightness[2, 11] < 200 and np.delete(brightness.ravel(), 2 * 18 + 11).min() > 600


def test_a_large_matrix_is_shown_in_blocks_of_its_worst_entries(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    reference = np.ones((1000, 700))
    analytic = reference.copy()
    analytic[999, 0] = 5.0  # in the last block of rows, first block of columns
    path = save_heatmap("W1", analytic, reference, tmp_path / "W1.png")
    width, height = Image.open(path).size
    assert width < 1000 and height < 1000  # not one pixel per entry, let alone a cell
    grid = (math.ceil(1000 / math.ceil(1000 / 48)), math.ceil(700 / math.ceil(700 / 48)))
    brightness = _cell_colours(path, grid).sum(axis=-1)
    assert brightness[-1, 0] < 200 and np.delete(brightness.ravel(), (grid[0] - 1) * grid[1]).min() > 600


def _first_example_only(example) -> bool:
    """True when batch_sigmoid with dW1 from the first example only is wrong on ``example``."""
    bug = next(b for b in BUGS if b.name == "first example only")
    found = diagnose_gradients(
        bug_corpus.run(bug_corpus.patched(bug), example),
        bug_corpus.reference("batch_sigmoid", example),
    )
    return "W1" in found


def test_hypothesis_shrinks_a_batch_size_bug_to_the_smallest_failing_batch() -> None:
    seen = []

    @settings(max_examples=30, database=None, deadline=None, derandomize=True)
    @given(strategies.examples("batch_sigmoid"))
    def check(example) -> None:
        seen.append(example.x.shape[0])
        assert not _first_example_only(example)

    with pytest.raises(AssertionError):
        check()
    assert seen[-1] == 2  # the replayed, shrunk failure: one example more than works
    smallest = smallest_failing_example("batch_sigmoid", _first_example_only, max_examples=30)
    assert smallest is not None and smallest.x.shape[0] == 2


def test_fit_reports_how_consistently_the_factor_holds() -> None:
    r = np.array([1.0, 2.0, 3.0, 4.0])
    assert fit(3 * r, r)["consistency"] == 1.0
    assert fit(np.array([3.0, 6.0, 9.0, 0.0]), r)["consistency"] < 1.0
