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

from . import networks
from .checking import GradientReport, assert_gradients_close, check_gradients
from .comparison import ParameterReport, norm_difference, relative_error
from .differentiation import directional_derivative, numerical_gradient
from .errors import GradientMismatchError, InvalidArgument
from .tolerances import DEFAULT_TOLERANCES, Tolerance, tolerance_for

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TOLERANCES",
    "GradientMismatchError",
    "GradientReport",
    "InvalidArgument",
    "ParameterReport",
    "Tolerance",
    "assert_gradients_close",
    "check_gradients",
    "directional_derivative",
    "networks",
    "norm_difference",
    "numerical_gradient",
    "relative_error",
    "tolerance_for",
]
