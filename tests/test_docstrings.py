"""The examples in public docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "gradcheck",
    "gradcheck.tolerances",
    "gradcheck.differentiation",
    "gradcheck.comparison",
    "gradcheck.checking",
    "gradcheck.networks",
    "gradcheck.assignments",
    "gradcheck.courses",
    "gradcheck.strategies",
    "gradcheck.fast",
    "gradcheck.kinks",
    "gradcheck.layers",
    "gradcheck.sampling",
    "gradcheck.wire",
    "gradcheck.submissions",
    "gradcheck.reports",
    "gradcheck.templates",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} shows no runnable example"
    assert result.failed == 0
