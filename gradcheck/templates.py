"""Generate the student templates of a course from its reference solutions.

A course folder holds one reference solution per assignment, ``DIR/NAME.py``, whose answers
are marked with ``### BEGIN SOLUTION`` / ``### END SOLUTION`` (the nbgrader and otter
convention; ``# BEGIN SOLUTION`` / ``# END SOLUTION`` are accepted too). The template keeps
everything else, the instructor's own ``if __name__ == "__main__":`` self-check included,
and replaces each marked block with a stub that raises ``NotImplementedError``. Each
solution gives a module ``NAME.py`` and a notebook ``NAME.ipynb``. Templates are generated,
never edited by hand, and ``--check`` says when they have drifted from the solutions.

Usage::

    python -m gradcheck.templates                       # bundled course: solutions/ -> assignments/
    python -m gradcheck.templates --course DIR          # DIR/NAME.py -> DIR/templates/NAME.*
                                                        # (and DIR/support/* beside them)
    python -m gradcheck.templates --course DIR --check  # exit 1 listing stale templates
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import click
import nbformat

__all__ = ["TemplateError", "module_template", "notebook_template", "write_templates",
           "stale_templates", "cli", "main"]

_REPO = Path(__file__).resolve().parent.parent
_BUNDLED_COURSE, _BUNDLED_OUT = _REPO / "solutions", _REPO / "assignments"

# A comment that tries to be a marker; only the exact spellings below are accepted, so that
# a misspelt one is an error instead of an answer shipped to the students.
_MARKER_LIKE = re.compile(r"#+\s*(BEGIN|END)\s*SOLUTION", re.I)
_MARKER = re.compile(r"(?:#|###) (?P<kind>BEGIN|END) SOLUTION")
_STUB = ("# YOUR CODE HERE", 'raise NotImplementedError("write this function")')
# A jupytext percent-format cell boundary: "# %%", "# %% title", "# %% [markdown]".
_CELL = re.compile(r"# %%(?:\s(?P<rest>.*))?")


class TemplateError(ValueError):
    """A reference solution cannot be turned into a template; the message names file and line."""


def module_template(path: Path | str) -> str:
    """The student module for the reference solution at ``path``: its answers removed.

    Args:
        path: a reference solution, ``DIR/NAME.py``, with marked answers.

    Returns:
        The template's source: each marked block replaced by ``# YOUR CODE HERE`` and
        ``raise NotImplementedError("write this function")`` at the block's indentation.

    Raises:
        TemplateError: the markers are unmatched, nested, misspelt, absent or outside a
            function, or the solution or its template is not valid Python.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "double.py").write_text(
        ...     'def double(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION\\n')
        >>> print(module_template(folder / "double.py"))
        def double(x):
            # YOUR CODE HERE
            raise NotImplementedError("write this function")
        <BLANKLINE>
    """
    return _template(Path(path)).source


def notebook_template(path: Path | str) -> nbformat.NotebookNode:
    """The template of ``path`` as a notebook.

    A markdown cell made from the module docstring (its first line as the heading), then
    one code cell per function the students write, imports and helpers sharing the first,
    and the ``__main__`` self-check unwrapped into the last cell. A solution written in
    jupytext's percent format (``# %%``, ``# %% [markdown]``) keeps its own cells instead.
    Cell ids are stable, so regenerating gives the same file.

    Args:
        path: a reference solution, as for :func:`module_template`.

    Returns:
        A valid nbformat 4 notebook.

    Raises:
        TemplateError: as :func:`module_template`.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "double.py").write_text("'''Double: twice x.'''\\n\\n"
        ...     'def double(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION\\n')
        >>> [cell.cell_type for cell in notebook_template(folder / "double.py").cells]
        ['markdown', 'code']
    """
    template = _template(Path(path))
    tree = ast.parse(template.source)
    if any(_CELL.fullmatch(text) for row, col, text in _comments(template.source) if col == 0):
        cells = _percent_cells(template, tree)
    else:
        cells = _plain_cells(template, tree)
    name = re.sub(r"[^A-Za-z0-9_-]", "-", template.path.stem)[:50]
    for index, cell in enumerate(cells):
        cell["id"] = f"{name}-{index}"  # stable ids: regenerating gives identical files
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def write_templates(course_dir: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """Write ``NAME.py`` and ``NAME.ipynb`` into ``out_dir`` for every solution of a course.

    Every template is built before any is written, so a mistake in one solution writes
    nothing. Files already up to date are left untouched.

    Args:
        course_dir: the course folder, holding the reference solutions ``NAME.py``.
        out_dir: where the templates go. Default: ``assignments/`` for the bundled course
            (``solutions/`` of this repository), ``course_dir/templates`` for any other.

    Returns:
        The files written (new or changed).

    Raises:
        TemplateError: the folder holds no solution, or a solution has a marker mistake.

    Example:
        >>> import tempfile
        >>> course = Path(tempfile.mkdtemp())
        >>> _ = (course / "double.py").write_text(
        ...     'def double(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION\\n')
        >>> [path.name for path in write_templates(course)]
        ['double.py', 'double.ipynb']
        >>> stale_templates(course)
        []
    """
    folder = _out_dir(Path(course_dir), out_dir)
    expected = _expected(Path(course_dir))
    written = []
    for file_name, data in expected.items():
        path = folder / file_name
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(path)
    return written


def stale_templates(course_dir: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """The templates of a course that are missing from ``out_dir`` or differ from its solutions.

    Args:
        course_dir: the course folder, as for :func:`write_templates`.
        out_dir: the templates' folder, with the same default as :func:`write_templates`.

    Returns:
        The paths that :func:`write_templates` would write; empty when all are up to date.

    Raises:
        TemplateError: as :func:`write_templates`.
    """
    folder = _out_dir(Path(course_dir), out_dir)
    return [folder / name for name, data in _expected(Path(course_dir)).items()
            if not (folder / name).is_file() or (folder / name).read_bytes() != data]


class _CourseError(click.ClickException):
    exit_code = 2  # like a usage error: 1 is kept for "templates are stale"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--course", "course_dir", default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Course folder with the reference solutions NAME.py. "
                   "Default: the bundled course, solutions/ of this repository.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the templates. Default: assignments/ for the bundled course, "
                   "DIR/templates for any other.")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 listing the templates that are out of date.")
def cli(course_dir: Path | None, out_dir: Path | None, check: bool) -> None:
    """Generate the student templates (NAME.py and NAME.ipynb) from the reference solutions."""
    if course_dir is None:
        if not _BUNDLED_COURSE.is_dir():
            raise click.BadParameter("no bundled course outside a source checkout: pass --course DIR",
                                     param_hint="'--course'")
        course_dir = _BUNDLED_COURSE
    if not _solutions(course_dir):
        raise click.BadParameter(f"{course_dir} holds no reference solution (a NAME.py with "
                                 "### BEGIN SOLUTION / ### END SOLUTION markers)", param_hint="'--course'")
    try:
        paths = (stale_templates if check else write_templates)(course_dir, out_dir)
    except TemplateError as error:
        raise _CourseError(str(error)) from None
    if check:
        command = " ".join(["python -m gradcheck.templates",
                            *(["--course", str(course_dir)] if course_dir != _BUNDLED_COURSE else []),
                            *(["--out", str(out_dir)] if out_dir is not None else [])])
        for path in paths:
            click.echo(f"{path} is out of date: run {command}")
        if paths:
            sys.exit(1)
        return
    for path in paths:
        click.echo(f"wrote {path}")
    if not paths:
        click.echo(f"the templates in {_out_dir(course_dir, out_dir)} are up to date")


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status instead of raising SystemExit."""
    try:
        cli.main(args=argv, prog_name="python -m gradcheck.templates")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


# -- stubs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    path: Path
    source: str
    stubs: tuple[int, ...]
    """The line of each stub's ``raise`` in ``source``."""


def _template(path: Path) -> _Template:
    solution = path.read_text()
    try:
        ast.parse(solution, filename=str(path))
    except SyntaxError as error:
        raise TemplateError(f"{path}:{error.lineno}: the solution is not valid Python: {error.msg}") from None
    lines = solution.splitlines()
    out: list[str] = []
    origin: list[int] = []  # the solution's line behind each template line
    stubs: dict[int, int] = {}  # template line of a stub's raise -> line of its BEGIN marker
    row = 1
    for begin, end in _blocks(path, solution):
        out += lines[row - 1: begin - 1]
        origin += range(row, begin)
        indent = lines[begin - 1][: len(lines[begin - 1]) - len(lines[begin - 1].lstrip())]
        out += [indent + line for line in _STUB]
        origin += [begin, begin]
        stubs[len(out)] = begin
        row = end + 1
    out += lines[row - 1:]
    origin += range(row, len(lines) + 1)
    source = "\n".join(out).rstrip("\n") + "\n"
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        # The solution parses, so a stub broke it: name the block nearest to the error.
        line = origin[min(error.lineno or 1, len(origin)) - 1]
        begin = min(stubs.values(), key=lambda begin: abs(begin - line))
        raise TemplateError(f"{path}:{begin}: with this block's stub the template is not valid "
                            f"Python ({error.msg}, line {line}): do the markers cut a statement "
                            "in two?") from None
    in_functions = {node.lineno for function in ast.walk(tree)
                    if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for node in ast.walk(function) if isinstance(node, ast.Raise)}
    for line, begin in stubs.items():
        if line not in in_functions:
            raise TemplateError(f"{path}:{begin}: this solution block is not inside a function, so "
                                "its stub would raise as soon as the template runs: mark the "
                                "body of a function")
    return _Template(path, source, tuple(stubs))


def _blocks(path: Path, source: str) -> list[tuple[int, int]]:
    """The (BEGIN line, END line) of each marked block, after checking that markers pair up."""
    lines = source.splitlines()
    blocks: list[tuple[int, int]] = []
    begin = None
    for row, col, text in _comments(source):
        if not _MARKER_LIKE.match(text):
            continue
        marker = _MARKER.fullmatch(text.rstrip())
        if marker is None or lines[row - 1][:col].strip():
            raise TemplateError(f"{path}:{row}: {text.strip()!r} is not a solution marker: write "
                                "### BEGIN SOLUTION or ### END SOLUTION alone on its line")
        if marker["kind"] == "BEGIN":
            if begin is not None:
                raise TemplateError(f"{path}:{row}: BEGIN SOLUTION inside the block opened on "
                                    f"line {begin}: blocks do not nest, close it first")
            begin = row
        elif begin is None:
            raise TemplateError(f"{path}:{row}: END SOLUTION without a BEGIN SOLUTION before it")
        else:
            blocks.append((begin, row))
            begin = None
    if begin is not None:
        raise TemplateError(f"{path}:{begin}: BEGIN SOLUTION is never closed by an END SOLUTION")
    if not blocks:
        raise TemplateError(f"{path}:1: no ### BEGIN SOLUTION / ### END SOLUTION block: the "
                            "template would hand out the whole answer")
    return blocks


def _comments(source: str) -> list[tuple[int, int, str]]:
    """(line, column, text) of every comment: markers inside strings are not markers."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(*token.start, token.string) for token in tokens if token.type == tokenize.COMMENT]


# -- notebooks ---------------------------------------------------------------------------


def _plain_cells(template: _Template, tree: ast.Module) -> list[nbformat.NotebookNode]:
    # Imports and helpers share the first cell; each function the students write, and the
    # self-check, start a cell of their own.
    lines = template.source.splitlines()
    docstring = ast.get_docstring(tree, clean=False)  # a module's: keep its indented blocks
    body = tree.body[1:] if docstring is not None else tree.body
    start = (tree.body[0].end_lineno or 0) if docstring is not None else 0
    chunks: list[list[str]] = [[]]
    for node in body:
        text = _trim(lines[start: node.end_lineno])
        start = node.end_lineno or start
        if _is_main_guard(node):
            text = _unwrap_main(text)
        if (_is_main_guard(node) or _writes(node, template.stubs)) and chunks[-1]:
            chunks.append([])
        chunks[-1].append(text)
    if trailing := _trim(lines[start:]):
        chunks[-1].append(trailing)
    students = [node.name for node in body if _writes(node, template.stubs)]  # type: ignore[attr-defined]
    check = any(_is_main_guard(node) for node in body)
    cells = [nbformat.v4.new_markdown_cell(_introduction(template.path, docstring, students, check))]
    return cells + [nbformat.v4.new_code_cell("\n\n".join(chunk)) for chunk in chunks if chunk]


def _percent_cells(template: _Template, tree: ast.Module) -> list[nbformat.NotebookNode]:
    lines = template.source.splitlines()
    bounds = [row for row, col, text in _comments(template.source) if col == 0 and _CELL.fullmatch(text)]
    cells = []
    docstring = ast.get_docstring(tree, clean=False)  # a module's: keep its indented blocks
    header_start = 0
    if docstring is not None:
        cells.append(nbformat.v4.new_markdown_cell(_markdown(docstring)))
        header_start = tree.body[0].end_lineno or 0
    if header := _trim(lines[header_start: bounds[0] - 1]):
        cells.append(nbformat.v4.new_code_cell(header))
    for row, end in zip(bounds, [*bounds[1:], len(lines) + 1]):
        kind = (_CELL.fullmatch(lines[row - 1])["rest"] or "").strip()
        text = _trim(lines[row: end - 1])
        if kind.endswith(("[markdown]", "[md]")):
            cells.append(nbformat.v4.new_markdown_cell(
                "\n".join(re.sub(r"^# ?", "", line) for line in text.splitlines())))
        elif kind.endswith("[raw]"):
            cells.append(nbformat.v4.new_raw_cell(text))
        else:
            cells.append(nbformat.v4.new_code_cell(_unwrap_main(text)))
    return cells


def _introduction(path: Path, docstring: str | None, students: list[str], check: bool) -> str:
    text = _markdown(docstring) if docstring else f"# {path.stem}"
    names = [f"`{name}`" for name in students]
    listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    if listed:
        text += f"\n\nWrite {listed} below" + (", then run the last cell to check your code." if check else ".")
    return text


def _markdown(docstring: str) -> str:
    heading, _, rest = docstring.strip("\n").partition("\n")
    heading = heading.strip()
    text = f"# {heading[:-1] if heading.endswith('.') else heading}"
    rest = _trim(rest.splitlines())
    return text + (f"\n\n{rest}" if rest else "")


def _writes(node: ast.stmt, stubs: tuple[int, ...]) -> bool:
    """Whether ``node`` is a function (or class) the students complete."""
    return (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and any(node.lineno <= line <= (node.end_lineno or 0) for line in stubs))


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and not node.orelse and isinstance(node.test, ast.Compare)
            and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"')


def _unwrap_main(code: str) -> str:
    """``code`` without its ``if __name__ == "__main__":`` line, dedented (in Jupyter it runs)."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return code
    if len(body) != 1 or not _is_main_guard(body[0]):
        return code
    guard = body[0]
    lines = code.splitlines()
    first = lines[guard.body[0].lineno - 1]  # type: ignore[attr-defined]
    indent = first[: len(first) - len(first.lstrip())]
    # Lines indented less than the body (blank ones, a multi-line string's) stay as they are.
    inner = [line[len(indent):] if line.startswith(indent) else line
             for line in lines[guard.test.end_lineno or guard.lineno:]]  # type: ignore[attr-defined]
    return _trim(lines[: guard.lineno - 1] + inner)


def _trim(lines: list[str]) -> str:
    """The lines joined, without the blank lines at either end."""
    kept = [index for index, line in enumerate(lines) if line.strip()]
    return "\n".join(lines[kept[0]: kept[-1] + 1]) if kept else ""


def _expected(course_dir: Path) -> dict[str, bytes]:
    """Every file the students get, by path in the templates' folder: the templates, and the
    course's support files (helpers the templates import, data they read) as they are."""
    solutions = _solutions(course_dir)
    if not solutions:
        raise TemplateError(f"{course_dir} holds no reference solution NAME.py")
    expected = {}
    for path in solutions:
        expected[f"{path.stem}.py"] = module_template(path).encode()
        expected[f"{path.stem}.ipynb"] = (nbformat.writes(notebook_template(path)) + "\n").encode()
    return {**_support_files(course_dir), **expected}


def _support_files(course_dir: Path) -> dict[str, bytes]:
    support = course_dir / "support"
    if not support.is_dir():
        return {}
    return {path.relative_to(support).as_posix(): path.read_bytes()
            for path in sorted(support.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts}


def _solutions(course_dir: Path) -> list[Path]:
    """The reference solutions: those of the assignments course.py declares, when it loads
    as a course (other modules of the folder, such as a script that makes example students,
    are not assignments); else every module but pytest files and private ones."""
    from .errors import InvalidArgument  # only here: the generator imports no course model

    if (course_dir / "course.py").is_file():
        from .courses import load_course

        try:
            return sorted(course_dir / f"{name}.py" for name in load_course(course_dir).names)
        except InvalidArgument:
            pass  # not (yet) a gradable course: its templates can still be made
    return sorted(path for path in course_dir.glob("*.py")
                  if path.name not in ("course.py", "conftest.py") and not path.name.startswith(("_", "test_"))
                  and not path.stem.endswith("_test"))


def _out_dir(course_dir: Path, out_dir: Path | str | None) -> Path:
    if out_dir is not None:
        if Path(out_dir).resolve() == course_dir.resolve():
            raise TemplateError(f"{out_dir} is the course folder: its templates would overwrite "
                                "the reference solutions; choose another --out")
        return Path(out_dir)
    bundled = course_dir.resolve() == _BUNDLED_COURSE.resolve()
    return _BUNDLED_OUT if bundled else course_dir / "templates"


if __name__ == "__main__":
    sys.exit(main())
