"""Benchmark of ``check_layer`` on a naive convolution (issue 12), beside torch and jax.

The layer is ``conv_forward_naive(x, w, b, conv_param)`` of ``tests/cs231n_layers.py`` (a
loop over the kernel's offsets, no im2col), input 8x3x16x16, filters 4x3x3x3, pad 1,
stride 1: P = 6,144 + 108 + 4 = 6,256 differentiable entries (x, w and b).

- full check: wall time of ``check_layer`` against 2P bare forward calls, measured
  interleaved in the same run (target <= 1.05x); the check's calls include its first pass,
  the two reproducibility calls and the backward pass; beside it, the check's own cost per
  call, measured with a forward that returns a fixed output (the whole-check ratio moves by
  several percent between runs on a shared machine, more than the check adds);
- fast check: forward calls made (target < 60) and wall time in units of one forward call;
- ``torch.autograd.gradcheck`` (``F.conv2d``, float64) and jax's ``check_grads``
  (``lax.conv_general_dilated``) when installed: optional, never dependencies; skipped
  with a note otherwise. Their own layers, not ours: a figure of their cost, not a race.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

import gradcheck

if TYPE_CHECKING:
    from bench.run import Options, Row

SHAPES = {"x": (8, 3, 16, 16), "w": (4, 3, 3, 3), "b": (4,)}
CONV_PARAM = {"stride": 1, "pad": 1}


def layers() -> ModuleType:
    """``tests/cs231n_layers.py`` (the layer library the tests check), loaded by path."""
    from bench.run import tests_module

    return tests_module("cs231n_layers")  # type: ignore[no-any-return]


def conv_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    rng = np.random.default_rng(seed)
    x, w, b = (rng.normal(size=shape) for shape in SHAPES.values())
    return x, w, b, dict(CONV_PARAM)


class Counted:
    """A function that counts its calls."""

    def __init__(self, function: Callable[..., object]) -> None:
        self.function, self.calls = function, 0
        self.__name__ = getattr(function, "__name__", "forward")

    def __call__(self, *args: object) -> object:
        self.calls += 1
        return self.function(*args)


def bench_conv(options: Options) -> list[Row]:
    """``check_layer`` on the conv layer: full check vs 2P forward calls, fast check calls."""
    from bench.run import Row, _best

    conv = layers()
    inputs = conv_inputs()
    size = sum(int(np.prod(shape)) for shape in SHAPES.values())
    repeat = 1 if options.quick else options.repeat

    def baseline() -> None:
        for _ in range(2 * size):
            conv.conv_forward_naive(*inputs)

    forward = Counted(conv.conv_forward_naive)
    reports: list[gradcheck.GradientReport] = []

    def full() -> None:
        forward.calls = 0
        reports.append(gradcheck.check_layer(forward, conv.conv_backward_naive, inputs))

    # Interleaved, so that drift of the machine hits both; the ratio is of CPU time (one BLAS
    # thread): on a shared machine, wall time also counts other tenants' use of the core.
    limit, ours, limit_cpu, ours_cpu = (float("inf"),) * 4
    for _ in range(repeat):
        wall, cpu = _timed(baseline)
        limit, limit_cpu = min(limit, wall), min(limit_cpu, cpu)
        wall, cpu = _timed(full)
        ours, ours_cpu = min(ours, wall), min(ours_cpu, cpu)
    one = limit / (2 * size)
    report = reports[-1]
    case = "conv 8x3x16x16 * 4x3x3x3, pad 1"
    rows = [
        Row("conv", case, "2P forward calls (the limit)", 2 * size, limit, 1.0, "x (2P forward calls)",
            note=f"P={size:,}; one forward call {one * 1e3:.2f} ms"),
        Row("conv", case, "check_layer (full)", report.evaluations, ours, ours_cpu / limit_cpu,
            "x (2P forward calls, CPU time)", "<= 1.05",
            f"ok={report.ok}; wall time {ours / limit:.3f}x; {report.evaluations - 2 * size} calls "
            "beyond 2P (first pass, reproducibility, kink tests), plus one backward"),
        _overhead_row(case, inputs, one),
    ]
    forward.calls = 0
    fast = gradcheck.check_layer(forward, conv.conv_backward_naive, inputs, mode="fast")
    seconds = _best(lambda: gradcheck.check_layer(conv.conv_forward_naive, conv.conv_backward_naive,
                                                  inputs, mode="fast"), repeat)
    rows.append(Row("conv", case, "check_layer(mode='fast')", fast.evaluations, seconds, seconds / one,
                    "x one forward call (wall time)", "< 60 calls",
                    f"ok={fast.ok}; {forward.calls} forward calls counted"))
    rows += [_optional(case, "torch.autograd.gradcheck", _torch_conv, one, repeat),
             _optional(case, "jax check_grads", _jax_conv, one, repeat)]
    return rows


def _overhead_row(case: str, inputs: tuple[object, ...], one: float) -> Row:
    """The check's own cost per forward call, with a forward that returns a fixed output.

    Robust where the whole-check ratio is not: on a shared machine two runs of the same 2P
    forward calls differ by several percent, more than the check adds.
    """
    from bench.run import Row

    out, cache = layers().conv_forward_naive(*inputs)
    gradients = tuple(np.zeros_like(a) for a in inputs[:3])
    report = gradcheck.check_layer(lambda x, w, b, p: (out, cache), lambda d, c: gradients, inputs)
    _, cpu = _timed(lambda: gradcheck.check_layer(lambda x, w, b, p: (out, cache),
                                                  lambda d, c: gradients, inputs))
    per_call = cpu / report.evaluations
    return Row("conv", case, "check_layer's own cost per call", report.evaluations, cpu,
               1.0 + per_call / one, "x (2P forward calls): 1 + overhead / forward", "<= 1.05",
               f"{per_call * 1e6:.1f} us a call (constant forward, CPU time) against "
               f"{one * 1e3:.2f} ms a forward call")


def _timed(function: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def _optional(case: str, method: str, run: Callable[[], float | str], one: float, repeat: int) -> Row:
    from bench.run import Row

    first = run()
    if isinstance(first, str):
        return Row("conv", case, method, note=first)
    seconds = min([first, *(run() for _ in range(repeat - 1))])  # type: ignore[type-var]
    return Row("conv", case, method, seconds=seconds, ratio=seconds / one,
               unit="x one forward call (wall time)",
               note="float64, its own conv (not the naive one) and its own Jacobian")


def _torch_conv() -> float | str:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return "torch is not installed (optional, never a dependency): skipped"
    x, w, b, _ = (torch.from_numpy(a).requires_grad_(True) if isinstance(a, np.ndarray) else a
                  for a in conv_inputs())
    start = time.perf_counter()
    torch.autograd.gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1), (x, w, b))
    return time.perf_counter() - start


def _jax_conv() -> float | str:
    try:
        import jax
        from jax import lax
        from jax.test_util import check_grads
    except ImportError:
        return "jax is not installed (optional, never a dependency): skipped"
    jax.config.update("jax_enable_x64", True)
    x, w, b, _ = conv_inputs()

    def conv(x: object, w: object, b: object) -> object:
        out = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)))
        return out + b[None, :, None, None]  # type: ignore[index]

    start = time.perf_counter()
    check_grads(conv, (x, w, b), order=1, modes=["rev"])
    return time.perf_counter() - start
