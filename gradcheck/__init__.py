"""gradcheck: check hand-written backpropagation against finite differences, and grade it.

Example:
    >>> import gradcheck
    >>> net = gradcheck.networks.get("two_hidden")
    >>> sol, ex = net.solution(), net.worked_examples[0]
    >>> report = gradcheck.check_gradients(sol.fprop, sol.bprop, ex.x, ex.y, ex.params)
    >>> report.ok
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Names are imported on first use: the pytest plugin is loaded by every pytest run once
# gradcheck is installed, and must not pay for numpy unless a test uses gradcheck.
_EXPORTS = {
    "DEFAULT_TOLERANCES": "tolerances",
    "Tolerance": "tolerances",
    "tolerance_for": "tolerances",
    "GradientMismatchError": "errors",
    "InvalidArgument": "errors",
    "GradientReport": "checking",
    "check_gradients": "checking",
    "assert_gradients_close": "checking",
    "ParameterReport": "comparison",
    "norm_difference": "comparison",
    "relative_error": "comparison",
    "numerical_gradient": "differentiation",
    "directional_derivative": "differentiation",
    "fast_check": "fast",
    "check_layer": "layers",
    "check_loss": "layers",
    "assert_layer_close": "layers",
    "assert_loss_close": "layers",
}
_SUBMODULES = ("networks", "strategies", "diagnosis", "assignments", "courses")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'gradcheck' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import assignments, courses, diagnosis, networks, strategies
    from .checking import GradientReport, assert_gradients_close, check_gradients
    from .comparison import ParameterReport, norm_difference, relative_error
    from .differentiation import directional_derivative, numerical_gradient
    from .errors import GradientMismatchError, InvalidArgument
    from .fast import fast_check
    from .layers import assert_layer_close, assert_loss_close, check_layer, check_loss
    from .tolerances import DEFAULT_TOLERANCES, Tolerance, tolerance_for
