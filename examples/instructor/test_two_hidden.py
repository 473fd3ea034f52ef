"""Grade two_hidden: `pytest --submission student/ --gradescope-results results.json`."""
import pytest
from hypothesis import given, settings

from gradcheck import strategies


@pytest.mark.points(2)
def test_fprop(submission):
    submission("two_hidden").check_loss()  # the loss, against the reference solution


@pytest.mark.points(6)
def test_bprop(submission):
    submission("two_hidden").check_gradients()  # each gradient against the reference's


@pytest.mark.points(2)
def test_update(submission):
    submission("two_hidden").check_update()  # p - lr * dp


@pytest.mark.points(2)
@pytest.mark.visibility("after_due_date")
@settings(max_examples=20, deadline=None)
@given(example=strategies.examples("two_hidden"))
def test_bprop_any_batch(submission, example):
    submission("two_hidden").check_gradients(example)  # against finite differences of its own fprop, any batch size
