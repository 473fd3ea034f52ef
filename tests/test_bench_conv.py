"""The conv benchmark's set-up: call counts only (timings belong to ``python -m bench``)."""

from __future__ import annotations

import importlib.util

import pytest

import gradcheck
from bench import conv


def test_the_benchmark_conv_layer_passes_the_fast_check_in_under_60_forward_calls():
    layers = conv.layers()
    forward = conv.Counted(layers.conv_forward_naive)
    report = gradcheck.check_layer(forward, layers.conv_backward_naive, conv.conv_inputs(), mode="fast")
    assert report.ok, str(report)
    assert forward.calls == report.evaluations < 60
    assert [p.size for p in report.parameters] == [8 * 3 * 16 * 16, 4 * 3 * 3 * 3, 4]


@pytest.mark.parametrize("module, run", [("torch", conv._torch_conv), ("jax", conv._jax_conv)])
def test_optional_tools_are_skipped_with_a_note_when_absent(module, run):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed: the benchmark times it")
    assert run() == f"{module} is not installed (optional, never a dependency): skipped"
