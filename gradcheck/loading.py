"""Turn a student's ``.py`` or ``.ipynb`` file into a namespace of functions.

This module runs student code: it is meant to be imported INSIDE the sandboxed child process
(see :mod:`gradcheck.isolation`), never in the grader. It also holds :func:`invoke`, the one
way a stored function is called and its failure described, shared by the child and by the
Jupyter kernel of ``--kernel`` mode.

Example:
    >>> from pathlib import Path
    >>> loaded = load_submission(Path("two_hidden.py"))  # doctest: +SKIP
    >>> sorted(name for name in loaded.namespace if not name.startswith("_"))  # doctest: +SKIP
    ['bprop', 'fprop', 'np', 'update']
"""

from __future__ import annotations

import __future__
import ast
import builtins
import contextlib
import difflib
import functools
import importlib.util
import inspect
import linecache
import math
import operator
import re
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LoadError",
    "Loaded",
    "Outcome",
    "defined_callables",
    "describe_exception",
    "invoke",
    "load_submission",
]

_MESSAGE_CHARS = 300
_CELL_FILE = re.compile(r"^(?P<notebook>.+\.ipynb) cell (?P<cell>\d+)$")
# Cell magics whose body is ordinary Python that defines things: run the body, skip the magic.
_NOT_STUDENT_NAMES = frozenset({"get_ipython", "display", "exit", "quit", "open", "In", "Out"})
_RUN_BODY_MAGICS = frozenset({"time", "capture", "prun", "timeit"})


class LoadError(Exception):
    """The submission could not be loaded; the message is one sentence for the student."""


@dataclass(frozen=True)
class Loaded:
    """A loaded submission.

    Attributes:
        namespace: The module's (or notebook's) global namespace.
        problems: Human-readable notes on what went wrong without stopping the load, e.g.
            ``"cell 4 raised FileNotFoundError: ... (the functions defined in other cells were
            kept)"`` or ``"cell 1: skipped magic %matplotlib inline"``.
    """

    namespace: dict[str, Any]
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What one call of a student function gave.

    Attributes:
        ok: The function returned (and ``pick``, if any, succeeded).
        value: The return value (or its ``pick`` entry, or None when only stored).
        error: One sentence for the student when not ok.
        seconds: Time spent in the call.
    """

    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


def load_submission(path: Path, *, cell_timeout: float | None = None,
                    budget: float | None = None) -> Loaded:
    """Execute a submission and return its namespace.

    A ``.py`` file runs as a module named after the file (not ``__main__``, so demo blocks
    under ``if __name__ == "__main__":`` do not run) with its folder on ``sys.path``. A
    ``.ipynb`` notebook runs cell by cell in one namespace; a cell that fails is recorded in
    ``problems`` and the next cell still runs, and IPython magics and shell commands are
    skipped (and recorded).

    Args:
        path: The ``.py`` or ``.ipynb`` file.
        cell_timeout: Seconds a notebook cell may run before it is stopped and reported
            (a training demo must not cost the whole notebook), and a module's import may
            take; None for no limit.
        budget: Seconds all of a notebook's cells may take together; the cells left when
            it runs out are not run (and reported). None for no limit.

    Returns:
        The namespace and the problems met.

    Raises:
        LoadError: The file is missing, empty, not valid Python / not a notebook, or (for a
            module) raised while being imported.
    """
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"{path.name} was not found")
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        # Helpers next to the submission (`import helpers`) must be importable.
        sys.path.insert(0, folder)
    if path.suffix == ".py":
        return _load_module(path, cell_timeout)
    if path.suffix == ".ipynb":
        return _load_notebook(path, cell_timeout, budget)
    raise LoadError(f"{path.name} is neither a .py module nor a .ipynb notebook")


def defined_callables(namespace: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the names of the functions (and other callables) a submission defined.

    Modules, private names and what IPython itself puts in a namespace are left out.
    """
    names = []
    for name, value in namespace.items():
        if name.startswith("_") or name in _NOT_STUDENT_NAMES:
            continue
        if callable(value) and not isinstance(value, types.ModuleType):
            names.append(name)
    return tuple(sorted(names))


def invoke(
    namespace: Mapping[str, Any],
    store: dict[str, Any],
    function: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    keep: str | None = None,
    pick: str | int | None = None,
) -> Outcome:
    """Call ``namespace[function](*args, **kwargs)`` and describe any failure.

    Args:
        namespace: Where the function is looked up.
        store: Values kept between calls; ``Ref`` arguments are looked up here.
        function: Name of the function.
        args: Positional arguments, possibly containing ``wire.Ref`` markers.
        kwargs: Keyword arguments, likewise.
        keep: Store the return value under this name.
        pick: Return only ``value[pick]`` (the value itself may stay in the child).

    Returns:
        The outcome; never raises for anything the student's code does.
    """
    target = namespace.get(function)
    if target is None:
        return Outcome(False, error=_not_defined(namespace, function))
    if not callable(target):
        return Outcome(False, error=f"{function} is a {_type_name(target)}, not a function")
    try:
        args, kwargs = _resolve(args, store), _resolve(dict(kwargs), store)
    except LookupError as exc:
        return Outcome(False, error=str(exc.args[0]))
    started = time.perf_counter()
    try:
        value = target(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and friends are student errors too
        seconds = time.perf_counter() - started
        try:
            error = _call_failure(namespace, function, exc)
        except BaseException:  # noqa: BLE001 - its repr, traceback or attributes may raise too
            error = f"{function} raised {_type_name(exc)}"
        try:
            error += (_missing_key_hint(function, exc, args)
                      + _signature_hint(function, target, exc, args, kwargs))
        except BaseException:  # noqa: BLE001 - the hints are extras: a hostile exception loses them
            pass
        return Outcome(False, error=error, seconds=seconds)
    seconds = time.perf_counter() - started
    if keep is not None:
        store[keep] = value
    if pick is None:
        return Outcome(True, None if keep is not None else value, seconds=seconds)
    return _pick(function, value, pick, seconds)


def describe_exception(exc: BaseException) -> str:
    """Describe an exception in one phrase, pointing at the student's line when possible.

    Returns text such as ``"raised ValueError: shapes (2,3) and (2,3) not aligned (line 14 of
    two_hidden.py)"`` or ``"called sys.exit(0)"``.
    """
    try:
        return _describe_exception(exc)
    except BaseException:  # noqa: BLE001 - a __class__ property, say, that raises
        return f"raised {_type_name(exc)}"


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        try:
            code = repr(exc.code)
            code = str.__str__(code) if isinstance(code, str) else "..."
        except BaseException:  # noqa: BLE001 - sys.exit(obj) with a repr that raises
            code = "..."
        return f"called sys.exit({_short(code)})"
    try:
        where = _student_location(exc)
    except BaseException:  # noqa: BLE001 - a student's exception may fake its traceback
        where = None
    if _is_unanswered_input(exc):
        # Plain mode's closed stdin and the kernel's refusal, told as one cause with its fix.
        text = ("called input(), which gets no answer while grading (nobody is at the "
                "keyboard): remove the call, or give the value in the code")
        return text + (f" ({where})" if where else "")
    message = _short(_safe_str(exc))
    text = f"raised {_type_name(exc)}" + (f": {message}" if message else "")
    return text + (f" ({where})" if where else "")


def _is_unanswered_input(exc: BaseException) -> bool:
    if _type_name(exc) == "StdinNotImplementedError":  # ipykernel's, for input()
        return True
    return type(exc) is EOFError and _safe_str(exc) == "EOF when reading a line"


def _pick(function: str, value: Any, pick: str | int, seconds: float) -> Outcome:
    if isinstance(pick, int):
        return _pick_item(function, value, pick, seconds)
    if not isinstance(value, Mapping):
        error = f"{function} returned a {_type_name(value)}, not a dict with {pick!r}"
        if isinstance(value, (tuple, list)):
            # `return loss, cache`: the contract's cache is one dict holding the loss.
            error = (f"{function} returned a {_type_name(value)} of {len(value)} items, not "
                     f"a dict with {pick!r}: return one dict (the cache) with the {pick} "
                     f"stored in it, cache[{pick!r}] = {pick}")
        return Outcome(False, error=error, seconds=seconds)
    try:
        return Outcome(True, value[pick], seconds=seconds)
    except BaseException:  # noqa: BLE001 - a student's Mapping may raise anything
        return Outcome(False, error=f"{function} returned a dict without {pick!r}", seconds=seconds)


def _pick_item(function: str, value: Any, index: int, seconds: float) -> Outcome:
    # A layer's forward returns (out, cache): the grader wants out, the cache stays here.
    if not isinstance(value, (tuple, list)) or len(value) < 2:
        return Outcome(False, error=(f"{function} returned a {_type_name(value)}, not a "
                                     "tuple (out, cache)"), seconds=seconds)
    return Outcome(True, value[index], seconds=seconds)


def _resolve(value: Any, store: Mapping[str, Any]) -> Any:
    # Imported lazily: the kernel side imports this module without needing numpy first.
    from gradcheck.wire import Ref

    if isinstance(value, Ref):
        if value.name not in store:
            raise LookupError(f"no value is stored under {value.name!r}")
        stored = store[value.name]
        if value.item is None:
            return stored
        try:
            return stored[value.item]
        except BaseException:  # noqa: BLE001 - a student's container may raise anything
            raise LookupError(f"the value stored under {value.name!r} has no item "
                              f"{value.item} (a {_type_name(stored)})") from None
    if isinstance(value, tuple):
        return tuple(_resolve(item, store) for item in value)
    if isinstance(value, list):
        return [_resolve(item, store) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item, store) for key, item in value.items()}
    return value


def nudged(args: list[Any], nudge: list[Any]) -> tuple[Any, ...]:
    """A fresh copy of ``args`` with one array entry set: ``(position, key, index, value)``.

    The grader's finite differences of a large input send the input once and these nudges;
    each call gets its own copy, because the student's code may change its inputs in place.
    """
    import copy

    position, key, index, value = nudge
    fresh = copy.deepcopy(args)
    target = fresh[position] if key is None else fresh[position][key]
    target.flat[index] = value
    return tuple(fresh)


def _not_defined(namespace: Mapping[str, Any], function: str) -> str:
    root = namespace.get(_UNDEFINED, {}).get(function)
    if root is None:
        return f"{function} is not defined"
    return f"{function} is not defined because {root.cause} before defining it"


def _call_failure(namespace: Mapping[str, Any], function: str, exc: BaseException) -> str:
    root = _root_cause(namespace, exc)
    if root is None:
        return f"{function} {describe_exception(exc)}"
    where = _student_location(exc)
    name = getattr(exc, "name", "")
    text = f"{function} raised NameError: {root.cause}, so `{name}` is undefined"
    return text + (f" ({where})" if where else "")


def _signature_hint(function: str, target: Callable[..., Any], exc: BaseException,
                    args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    """Say how the grader calls a function whose parameters do not fit the call."""
    # Raised while binding the arguments (no frame of the function's own): the signature.
    if type(exc) is not TypeError or exc.__traceback__ is None or exc.__traceback__.tb_next:
        return ""
    try:
        yours = f"{function}{inspect.signature(target)}"
    except (TypeError, ValueError):
        return ""
    count = len(args)
    given = f"{count} positional argument{'s' if count != 1 else ''}" + (
        f" and {_join([repr(key) for key in kwargs])}" if kwargs else "")
    return (f"; the grader calls {function} with {given}, as the assignment defines it, and "
            f"yours is {yours}")


def _missing_key_hint(function: str, exc: BaseException, args: tuple[Any, ...]) -> str:
    """Name the dict argument a KeyError is about, and its keys: ``"; the cache ..."``.

    The usual cause is a cache that fprop filled under other names than bprop reads
    (``cache["A1"] = a1``, then ``cache["a1"]``): the keys it does have say so at once.
    """
    if type(exc) is not KeyError or len(exc.args) != 1 or not isinstance(exc.args[0], str):
        return ""
    key = exc.args[0]
    for value in args:
        if isinstance(value, dict) and key not in value and value:
            keys = [name for name in value if isinstance(name, str)]
            if not keys or len(keys) != len(value):
                return ""
            shown = ", ".join(repr(name) for name in keys[:12]) + (", ..." if len(keys) > 12 else "")
            given = "the cache your fprop returned" if function == "bprop" else "its dict argument"
            text = f"; {given} has no key {key!r}, only {shown}"
            close = [name for name in keys if name.lower() == key.lower()]
            close = close or difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
            return text + (f" (did you mean {close[0]!r}?)" if close else "")
    return ""


def _student_location(exc: BaseException) -> str | None:
    # The innermost frame in a notebook cell or in a file the student wrote is the useful one.
    last = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if _CELL_FILE.match(frame.filename) or _is_student_file(frame.filename):
            last = frame
    if last is None:
        return None
    cell = _CELL_FILE.match(last.filename)
    if cell:
        return f"cell {cell['cell']}, line {last.lineno} of {cell['notebook']}"
    return f"line {last.lineno} of {Path(last.filename).name}"


def _is_student_file(filename: str) -> bool:
    # Student files are those in the folders the loader put on sys.path (the scratch copy),
    # but for gradcheck itself, which a kernel imports through a link in that copy.
    if filename.startswith(_OWN_PACKAGE):
        return False
    return any(filename.startswith(root + "/") for root in _STUDENT_ROOTS)


_OWN_PACKAGE = str(Path(__file__).parent) + "/"


_STUDENT_ROOTS: list[str] = []


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
        # A str subclass's methods (split, __len__...) are the student's: keep a plain copy.
        return str.__str__(text) if isinstance(text, str) else ""
    except BaseException:  # noqa: BLE001 - a student's __str__ may raise
        return ""


def _type_name(value: object) -> str:
    """The name of ``value``'s class, read past any metaclass the student wrote.

    ``type(value).__name__`` runs a metaclass's ``__getattribute__``, which may raise
    anything: the child's request loop would then die, and the student read that the process
    "exited with status 0".
    """
    try:
        name = type.__getattribute__(type(value), "__name__")
        return str.__str__(name) if isinstance(name, str) else "object"
    except BaseException:  # noqa: BLE001
        return "object"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


# --- modules -------------------------------------------------------------------------------


def _load_module(path: Path, timeout: float | None = None) -> Loaded:
    source = _read_source(path)
    code = _compile(source, str(path.resolve()), f"{path.name} has a syntax error")
    module = types.ModuleType(path.stem)
    module.__file__ = str(path.resolve())
    _STUDENT_ROOTS.append(str(path.resolve().parent))
    # Registered like a real import (so pickling, dataclasses and `import self` work), but
    # never over a module the child already uses (a student's `copy.py` must not shadow copy).
    registered = path.stem not in sys.modules
    if registered:
        sys.modules[path.stem] = module
    shell = _exported_notebook_shell(source, module)
    try:
        with _time_limit(timeout, str(path.resolve())):
            exec(code, module.__dict__)
    except BaseException as exc:  # noqa: BLE001 - an import-time sys.exit is a failure too
        if registered:
            sys.modules.pop(path.stem, None)
        hint = _main_guard_hint(module)
        if isinstance(exc, CellTimeout):
            raise LoadError(f"loading {path.name} did not finish within {timeout:g} s"
                            + hint) from None
        raise LoadError(f"importing {path.name} {describe_exception(exc)}{hint}") from None
    return Loaded(module.__dict__, tuple(shell.take_notes()) if shell else ())


def _main_guard_hint(module: types.ModuleType) -> str:
    # Functions were defined before the failure: what failed is demo or training code that
    # runs on import, as a notebook's cells would (the grader imports, it never runs, a .py).
    own = [value for value in vars(module).values()
           if isinstance(value, types.FunctionType) and value.__module__ == module.__name__]
    if not own:
        return ""
    return ("; the grader imports your file, which runs its top-level code: put demo and "
            'training code under `if __name__ == "__main__":`')


def _exported_notebook_shell(source: str, module: types.ModuleType) -> _ShellStub | None:
    # A notebook saved as .py ("Download as Python", nbconvert --to script) keeps its magics
    # as get_ipython().run_line_magic('matplotlib', 'inline') and .system('pip ...'): they
    # are skipped and noted, as in the notebook, instead of failing the import.
    if "get_ipython()" not in source:
        return None
    shell = _ShellStub()
    shell.where, shell.user_ns = Path(module.__file__ or "").name, module.__dict__
    module.__dict__["get_ipython"] = lambda: shell
    return shell


def _read_source(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise LoadError(f"{path.name} is empty")
    try:
        return importlib.util.decode_source(raw)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        raise LoadError(f"{path.name} is not readable Python text: {_short(str(exc))}") from None


def _compile(source: str, filename: str, what: str) -> types.CodeType:
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise LoadError(_syntax_error_message(what, exc)) from None
    except ValueError as exc:  # null bytes in the source
        raise LoadError(f"{what}: {exc}") from None


def _syntax_error_message(what: str, exc: SyntaxError) -> str:
    """Describe a syntax error, saying when the line looks valid in a newer Python.

    Returns text such as ``"cell 5 has a syntax error on line 3: invalid syntax; this code
    may need Python 3.12 or newer (the grader runs Python 3.11)"``.
    """
    text = f"{what} on line {exc.lineno}: {exc.msg}"
    needed = _newer_python_needed(exc)
    if needed is None:
        return text
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (text + f"; this code may need Python {needed[0]}.{needed[1]} or newer "
            f"(the grader runs Python {running})")


# Syntax that a newer Python accepts, recognised on the line a SyntaxError points at (or by
# the older compiler's message). Heuristics, hence "may need" in the message.
_FSTRING_OPEN = r"(?<![\w'\"])[rR]?[fF][rR]?"
_NEWER_SYNTAX: tuple[tuple[tuple[int, int], re.Pattern[str]], ...] = (
    ((3, 10), re.compile(r"^\s*match\s+[^=]+:\s*(#.*)?$")),  # structural pattern matching
    ((3, 10), re.compile(r"^\s*case\s+.+:\s*(#.*)?$")),
    ((3, 11), re.compile(r"^\s*except\s*\*")),  # exception groups
    ((3, 12), re.compile(r"^\s*type\s+[A-Za-z_]\w*\s*(\[.*\])?\s*=")),  # PEP 695 alias
    ((3, 12), re.compile(r"^\s*(async\s+)?(def|class)\s+[A-Za-z_]\w*\s*\[")),  # PEP 695 generics
    # PEP 701: the f-string's own quote inside its braces: f"{row["loss"]}"
    ((3, 12), re.compile(_FSTRING_OPEN + r"""(?P<q>['"])[^'"\n]*\{[^}'"\n]*(?P=q)""")),
    ((3, 14), re.compile(r"^\s*except\s+[^\s(:*][^:()]*,[^:()]*:")),  # PEP 758 except A, B:
    ((3, 14), re.compile(r"""(?<![\w'"])[tT][rR]?['"]""")),  # PEP 750 template strings
)
_NEWER_SYNTAX_MESSAGES: tuple[tuple[tuple[int, int], str], ...] = (
    ((3, 12), "f-string expression part cannot include a backslash"),
    ((3, 12), "f-string expression part cannot include '#'"),
    ((3, 14), "multiple exception types must be parenthesized"),
)


def _newer_python_needed(exc: SyntaxError) -> tuple[int, int] | None:
    line, message = exc.text or "", exc.msg or ""
    found = [version for version, pattern in _NEWER_SYNTAX if pattern.search(line)]
    found += [version for version, text in _NEWER_SYNTAX_MESSAGES if text in message]
    newer = [version for version in found if sys.version_info[:2] < version]
    return min(newer) if newer else None


# --- notebooks ------------------------------------------------------------------------------


def _load_notebook(path: Path, cell_timeout: float | None = None,
                   budget: float | None = None) -> Loaded:
    cells = _code_cells(path)
    _STUDENT_ROOTS.append(str(path.resolve().parent))
    shell = _ShellStub()
    namespace: dict[str, Any] = {
        # As in Jupyter, where every cell runs in __main__: functions a student defined
        # under `if __name__ == "__main__":` exist, and a slow demo there is stopped by the
        # cell time limit like any other cell.
        "__name__": "__main__",
        "__file__": str(path.resolve()),
        "__builtins__": builtins,
        "get_ipython": lambda: shell,
        "display": _display,
    }
    shell.user_ns = namespace
    log = _CellLog(path.name, namespace)
    transform, compiler = _transformer(), _CellCompiler()
    started = time.monotonic()
    for index, (number, source) in enumerate(cells):
        left = None if budget is None else budget - (time.monotonic() - started)
        if left is not None and left <= 0:
            log.not_run(cells[index:], budget or 0.0)
            break
        limit = cell_timeout if left is None else min(cell_timeout or left, left)
        shell.where = f"cell {number}"
        _run_cell(path.name, number, transform(source, shell), log, compiler, limit)
        log.notes(shell.take_notes())
    return Loaded(namespace, log.problems())


def _code_cells(path: Path) -> list[tuple[int, str]]:
    """Return (1-based position among all cells, source) for each non-empty code cell."""
    import nbformat

    try:
        notebook = nbformat.read(str(path), as_version=4)
        cells = [
            (number, _cell_source(cell))
            for number, cell in enumerate(notebook.cells, start=1)
            if cell.get("cell_type") == "code"
        ]
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds on bad input
        detail = _short(f"{type(exc).__name__}: {exc}")
        raise LoadError(f"{path.name} is not a valid Jupyter notebook: {detail}") from None
    if not cells:
        raise LoadError(f"{path.name} has no code cells")
    cells = [(number, source) for number, source in cells if source.strip()]
    if not cells:
        raise LoadError(f"{path.name} has only empty code cells")
    return cells


def _cell_source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _run_cell(
    notebook: str, number: int, source: str, log: _CellLog, compiler: _CellCompiler,
    timeout: float | None = None,
) -> None:
    filename = f"{notebook} cell {number}"
    # Registered so that tracebacks (and the student's own) can show the cell's lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        code = compiler(source, filename)
    except (SyntaxError, ValueError) as exc:  # ValueError: null bytes in the source
        log.unparsable(number, exc)
        return
    try:
        with _time_limit(timeout, filename):
            exec(code, log.namespace)
    except CellTimeout:
        log.stopped(number, source, timeout or 0.0)
    except BaseException as exc:  # noqa: BLE001 - one failing demo cell must not stop the load
        log.failed(number, source, exc)


# Every compiler flag a `from __future__ import` can set (IPython's PyCF_MASK).
_FUTURE_FLAGS = functools.reduce(
    operator.or_, (getattr(__future__, name).compiler_flag for name in __future__.all_feature_names)
)


class _CellCompiler:
    """Compile notebook cells as IPython does with ``from __future__`` imports.

    IPython compiles a cell statement by statement, so a future import below a magic or
    another statement works there, and its flag holds in every later cell.
    """

    def __init__(self) -> None:
        self.flags = 0

    def __call__(self, source: str, filename: str) -> types.CodeType:
        tree = ast.parse(source, filename)
        futures = [node for node in tree.body if _is_future_import(node)]
        # Moved first (line numbers kept): the only place the compiler accepts them.
        tree.body = futures + [node for node in tree.body if not _is_future_import(node)]
        code = compile(tree, filename, "exec", flags=self.flags, dont_inherit=True)
        self.flags |= code.co_flags & _FUTURE_FLAGS
        return code


def _is_future_import(node: ast.stmt) -> bool:
    return isinstance(node, ast.ImportFrom) and node.module == "__future__"


_UNDEFINED = "__gradcheck_undefined__"
_KEPT = " (the functions defined in other cells were kept)"


@dataclass
class _FailedCell:
    """A cell that stopped early, and what went missing because of it."""

    number: int
    what: str
    """How it failed, after "cell N": ``"raised KeyError: 'a' (cell 2, line 3 of nb.ipynb)"``."""
    cause: str
    """The root cause in brief: ``"cell 2 failed (ModuleNotFoundError: No module named 'u')"``."""
    tripped: list[str] = field(default_factory=list)
    """Undefined names that later cells stumbled on."""
    functions: list[str] = field(default_factory=list)
    """Functions and classes the cell (or a cell failing because of it) never defined."""
    followers: list[int] = field(default_factory=list)
    """Later cells that failed only because of this one."""

    def problem(self, namespace: Mapping[str, Any]) -> str:
        missing = _unique(self.tripped + [f for f in self.functions if f not in namespace])
        if not missing:
            return f"cell {self.number} {self.what}{_KEPT}"
        names = _join([f"`{name}`" for name in missing])
        verb = "is" if len(missing) == 1 else "are"
        text = f"cell {self.number} {self.what}, so {names} {verb} undefined"
        if self.followers:
            cells = "cell" if len(self.followers) == 1 else "cells"
            text += f" and {cells} {_join([str(n) for n in self.followers])} failed too"
        return text + _KEPT


class _CellLog:
    """The problems of a notebook's cells, a cascade of NameErrors told as its root cause.

    A cell that fails (a missing helper module, a data file) leaves the names it would have
    bound undefined; later cells and the grader's calls then fail with NameErrors that say
    nothing of why. Those names are mapped to the failed cell in ``namespace[_UNDEFINED]``,
    where :func:`invoke` looks too.
    """

    def __init__(self, notebook: str, namespace: dict[str, Any]) -> None:
        self.notebook = notebook
        self.namespace = namespace
        self._undefined: dict[str, _FailedCell] = namespace.setdefault(_UNDEFINED, {})
        self._entries: list[str | _FailedCell] = []

    def notes(self, texts: list[str]) -> None:
        self._entries.extend(texts)

    def failed(self, number: int, source: str, exc: BaseException) -> None:
        root = _root_cause(self.namespace, exc)
        if root is None:
            message = _short(_safe_str(exc))
            cause = f"cell {number} failed ({_type_name(exc)}" + (
                f": {message})" if message else ")")
            self._new_root(number, source, describe_exception(exc), cause)
            return
        root.tripped.append(str(getattr(exc, "name", "")))
        root.followers.append(number)
        self._leave_undefined(root, source)

    def unparsable(self, number: int, exc: SyntaxError | ValueError) -> None:
        what = f"cell {number} has a syntax error"
        if isinstance(exc, SyntaxError):
            what = _syntax_error_message(what, exc)
        else:
            what = f"{what}: {exc}"
        self._entries.append(f"{what} (the cell was skipped)")

    def stopped(self, number: int, source: str, seconds: float) -> None:
        seconds = round(seconds, 1)  # (a cell cut short by the notebook's budget: any float)
        what = f"ran for more than {seconds:g} s and was stopped"
        self._new_root(number, source, what, f"cell {number} was stopped after {seconds:g} s")

    def not_run(self, cells: list[tuple[int, str]], seconds: float) -> None:
        """The cells left when the notebook's time to load ran out: one cause for them all."""
        after = len(cells) - 1
        what = ("was not run" + (f", nor the {after} cell{'s' if after > 1 else ''} after it"
                                 if after else "")
                + f": the cells before took {seconds:.0f} s, all the time a notebook gets "
                "to load (shorten the training demos, or put them after the graded functions)")
        root = _FailedCell(cells[0][0], what, f"cell {cells[0][0]} was not run (the "
                                                 "notebook ran out of time)")
        self._entries.append(root)
        for _, source in cells:
            self._leave_undefined(root, source)

    def problems(self) -> tuple[str, ...]:
        return tuple(entry if isinstance(entry, str) else entry.problem(self.namespace)
                     for entry in self._entries)

    def _new_root(self, number: int, source: str, what: str, cause: str) -> None:
        root = _FailedCell(number, what, cause)
        self._entries.append(root)
        self._leave_undefined(root, source)

    def _leave_undefined(self, root: _FailedCell, source: str) -> None:
        tree = _parse_quietly(source)
        for name in _bound_names(tree) - self.namespace.keys():
            self._undefined[name] = root
        root.functions += [name for name in _defined_functions(tree) if name not in self.namespace]


def _root_cause(namespace: Mapping[str, Any], exc: BaseException) -> _FailedCell | None:
    """The failed cell that left undefined the name this NameError is about, if any."""
    name = getattr(exc, "name", None)
    if type(exc) is not NameError or not isinstance(name, str) or name in namespace:
        return None
    return namespace.get(_UNDEFINED, {}).get(name)


def _parse_quietly(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return ast.Module(body=[], type_ignores=[])


_OWN_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp,
               ast.SetComp, ast.DictComp, ast.GeneratorExp)
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _cell_scope(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes that run in the notebook's namespace (not inside a function, class, ...)."""
    for node in ast.iter_child_nodes(tree):
        yield node
        if not isinstance(node, _OWN_SCOPES):
            yield from _cell_scope(node)


def _bound_names(tree: ast.AST) -> set[str]:
    """Names a cell binds in the notebook's namespace."""
    names: set[str] = set()
    for node in _cell_scope(tree):
        if isinstance(node, _DEFINITIONS):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0]
                         for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _defined_functions(tree: ast.AST) -> list[str]:
    return [node.name for node in _cell_scope(tree) if isinstance(node, _DEFINITIONS)]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _join(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_REINTERRUPT_SECONDS = 0.05


class CellTimeout(BaseException):
    """Raised inside a notebook cell that ran past its time limit."""


@contextlib.contextmanager
def _time_limit(seconds: float | None, code_name: str) -> Iterator[None]:
    """Stop the student code compiled as ``code_name`` after ``seconds`` (see :class:`_CellAlarm`)."""
    alarm = _CellAlarm(seconds, lambda name: name == code_name)
    alarm.arm()
    try:
        yield
    finally:
        alarm.disarm()


class _CellAlarm:
    """Raise CellTimeout in a cell (or a module's top level) that runs past its time limit.

    SIGALRM interrupts the cell where it is. A loop whose bare ``except:`` swallows that
    (``while True: try: ... except: pass``) is interrupted again 50 ms later, and this time
    every line of student code raises too, so the handler that caught it raises once more
    and the loop is left. Only student code is interrupted: a signal that finds none on the
    stack (the cell has just ended) is ignored. The sandbox's limit on the whole load holds
    in any case.
    """

    def __init__(self, seconds: float | None, is_student: Callable[[str], bool]) -> None:
        self.seconds = seconds
        self.is_student = is_student  # by the file name the code was compiled under
        self._previous: Any = None
        self._armed = self._swallowed = False

    def arm(self) -> None:
        if not self.seconds or threading.current_thread() is not threading.main_thread():
            return  # signals reach only the main thread
        self._swallowed = False
        self._previous = signal.signal(signal.SIGALRM, self._interrupt)
        signal.setitimer(signal.ITIMER_REAL, self.seconds, _REINTERRUPT_SECONDS)
        self._armed = True

    def disarm(self) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            sys.settrace(None)
            signal.signal(signal.SIGALRM, self._previous)
            self._armed = False

    def _interrupt(self, _signum: int, frame: types.FrameType | None) -> None:
        student = self._student_frames(frame)
        if not student:
            return
        if self._swallowed:
            self._raise_on_every_line(student)
        self._swallowed = True
        raise CellTimeout

    def _student_frames(self, frame: types.FrameType | None) -> list[types.FrameType]:
        """The frames from ``frame`` out to the outermost one of student code (none: [])."""
        chain = []
        while frame is not None:
            chain.append(frame)
            frame = frame.f_back
        outermost = max((i for i, f in enumerate(chain) if self.is_student(f.f_code.co_filename)),
                        default=-1)
        return chain[:outermost + 1]

    def _raise_on_every_line(self, frames: list[types.FrameType]) -> None:
        # Python drops a trace function that raises: this holds until the first line raises,
        # and the next interruption sets it again.
        def on_line(_frame: types.FrameType, event: str, _arg: object) -> Any:
            if event == "line":
                raise CellTimeout
            return on_line

        def on_call(called: types.FrameType, _event: str, _arg: object) -> Any:
            return on_line if self._student_frames(called) else None

        sys.settrace(on_call)
        for frame in frames:
            frame.f_trace = on_line


def _transformer() -> Callable[[str, _ShellStub], str]:
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return _comment_out_magics
    manager = TransformerManager()

    def transform(source: str, shell: _ShellStub) -> str:
        try:
            return manager.transform_cell(source)
        except Exception:  # noqa: BLE001 - fall back on odd input; compile will report it
            return _comment_out_magics(source, shell)

    return transform


def _comment_out_magics(source: str, shell: _ShellStub) -> str:
    """Without IPython: comment out ``%`` / ``!`` lines, and whole ``%%`` cells."""
    if source.lstrip().startswith("%%"):
        shell.note(f"skipped cell magic {source.lstrip().splitlines()[0]}")
        return "\n".join("# " + line for line in source.splitlines())
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            kind = "magic" if stripped.startswith("%") else "shell command"
            shell.note(f"skipped {kind} {stripped}")
            line = line[: len(line) - len(stripped)] + "pass  # " + stripped
        lines.append(line)
    return "\n".join(lines)


def _script_source(path: Path, shell: _ShellStub) -> str:
    """The Python of a file that ``%run`` runs: a module, or a notebook's code cells."""
    if path.suffix == ".py":
        return importlib.util.decode_source(path.read_bytes())
    transform = _transformer()
    return "\n".join(transform(source, shell) for _, source in _code_cells(path))


def _display(*objects: Any, **_kwargs: Any) -> None:
    """Stand-in for IPython's ``display``: print the objects' reprs."""
    for obj in objects:
        print(repr(obj))


class _ShellStub:
    """Stand-in for ``get_ipython()``: magics and shell commands do nothing and are noted."""

    def __init__(self) -> None:
        self.where = ""
        """What a note is about: ``"cell 3"``, or the file of a module exported by Jupyter."""
        self.user_ns: dict[str, Any] = {}
        self._notes: list[str] = []

    def note(self, text: str) -> None:
        self._notes.append(f"{self.where}: {_short(text)}")

    def take_notes(self) -> list[str]:
        notes, self._notes = self._notes, []
        return notes

    def run_line_magic(self, name: str, line: str, *_args: Any, **_kwargs: Any) -> None:
        if name == "pylab":
            self._pylab(line)
        elif name == "run":
            self._run(line)
        else:
            self.note(f"skipped magic %{name} {line}".rstrip())

    def _pylab(self, line: str) -> None:
        # What IPython's import_pylab does, on the non-interactive Agg backend (plots are
        # drawn and discarded); old course notebooks rely on its bare names (linspace, plot).
        star = "--no-import-all" not in line.split()
        exec("import numpy\nnp = numpy\n", self.user_ns)
        try:
            import matplotlib
        except ImportError:
            self.note("%pylab gave the numpy names only: matplotlib is not installed")
            if star:
                exec("from numpy import *\n", self.user_ns)
            return
        matplotlib.use("Agg")
        exec("import matplotlib\nfrom matplotlib import pylab, mlab, pyplot\nplt = pyplot\n",
             self.user_ns)
        if star:
            exec("from matplotlib.pylab import *\nfrom numpy import *\n", self.user_ns)

    def _run(self, line: str) -> None:
        # %run helpers.py, as IPython runs it: as __main__ in a namespace of its own whose
        # names are then copied into the notebook's (-i: in the notebook's namespace itself).
        words = line.split()
        targets = [word for word in words if not word.startswith("-")]
        if not targets or not targets[0].endswith((".py", ".ipynb")):
            self.note(f"skipped magic %run {line}".rstrip())
            return
        path = Path(targets[0])
        if not path.is_file():
            self.note(f"%run {targets[0]}: {targets[0]} was not found (submit it next to "
                      "the notebook)")
            return
        source = _script_source(path, self)
        namespace = self.user_ns if "-i" in words else {
            "__name__": "__main__", "__file__": str(path.resolve()), "__builtins__": builtins,
            "get_ipython": lambda: self}
        exec(compile(source, str(path.resolve()), "exec"), namespace)
        if namespace is not self.user_ns:
            self.user_ns.update({key: value for key, value in namespace.items()
                                 if not key.startswith("__")})

    def run_cell_magic(self, name: str, line: str, cell: str, *_args: Any, **_kw: Any) -> None:
        if name in _RUN_BODY_MAGICS:
            self.note(f"ran the body of cell magic %%{name} without the magic")
            # The body is a cell of its own to IPython: `%%capture` over `!pip install ...`
            # is how Colab notebooks quieten their installs.
            body = _transformer()(cell, self)
            exec(compile(body, f"<%%{name} body>", "exec"), self.user_ns)
        elif name == "writefile":
            self._writefile(line, cell)
        else:
            self.note(f"skipped cell magic %%{name} {line}".rstrip())

    def _writefile(self, line: str, cell: str) -> None:
        words = line.split()
        append = "-a" in words or "--append" in words
        targets = [word for word in words if not word.startswith("-")]
        if not targets:
            self.note("skipped %%writefile without a file name")
            return
        with open(targets[0], "a" if append else "w", encoding="utf-8") as handle:
            handle.write(cell)

    def system(self, command: str, *_args: Any, **_kwargs: Any) -> None:
        self.note(f"skipped shell command !{command}")

    def getoutput(self, command: str, *_args: Any, **_kwargs: Any) -> list[str]:
        self.note(f"skipped shell command !{command}")
        return []

    def magic(self, line: str) -> None:
        self.note(f"skipped magic %{line}")

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("__"):
            raise AttributeError(name)

        def ignored(*_args: Any, **_kwargs: Any) -> None:
            self.note(f"skipped get_ipython().{name}(...)")

        return ignored


# --- kernel mode ----------------------------------------------------------------------------

_KERNEL_CALL = """\
def __gradcheck_call(request, reply):
    import pathlib
    from gradcheck import loading, wire
    o = loading._kernel_request(globals(), wire.decode(pathlib.Path(request).read_bytes()))
    answer = {"ok": o.ok, "value": o.value, "error": o.error, "seconds": o.seconds}
    pathlib.Path(reply).write_bytes(wire.encode(answer))
__gradcheck_call(%r, %r)
del __gradcheck_call
"""
_KERNEL_LOG = "__gradcheck_log__"
_KERNEL_STORE = "__gradcheck_store__"
# The reply nbclient gives for a cell it interrupted after the per-cell time limit.
_TIMED_OUT = {"ename": "CellTimeout", "evalue": "", "traceback": []}
_KERNEL_GRACE_SECONDS = 2.0


class KernelSession:
    """A notebook executed in a real Jupyter kernel, whose functions can then be called.

    Arguments and results travel through files in the notebook's (scratch) folder, encoded
    with :mod:`gradcheck.wire`; a small trusted snippet run in the kernel decodes them and
    answers through :func:`_kernel_request` (a call goes through :func:`invoke`).

    Attributes:
        names: The callables the notebook defined.
        problems: What went wrong in the cells, worded as in plain mode.
    """

    def __init__(self, client: Any, folder: Path, names: tuple[str, ...], problems: tuple[str, ...]):
        self._client = client
        self._folder = folder
        self._calls = 0
        # nbclient stores every cell it ran back into its notebook at the index given; the
        # snippets' own index keeps the student's cells as they were.
        client.nb.cells.append(_new_code_cell(""))
        self._scratch = len(client.nb.cells) - 1
        self.names = names
        self.problems = problems

    def call(
        self,
        function: str,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        keep: str | None = None,
        pick: str | int | None = None,
    ) -> Outcome:
        """Call a function defined in the kernel (see :func:`invoke` for the arguments)."""
        return self._ask({"op": "call", "function": function, "args": list(args),
                          "kwargs": dict(kwargs), "keep": keep, "pick": pick}, function)

    def close(self) -> None:
        """Shut the kernel down."""
        try:
            self._client._cleanup_kernel()
        except Exception:  # noqa: BLE001 - the sandbox kills the kernel's process tree anyway
            pass

    def _ask(self, message: dict[str, Any], what: str) -> Outcome:
        from gradcheck import wire

        self._calls += 1
        request = self._folder / f".gradcheck-call-{self._calls}.in"
        reply = self._folder / f".gradcheck-call-{self._calls}.out"
        request.write_bytes(wire.encode(message, strict=True))
        cell = _new_code_cell(_KERNEL_CALL % (str(request), str(reply)))
        with _quiet_warnings():
            self._client.execute_cell(cell, self._scratch, store_history=False)
        request.unlink(missing_ok=True)
        if not reply.is_file():
            errors = _cell_errors(cell)
            return Outcome(False, error=f"{what} could not be called in the kernel: {errors}")
        answer = wire.decode(reply.read_bytes())
        reply.unlink(missing_ok=True)
        return Outcome(answer["ok"], answer["value"], answer["error"], answer["seconds"])

    def _run_cells(self, notebook: Any, numbers: set[int], timeout: float | None,
                   budget: float | None = None) -> None:
        started = time.monotonic()
        todo = [(index, cell) for index, cell in enumerate(notebook.cells) if index + 1 in numbers]
        for position, (index, cell) in enumerate(todo):
            left = None if budget is None else budget - (time.monotonic() - started)
            if left is not None and left <= 0:
                cells = [[i + 1, _cell_source(c)] for i, c in todo[position:]]
                self._ask({"op": "not_run", "cells": cells, "seconds": budget}, "the notebook")
                return
            if left is not None and (timeout is None or left < timeout):
                timeout = float(math.ceil(left))  # nbclient's timeout: whole seconds
            self._run_cell(cell, index, timeout)

    def _run_cell(self, cell: Any, index: int, timeout: float | None) -> None:
        from nbclient.exceptions import DeadKernelError

        replies: list[Mapping[str, Any]] = []
        self._client.on_cell_executed = lambda execute_reply, **_: replies.append(execute_reply)
        # Only the student's cells are limited: the kernel's first import of gradcheck is slow.
        # The kernel stops a cell itself (see _kernel_setup); nbclient's interrupt, a little
        # later, is for a kernel that does not answer at all.
        self._client.timeout = None if timeout is None else timeout + _KERNEL_GRACE_SECONDS
        try:
            with _quiet_warnings():
                self._client.execute_cell(cell, index)
        except DeadKernelError:
            raise LoadError(f"the Jupyter kernel died while running cell {index + 1} (out of "
                            "memory, or the cell ended its own process)") from None
        finally:
            self._client.timeout = None
            self._client.on_cell_executed = None
        _echo_outputs(cell)
        reply = replies[0].get("content", {}) if replies else {}
        if reply.get("ename") == _TIMED_OUT["ename"]:
            self._ask({"op": "stopped", "cell": index + 1, "seconds": timeout}, "the notebook")
        elif _cell_errors(cell):
            self._ask({"op": "failed", "cell": index + 1, "error": _cell_errors(cell)},
                      "the notebook")


def load_in_kernel(path: Path, *, timeout: float | None = None,
                   budget: float | None = None) -> KernelSession:
    """Execute a notebook in a Jupyter kernel (``--kernel`` mode), keeping the kernel alive.

    Every code cell runs in order with ``allow_errors=True``, exactly as Jupyter would run it
    (magics included). A cell still running after ``timeout`` is interrupted (as the stop
    button does) and the next cells run. Tracebacks name the notebook's cells ("cell 3,
    line 2 of nb.ipynb"). The kernel is a child of the calling process, so it inherits the
    sandbox's limits and is killed with it; its own log lines never reach the student. The
    kernel stops a cell itself, as plain mode does (see :class:`_CellAlarm`): a loop whose
    bare ``except:`` swallows the first interruption is stopped too.

    Args:
        path: The ``.ipynb`` file.
        timeout: Per-cell time limit in seconds while loading (None: no limit; the sandbox
            enforces one on the whole load). Calls afterwards are limited by the sandbox.
        budget: Seconds all the cells may take together, as in :func:`load_submission`.

    Returns:
        A session whose :meth:`KernelSession.call` invokes the notebook's functions.

    Raises:
        LoadError: nbclient or ipykernel is missing, the notebook is invalid or empty, or the
            kernel could not start.
    """
    path = Path(path).resolve()
    client_class = _kernel_client_class()
    cells = _code_cells(path)  # the same validation and messages as the in-process loader
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    client = client_class(
        notebook, timeout=None, allow_errors=True, kernel_name="python3",
        interrupt_on_timeout=True, error_on_timeout=_TIMED_OUT, log=_quiet_logger(),
        resources={"metadata": {"path": str(path.parent)}},
    )
    _start_kernel(client, path.parent)
    session = KernelSession(client, path.parent, (), ())
    setup = session._ask({"op": "setup", "notebook": path.name, "root": str(path.parent),
                          "cells": [list(cell) for cell in cells], "cell_timeout": timeout},
                         "the notebook")
    if not setup.ok:
        session.close()
        raise LoadError(f"the Jupyter kernel could not be prepared: {setup.error}")
    try:
        session._run_cells(notebook, {number for number, _ in cells}, timeout, budget)
    except LoadError:
        session.close()
        raise
    report = session._ask({"op": "report"}, "the notebook")
    value = report.value if report.ok and isinstance(report.value, dict) else {}
    session.names = tuple(value.get("names", ()))
    session.problems = tuple(value.get("problems", ()))
    return session


def _start_kernel(client: Any, folder: Path) -> None:
    import subprocess

    try:
        client.km = client.create_kernel_manager()
        client.km.log = client.log
        # The kernel's stderr carries its own warnings (TCP without encryption, the
        # debugger's frozen modules), not the student's: their prints travel as messages.
        client.start_new_kernel(cwd=str(folder), stderr=subprocess.DEVNULL)
        client.start_new_kernel_client()
    except Exception as exc:  # noqa: BLE001 - jupyter_client raises many kinds
        detail = _short(str(exc))
        if "didn't respond" in detail:  # a busy grading machine, nothing in the notebook
            detail = f"it did not answer within {client.startup_timeout:g} s"
        raise LoadError(f"the Jupyter kernel could not start: {detail}") from None


def _quiet_logger() -> Any:
    import logging

    logger = logging.getLogger("gradcheck.kernel")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())  # else logging's last resort prints warnings
    logger.propagate = False  # nbclient's "Timeout waiting for execute reply" is ours to word
    return logger


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    # jupyter_client's own warnings (deprecations, zmq) would land in the student's output.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _kernel_request(namespace: dict[str, Any], request: Mapping[str, Any]) -> Outcome:
    """Answer one request of :class:`KernelSession`; runs INSIDE the kernel."""
    op = request["op"]
    if op == "call":
        store = namespace.setdefault(_KERNEL_STORE, {})
        return invoke(namespace, store, request["function"], tuple(request["args"]),
                      request["kwargs"], keep=request["keep"], pick=request["pick"])
    if op == "setup":
        _kernel_setup(namespace, request["notebook"], request["root"], request["cells"],
                      request.get("cell_timeout"))
        return Outcome(True)
    log: _CellLog = namespace[_KERNEL_LOG]
    if op == "report":
        return Outcome(True, {"names": list(defined_callables(namespace)),
                              "problems": list(log.problems())})
    if op == "not_run":
        log.not_run([(int(number), str(source)) for number, source in request["cells"]],
                    float(request["seconds"]))
        return Outcome(True)
    number = int(request["cell"])
    source = "".join(linecache.getlines(f"{log.notebook} cell {number}"))
    if op == "stopped":
        log.stopped(number, source, float(request["seconds"]))
        sys.last_value = None  # the CellTimeout: not a later cell's failure
        return Outcome(True)
    exc = getattr(sys, "last_value", None)
    if isinstance(exc, SyntaxError) and exc.filename == f"{log.notebook} cell {number}":
        log.unparsable(number, exc)  # the cell itself, not a module it imports
    elif isinstance(exc, BaseException):
        log.failed(number, source, exc)
    else:
        log.notes([f"cell {number} raised {request['error']}{_KEPT}"])
    sys.last_value = None  # a later cell's failure must not be read as this one's
    return Outcome(True)


def _kernel_setup(namespace: dict[str, Any], notebook: str, root: str,
                  cells: list[list[Any]], cell_timeout: float | None = None) -> None:
    """Name each cell's code after its place in the notebook, and limit each cell's time,
    as plain mode does."""
    from IPython import get_ipython

    shell = get_ipython()
    if cell_timeout:
        # In the kernel rather than nbclient's interrupt (one KeyboardInterrupt, which a
        # loop's bare except swallows and the kernel then stays busy for good).
        sources = {source for _, source in cells}
        alarm = _CellAlarm(cell_timeout, lambda name: name.startswith(f"{notebook} cell "))
        shell.events.register("pre_run_cell",
                              lambda info: alarm.arm() if info.raw_cell in sources else None)
        shell.events.register("post_run_cell", lambda _result: alarm.disarm())
    waiting: dict[str, list[int]] = {}
    for number, source in cells:
        waiting.setdefault(source, []).append(int(number))
    original = shell.compile.get_code_name
    running = [0]

    def get_code_name(raw_code: str, transformed_code: str, number: int) -> str:
        # ipykernel names a cell after a hash of its text (/tmp/ipykernel_12/3456.py).
        numbers = waiting.get(raw_code)
        if numbers:
            running[0] = numbers.pop(0)
            return f"{notebook} cell {running[0]}"
        return original(raw_code, transformed_code, number)

    shell.compile.get_code_name = get_code_name
    _STUDENT_ROOTS.append(root)
    log = namespace[_KERNEL_LOG] = _CellLog(notebook, namespace)
    _skip_shell_without_terminal(shell, log, running)
    _plot_inline_without_gui(shell, log, running)
    _exit_stops_the_cell_only(shell)


def _skip_shell_without_terminal(shell: Any, log: _CellLog, running: list[int]) -> None:
    """Let ``!cmd`` and ``%pip`` be skipped, as in plain mode, when they need a pty.

    IPython runs shell commands through pexpect, which needs a pseudo-terminal; the sandbox
    has none, and the student would read "raised OSError: out of pty devices" for a
    ``!pip install`` line that has nothing to do with the graded functions.
    """
    run = shell.system  # (`x = !cmd` goes through getoutput, which needs no pty)

    def system_or_skip(command: str, *args: Any, **kwargs: Any) -> None:
        try:
            return run(command, *args, **kwargs)
        except OSError as exc:
            if "pty" not in str(exc):
                raise
        log.notes([f"cell {running[0]}: " + _short(
            f"skipped shell command !{command} (the grader's sandbox has no terminal)")])

    shell.system = system_or_skip


def _plot_inline_without_gui(shell: Any, log: _CellLog, running: list[int]) -> None:
    """Let ``%matplotlib qt`` (tk, osx, widget...) draw inline: the sandbox has no display.

    The student's own machine had the GUI toolkit or ipympl; without this fallback the
    whole cell fails, its ``import numpy as np`` with it, and every graded function after.
    """
    for name in ("matplotlib", "pylab"):
        # Found first (IPython 9 loads magics lazily, by a name lookup that would find the
        # wrapper), then registered in its place.
        magic = shell.find_line_magic(name)
        if magic is not None:
            shell.magics_manager.magics["line"][name] = _inline_fallback(name, magic, log,
                                                                         running)


# Backends that draw without a display; any other (qt, tk, osx, gtk, wx) needs one.
_HEADLESS_BACKENDS = frozenset({"inline", "notebook", "nbagg", "agg", "svg", "pdf", "ps",
                                "cairo", "pgf", "template"})


def _inline_fallback(name: str, magic: Callable[..., Any], log: _CellLog,
                     running: list[int]) -> Callable[..., Any]:
    def magic_or_inline(line: str = "", *args: Any, **kwargs: Any) -> Any:
        words = line.split()
        backend = words[0].lower() if words and not words[0].startswith("-") else ""
        if backend and not _draws_here(backend):
            log.notes([f"cell {running[0]}: %{name} {words[0]} needs a display or a package "
                       "the grader does not have; the plots were drawn inline instead"])
            line = " ".join(["inline", *words[1:]])
        return magic(line, *args, **kwargs)

    return magic_or_inline


def _draws_here(backend: str) -> bool:
    if backend in ("widget", "ipympl"):
        return importlib.util.find_spec("ipympl") is not None
    return backend in _HEADLESS_BACKENDS or backend.startswith("module://")


def _exit_stops_the_cell_only(shell: Any) -> None:
    # In a kernel, exit() and quit() end the kernel 0.1 s later, in the middle of whatever
    # the grader then runs; in plain mode (and for sys.exit in a kernel) they end the cell.
    def ask_exit() -> None:
        raise SystemExit(None)

    shell.ask_exit = ask_exit


def _kernel_client_class() -> Any:
    if importlib.util.find_spec("ipykernel") is None:
        raise LoadError("--kernel mode needs ipykernel: pip install 'gradcheck[kernel]'")
    try:
        from nbclient import NotebookClient
    except ImportError:
        raise LoadError("--kernel mode needs nbclient: pip install 'gradcheck[kernel]'") from None
    return NotebookClient


def _new_code_cell(source: str) -> Any:
    import nbformat

    return nbformat.v4.new_code_cell(source)


def _cell_errors(cell: Any) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return _short(f"{output.get('ename', 'Error')}: {output.get('evalue', '')}")
    return ""


def _echo_outputs(cell: Any) -> None:
    # Kernel prints travel as messages; replay them into this process's (capped) output.
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            target = sys.stderr if output.get("name") == "stderr" else sys.stdout
            target.write(str(output.get("text", "")))
