"""A picture of where a gradient is wrong: the relative error of every entry, as a PNG.

matplotlib is an optional extra (``pip install gradcheck[plots]``): without it,
:func:`save_heatmap` returns None and grading goes on without pictures.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .comparison import relative_error
from .tolerances import Tolerance, tolerance_for

__all__ = ["save_heatmap"]


def save_heatmap(
    name: str,
    analytic: np.ndarray,
    reference: np.ndarray,
    path: str | os.PathLike[str],
    *,
    tolerance: Tolerance | None = None,
) -> Path | None:
    """Save a heatmap of the per-entry relative error of ``analytic`` against ``reference``.

    Entries are coloured on a log scale from 1e-8 (right) to 1 (wholly wrong); each cell is
    labelled with its error when the matrix is small enough to read. The file is written
    atomically (a temporary file, then a rename).

    Args:
        name: the parameter, e.g. ``"W2"``; the title reads ``dW2``.
        analytic: the student's gradient.
        reference: the reference gradient, same shape.
        path: where to write the PNG (parent folders are created).
        tolerance: the relative-error definition's atol/rtol (default: float64's).

    Returns:
        The path written, or None when matplotlib is not installed or the shapes differ
        (a wrong shape has no per-entry error to show).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "W.png"
        >>> saved = save_heatmap("W", np.eye(2), np.ones((2, 2)), out)
        >>> saved is None or saved.read_bytes()[:4] == b"\\x89PNG"
        True
    """
    a, r = (
        np.atleast_2d(np.asarray(analytic, dtype=np.float64)),
        np.atleast_2d(np.asarray(reference, dtype=np.float64)),
    )
    if a.shape != r.shape or a.ndim != 2:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import colors
        from matplotlib.figure import Figure
    except ImportError:
        return None
    errors = np.clip(relative_error(a, r, tolerance or tolerance_for(np.float64)), 1e-8, 1.0)
    figure = Figure(figsize=(1.2 + 0.5 * a.shape[1], 1.0 + 0.5 * a.shape[0]), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(errors, cmap="magma_r", norm=colors.LogNorm(vmin=1e-8, vmax=1.0))
    _label_cells(axes, errors)
    axes.set_title(f"d{name}: relative error", fontsize=9)
    axes.set_xlabel("column", fontsize=8)
    axes.set_ylabel("row", fontsize=8)
    axes.set_xticks(range(a.shape[1]))
    axes.set_yticks(range(a.shape[0]))
    axes.tick_params(labelsize=7)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04).ax.tick_params(labelsize=7)
    _fixed_margins(figure)
    return _write(figure, Path(path))


def _fixed_margins(figure: object) -> None:
    # Margins in inches, turned into fractions: the same result as tight_layout for these
    # small labelled grids at a fraction of its cost (it was most of the grader's time).
    width, height = figure.get_size_inches()  # type: ignore[attr-defined]
    figure.subplots_adjust(left=0.5 / width, right=1 - 0.65 / width,  # type: ignore[attr-defined]
                           bottom=0.45 / height, top=1 - 0.3 / height)


def _label_cells(axes: Any, errors: np.ndarray) -> None:
    if errors.size > 64:
        return  # too many cells to read their numbers; the colours say enough
    for (row, column), value in np.ndenumerate(errors):
        axes.text(
            column,
            row,
            f"{value:.0e}",
            ha="center",
            va="center",
            fontsize=6,  # type: ignore[attr-defined]
            color="white" if value > 1e-3 else "black",
        )


def _write(figure: object, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(handle)
    try:
        figure.savefig(temporary, format="png")  # type: ignore[attr-defined]
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the report must be readable
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
