"""The reference networks and solutions: shapes, documents' numbers, update rule."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradcheck import InvalidArgument, check_gradients, networks, strategies


def test_the_six_networks_of_the_contract():
    assert networks.NAMES == ("three_node", "batch_sigmoid", "two_hidden", "binary_classifier",
                              "three_input", "mlp")
    shapes = {name: networks.get(name).param_shapes() for name in networks.NAMES[:5]}
    assert shapes["three_node"] == {"W1": (2, 2), "W2": (2, 1)}
    assert shapes["batch_sigmoid"] == {"W1": (2, 3), "W2": (3, 1)}
    assert shapes["two_hidden"] == {"W1": (2, 2), "b1": (2, 1), "W2": (2, 2), "b2": (2, 1),
                                    "W3": (1, 2), "b3": (1, 1)}
    assert shapes["binary_classifier"] == {"W1": (2, 2), "b1": (2, 1), "W2": (1, 2), "b2": (1, 1)}
    assert shapes["three_input"] == {"W1": (2, 3), "W2": (1, 2)}
    assert networks.get("binary_classifier").param_shapes(hidden=5)["W1"] == (5, 2)
    assert networks.get("mlp").param_shapes(widths=(4, 3, 2))["W2"] == (2, 3)


def test_document_000_worked_example_is_reproduced():
    net = networks.get("three_node")
    example = net.worked_examples[0]
    sol = net.solution()
    cache = sol.fprop(example.x, example.y, example.params)
    assert float(cache["loss"]) == pytest.approx(0.30611383, abs=1e-8)
    np.testing.assert_allclose(cache["h"], [[-0.8, 1.2]])
    grads = sol.bprop(cache)
    for key, expected in example.expected["grads"].items():
        np.testing.assert_allclose(grads[key], expected, atol=1e-8)


def test_document_000_own_backward_pass_is_flagged_as_wrong():
    net = networks.get("three_node")
    example, sol = net.worked_examples[0], net.solution()

    def documents_bprop(cache):
        grads = sol.bprop(cache)
        grads["W2"] = example.expected["document_grads"]["W2"]
        return grads

    report = check_gradients(sol.fprop, documents_bprop, example.x, example.y, example.params)
    assert not report["W2"].ok and report["W1"].ok
    assert report["W2"].scale is not None and report["W2"].scale < 0  # it points the wrong way


def test_document_004_output_of_one_half_against_a_target_of_one():
    net = networks.get("three_input")
    example = net.worked_examples[0]
    cache = net.solution().fprop(example.x, example.y, example.params)
    assert float(cache["a2"][0, 0]) == 0.5 and float(cache["loss"]) == 0.125


def test_document_002_published_output_is_recorded_not_invented():
    net = networks.get("two_hidden")
    assert "0.85049311458" in net.published["output"]
    assert "not available" in net.worked_examples[0].source


def test_document_001_data_is_normalised_by_column_maximum():
    example = networks.get("batch_sigmoid").worked_examples[0]
    np.testing.assert_allclose(example.x, [[0.3, 1.0], [0.5, 0.2], [1.0, 0.4]])
    np.testing.assert_allclose(example.y, [[0.75], [0.82], [0.93]])


@pytest.mark.parametrize("name", networks.NAMES)
@given(data=st.data(), lr=st.floats(1e-4, 2.0))
def test_update_is_p_minus_lr_g_and_returns_new_arrays(name, data, lr):
    example = data.draw(strategies.examples(name))
    sol = networks.get(name).solution()
    grads = sol.bprop(sol.fprop(example.x, example.y, example.params, **example.options))
    before = {k: v.copy() for k, v in example.params.items()}
    new = sol.update(example.params, grads, lr)
    for key in example.params:
        np.testing.assert_array_equal(new[key], before[key] - lr * grads[key])
        np.testing.assert_array_equal(example.params[key], before[key])


@pytest.mark.parametrize("name", ["binary_classifier", "mlp"])
@given(data=st.data())
def test_random_examples_have_the_documented_shapes_for_any_size(name, data):
    example = data.draw(strategies.examples(name))
    net = networks.get(name)
    sizes = {"hidden": example.params["W1"].shape[0]} if name == "binary_classifier" else {
        "widths": (example.x.shape[0],) + tuple(example.params[f"W{l}"].shape[0] for l in range(1, len(example.params) // 2 + 1)),
        "activations": example.options["activations"], "loss": example.options["loss"]}
    assert {k: v.shape for k, v in example.params.items()} == net.param_shapes(**sizes)


def test_bad_sizes_are_refused_with_the_allowed_ones():
    with pytest.raises(InvalidArgument, match="hidden"):
        networks.get("three_node").param_shapes(hidden=3)
    with pytest.raises(InvalidArgument, match="one activation per layer"):
        networks.get("mlp").param_shapes(widths=(2, 3, 1), activations=("relu",))
    with pytest.raises(InvalidArgument, match="choose one of"):
        networks.get("resnet")
