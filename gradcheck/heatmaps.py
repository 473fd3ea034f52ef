"""A picture of where a gradient is wrong: the relative error of every entry, as a PNG.

Drawn with Pillow, an optional extra (``pip install gradcheck[plots]``): without it,
:func:`save_heatmap` returns None and grading goes on without pictures. A figure costs a
millisecond or two, so the grader draws one for every wrong parameter without slowing down
(matplotlib took 75 to 150 ms a figure, most of a grading run).
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .comparison import relative_error
from .tolerances import Tolerance, tolerance_for

__all__ = ["save_heatmap"]

# matplotlib's "magma_r" at nine evenly spaced points: light = right, dark = wholly wrong.
_MAGMA_R = np.array([(252, 253, 191), (254, 194, 135), (251, 135, 97), (229, 80, 100),
                     (181, 54, 122), (129, 37, 129), (79, 18, 123), (28, 16, 68), (0, 0, 4)],
                    dtype=np.float64)
_LOG_LOW, _LOG_HIGH = -8.0, 0.0  # the colour scale: relative errors from 1e-8 to 1
_MAX_CELLS = 48  # per side; a larger matrix is shown in blocks, each as its worst entry
_LABELLED_CELLS = 64  # up to this many cells, each is labelled with its error
_FONT_SIZE = 11
_MARGIN = {"left": 44, "top": 26, "bottom": 30, "bar": 14, "bar_labels": 40}


def save_heatmap(
    name: str,
    analytic: np.ndarray,
    reference: np.ndarray,
    path: str | os.PathLike[str],
    *,
    tolerance: Tolerance | None = None,
    title: str | None = None,
) -> Path | None:
    """Save a heatmap of the per-entry relative error of ``analytic`` against ``reference``.

    Entries are coloured on a log scale from 1e-8 (right) to 1 (wholly wrong); each cell is
    labelled with its error when the matrix is small enough to read, and a matrix of more
    than 48 rows or columns is shown in blocks, each coloured by its worst entry. An array
    of more than two dimensions is shown with one row per index of its first axis. The file
    is written atomically (a temporary file, then a rename).

    Args:
        name: the parameter, e.g. ``"W2"``; the title reads ``dW2``.
        analytic: the student's gradient.
        reference: the reference gradient, same shape.
        path: where to write the PNG (parent folders are created).
        tolerance: the relative-error definition's atol/rtol (default: float64's).
        title: the figure's title (default ``d<name>``), followed by ": relative error".

    Returns:
        The path written, or None when Pillow is not installed or the shapes differ (a wrong
        shape has no per-entry error to show).

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
    if a.shape != r.shape or a.size == 0:
        return None
    if a.ndim > 2:  # a convolution kernel: one row per output channel, the rest flattened
        a, r = a.reshape(a.shape[0], -1), r.reshape(r.shape[0], -1)
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    errors = np.clip(relative_error(a, r, tolerance or tolerance_for(np.float64)), 1e-8, 1.0)
    errors = np.where(np.isnan(errors), 1.0, errors)  # an inf or nan entry is wholly wrong
    grid, steps = _blocks(errors)
    cell = _cell_size(grid.shape)
    title = f"{title or 'd' + name}: relative error" + (
        f" (blocks of {steps[0]} x {steps[1]}, worst entry)" if steps != (1, 1) else "")
    width = _MARGIN["left"] + cell * grid.shape[1] + _MARGIN["bar"] * 2 + _MARGIN["bar_labels"]
    height = _MARGIN["top"] + cell * grid.shape[0] + _MARGIN["bottom"]
    width = max(width, 200, _MARGIN["left"] + _label(title).width + 8)  # the title fits
    image = Image.new("RGB", (width, max(height, 130)), "white")
    draw = ImageDraw.Draw(image)
    _text(draw, (_MARGIN["left"], 6), title)
    _draw_cells(image, draw, grid, cell, labelled=errors.size <= _LABELLED_CELLS)
    _draw_ticks(draw, grid.shape, steps, cell, errors.shape)
    _draw_colour_bar(image, draw, _MARGIN["left"] + cell * grid.shape[1] + _MARGIN["bar"],
                     cell * grid.shape[0])
    return _write(image, Path(path))


@functools.lru_cache(maxsize=1)
def _font() -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=_FONT_SIZE)  # a bitmap font when FreeType is missing


def _blocks(errors: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The matrix shrunk to at most _MAX_CELLS per side, each block as its worst entry."""
    steps = tuple(math.ceil(n / _MAX_CELLS) for n in errors.shape)
    if steps == (1, 1):
        return errors, (1, 1)
    rows, columns = (math.ceil(n / s) for n, s in zip(errors.shape, steps))
    padded = np.zeros((rows * steps[0], columns * steps[1]))  # zeros never win a maximum
    padded[: errors.shape[0], : errors.shape[1]] = errors
    grid = padded.reshape(rows, steps[0], columns, steps[1]).max(axis=(1, 3))
    return np.maximum(grid, 1e-8), (steps[0], steps[1])


def _cell_size(shape: tuple[int, ...]) -> int:
    return int(min(34, max(8, 400 // max(shape))))


def _colours(values: np.ndarray) -> np.ndarray:
    """RGB of each value on the log colour scale."""
    position = (np.log10(values) - _LOG_LOW) / (_LOG_HIGH - _LOG_LOW) * (len(_MAGMA_R) - 1)
    anchors = np.arange(len(_MAGMA_R))
    channels = [np.interp(position, anchors, _MAGMA_R[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def _draw_cells(image: Any, draw: Any, grid: np.ndarray, cell: int, *,
                labelled: bool) -> None:
    from PIL import Image

    pixels = np.repeat(np.repeat(_colours(grid), cell, axis=0), cell, axis=1)
    image.paste(Image.fromarray(pixels, "RGB"), (_MARGIN["left"], _MARGIN["top"]))
    if not labelled:
        return
    for (row, column), value in np.ndenumerate(grid):
        centre = (_MARGIN["left"] + (column + 0.5) * cell, _MARGIN["top"] + (row + 0.5) * cell)
        _text(draw, centre, _short(value), "mm", "white" if value > 1e-3 else "black")


def _text(draw: Any, xy: tuple[float, float], text: str, anchor: str = "la", fill: str = "black") -> None:
    """Draw ``text`` anchored as in Pillow (``"mm"``: its centre at ``xy``), from a cached mask."""
    mask = _label(text)
    x = xy[0] - {"l": 0.0, "m": mask.width / 2, "r": float(mask.width)}[anchor[0]]
    y = xy[1] - {"a": 0.0, "m": mask.height / 2}[anchor[1]]
    draw.bitmap((round(x), round(y)), mask, fill=fill)


@functools.lru_cache(maxsize=256)
def _label(text: str) -> Any:
    """The text rendered once as a mask: the same few labels recur in every figure."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = _font().getbbox(text)
    mask = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=_font())
    return mask


def _short(value: float) -> str:
    """``1e-05`` as ``1e-5``, and 1 as ``1``: cells are narrow."""
    if value >= 0.95:
        return "1"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _draw_ticks(draw: Any, grid: tuple[int, ...], steps: tuple[int, int], cell: int,
                shape: tuple[int, ...]) -> None:
    # Indices of the matrix (not of the blocks), at most about eight per side.
    for row in _tick_positions(grid[0]):
        y = _MARGIN["top"] + (row + 0.5) * cell
        _text(draw, (_MARGIN["left"] - 4, y), str(row * steps[0]), "rm")
    bottom = _MARGIN["top"] + grid[0] * cell
    for column in _tick_positions(grid[1]):
        x = _MARGIN["left"] + (column + 0.5) * cell
        _text(draw, (x, bottom + 3), str(column * steps[1]), "ma")
    _text(draw, (_MARGIN["left"], bottom + 16), f"{shape[0]} rows x {shape[1]} columns", fill="dimgray")


def _tick_positions(count: int) -> range:
    return range(0, count, max(1, math.ceil(count / 8)))


def _draw_colour_bar(image: Any, draw: Any, left: int, height: int) -> None:
    from PIL import Image

    height = max(height, 80)
    top = _MARGIN["top"]
    # Top = 1 (wholly wrong), bottom = 1e-8, as the cells are coloured.
    scale = 10.0 ** np.linspace(_LOG_HIGH, _LOG_LOW, height)
    strip = np.repeat(_colours(scale)[:, None, :], _MARGIN["bar"], axis=1)
    image.paste(Image.fromarray(strip, "RGB"), (left, top))
    for exponent in range(int(_LOG_HIGH), int(_LOG_LOW) - 1, -2):
        y = top + (_LOG_HIGH - exponent) / (_LOG_HIGH - _LOG_LOW) * (height - 1)
        draw.line([(left + _MARGIN["bar"], y), (left + _MARGIN["bar"] + 3, y)], fill="black")
        _text(draw, (left + _MARGIN["bar"] + 5, y), "1" if exponent == 0 else f"1e{exponent}", "lm")


def _write(image: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(handle)
    try:
        image.save(temporary, format="PNG", compress_level=1)  # speed over a few bytes
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the report must be readable
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
