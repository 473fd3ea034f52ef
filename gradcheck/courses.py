"""Course folders: the instructor's assignments, reference solutions and support files.

A course folder holds:

* ``course.py``: ``ASSIGNMENTS``, a sequence of :mod:`gradcheck.assignments` kinds (and
  optionally ``TITLE``);
* one reference solution per assignment, ``NAME.py``, beside it (``### BEGIN SOLUTION`` /
  ``### END SOLUTION`` mark the answers, see :mod:`gradcheck.templates`);
* optionally ``support/``: files copied into every student's scratch copy (helper modules
  such as ``testCases.py``, data files);
* optionally ``requirements.txt``: extra packages the course needs, installed by the
  instructor; the grader checks that they import and says which is missing.

The bundled document course is ``solutions/`` of a source checkout. The reference solutions
are not part of the installed package: a course used for credit keeps them away from
students.

Example:
    >>> from gradcheck.courses import load_course
    >>> course = load_course()
    >>> course.names[:3]
    ('three_node', 'batch_sigmoid', 'two_hidden')
    >>> round(float(course.reference("three_node").fprop(
    ...     *course.assignments["three_node"].split(course.assignments["three_node"].cases()[0])[:3]
    ... )["loss"]), 8)
    0.30611383
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType

from .assignments import Layer, Loss, Network
from .errors import InvalidArgument

__all__ = ["Course", "load_course", "default_course_folder"]

_KINDS = (Network, Layer, Loss)


@dataclass(frozen=True)
class Course:
    """A loaded course folder."""

    folder: Path
    title: str
    assignments: Mapping[str, Network | Layer | Loss]
    support: Path | None = None
    packages: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The assignments' names (the files students submit), in the course's order."""
        return tuple(self.assignments)

    def get(self, name: str) -> Network | Layer | Loss:
        """The assignment called ``name``; a clear error listing the course's names if none."""
        try:
            return self.assignments[name]
        except KeyError:
            raise InvalidArgument(f"the course {self.title!r} has no assignment {name!r}; "
                                  f"choose one of {', '.join(self.names)}") from None

    def reference(self, name: str) -> ModuleType:
        """The reference solution ``NAME.py``, imported once under a private module name."""
        self.get(name)
        return _import(self.folder / f"{name}.py", f"gradcheck._reference.{_ident(self.folder)}.{name}")

    def missing_packages(self) -> list[str]:
        """The packages of ``requirements.txt`` that do not import here."""
        return [name for name in self.packages if importlib.util.find_spec(name) is None]


def default_course_folder() -> Path:
    """``$GRADCHECK_COURSE``, else ``solutions/`` of the source checkout."""
    override = os.environ.get("GRADCHECK_COURSE") or os.environ.get("GRADCHECK_SOLUTIONS")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parent.parent / "solutions"
    if checkout.is_dir():
        return checkout
    raise InvalidArgument(
        "no course folder: pass --course DIR (the reference solutions are not part of the "
        "installed package; the document course is solutions/ of a gradcheck checkout)")


def load_course(folder: str | Path | None = None) -> Course:
    """Read a course folder (default: :func:`default_course_folder`).

    Raises:
        InvalidArgument: the folder, its ``course.py`` or a reference solution is missing or
            broken; the message says which and how to fix it.
    """
    path = Path(folder) if folder is not None else default_course_folder()
    return _load(path.resolve())


@functools.cache
def _load(folder: Path) -> Course:
    if not folder.is_dir():
        raise InvalidArgument(f"the course folder {folder} does not exist")
    definition = folder / "course.py"
    if not definition.is_file():
        raise InvalidArgument(f"{folder} is not a course folder: it has no course.py "
                              "(which defines ASSIGNMENTS)")
    try:
        module = _import(definition, f"gradcheck._course.{_ident(folder)}")
    except InvalidArgument:
        raise
    except Exception as exc:  # noqa: BLE001 - the instructor's file: say what broke
        raise InvalidArgument(f"{definition} failed to load: {type(exc).__name__}: {exc}") from None
    declared = getattr(module, "ASSIGNMENTS", None)
    if not isinstance(declared, (list, tuple)) or not declared:
        raise InvalidArgument(f"{definition} must define ASSIGNMENTS, a non-empty list of "
                              "Network(...), Layer(...) or Loss(...)")
    assignments: dict[str, Network | Layer | Loss] = {}
    for item in declared:
        _validate(folder, item, assignments)
        assignments[item.name] = item
    support = folder / "support"
    return Course(folder, str(getattr(module, "TITLE", folder.name)),
                  MappingProxyType(assignments), support if support.is_dir() else None,
                  _requirements(folder / "requirements.txt"))


def _validate(folder: Path, item: object, seen: Mapping[str, object]) -> None:
    if not isinstance(item, _KINDS):
        raise InvalidArgument(f"{folder / 'course.py'}: ASSIGNMENTS holds a "
                              f"{type(item).__name__}, not Network(...), Layer(...) or Loss(...)")
    if item.name in seen:
        raise InvalidArgument(f"{folder / 'course.py'}: two assignments are called {item.name!r}")
    if item.name == "course" or not item.name.isidentifier():
        raise InvalidArgument(f"{folder / 'course.py'}: {item.name!r} cannot name an assignment "
                              "(it is the file students submit: a Python identifier, not 'course')")
    if not (folder / f"{item.name}.py").is_file():
        raise InvalidArgument(f"{folder}: the assignment {item.name!r} has no reference "
                              f"solution {item.name}.py")


def _requirements(path: Path) -> tuple[str, ...]:
    """Importable names of the packages in a pip requirements file."""
    if not path.is_file():
        return ()
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[\s\[<>=!~;@]", line, maxsplit=1)[0]
        names.append(_IMPORT_NAMES.get(name.lower(), name.replace("-", "_")))
    return tuple(names)


# Distributions whose import name differs from their name on PyPI.
_IMPORT_NAMES = {"scikit-learn": "sklearn", "pillow": "PIL", "opencv-python": "cv2",
                 "pyyaml": "yaml", "beautifulsoup4": "bs4"}


def _ident(folder: Path) -> str:
    return "c" + format(abs(hash(str(folder))), "x")


@functools.cache
def _import(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"{path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the instructor's file: say what broke
        raise InvalidArgument(f"{path} failed to import: {type(exc).__name__}: {exc}") from None
    return module
