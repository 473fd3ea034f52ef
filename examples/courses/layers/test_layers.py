"""The layers course as a pytest file: the grader's points, one test per assignment.

    pytest examples/courses/layers/test_layers.py --course examples/courses/layers \
        --submission examples/courses/layers/submit/good --gradescope-results results.json
"""
import pytest

LAYERS = ["affine", "relu", "batchnorm", "conv", "softmax"]


@pytest.mark.points(8)
@pytest.mark.parametrize("name", LAYERS)
def test_layer(submission, name):
    submission(name).check()  # the forward pass (2) and every input's gradient (6)


@pytest.mark.points(2)
def test_two_layer_net_loss(submission):
    submission("two_layer_net").check_loss()


@pytest.mark.points(6)
def test_two_layer_net_gradients(submission):
    submission("two_layer_net").check_gradients()


@pytest.mark.points(2)
def test_two_layer_net_update(submission):
    submission("two_layer_net").check_update()
