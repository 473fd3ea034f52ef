"""Find the students and their assignment files in a submission folder.

``SUBMIT_DIR`` holds one student's files directly (the student's id is the folder's
name) or one folder per student. Assignments are matched by file name: ``NAME.py`` or
``NAME.ipynb``. When both exist the module is graded and the notebook ignored (a module
next to a notebook is usually its export, and it runs the same way everywhere); the
student is told. Anything else is listed as unknown, never fatal.

Each student's folder is copied to a snapshot before grading, so a folder that changes
while the grader runs is graded from one consistent state, and the original is never
touched by student code.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Submission", "discover", "snapshot", "content_hash"]

_IGNORED = {"__pycache__", ".ipynb_checkpoints", ".git", ".DS_Store", "__MACOSX"}
_SNAPSHOT_LIMIT = 50 * 1024 * 1024  # a student folder larger than this is not copied whole


@dataclass(frozen=True)
class Submission:
    """One student's folder and the assignment files found in it."""

    student: str
    folder: Path
    files: dict[str, Path]
    """Assignment name -> file, for the assignments found."""
    unknown: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def discover(submit_dir: Path, assignments: Sequence[str]) -> list[Submission]:
    """The submissions in ``submit_dir``, sorted by student id.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "two_hidden.py").write_text("")
        >>> [s.files for s in discover(root, ["two_hidden"])] == [{"two_hidden": root / "two_hidden.py"}]
        True
    """
    if _has_assignment_files(submit_dir, assignments):
        return [_submission(submit_dir.resolve().name, submit_dir, assignments)]
    folders = sorted(p for p in submit_dir.iterdir() if p.is_dir() and _visible(p))
    return [_submission(folder.name, _descend(folder, assignments), assignments) for folder in folders]


def snapshot(submission: Submission, destination: Path) -> Submission:
    """Copy the student's folder to ``destination`` and return the submission there.

    Files are copied one by one up to a total of 50 MB (data files a notebook reads are
    kept; a huge folder cannot fill the disk); symbolic links are not followed, so a link
    to /etc or to another student's folder is not copied.
    """
    destination.mkdir(parents=True, exist_ok=True)
    budget = _SNAPSHOT_LIMIT
    for path in sorted(submission.folder.rglob("*")):
        relative = path.relative_to(submission.folder)
        if path.is_symlink() or any(part in _IGNORED for part in relative.parts):
            continue
        target = destination / relative
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file() and path.stat().st_size <= budget:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            budget -= path.stat().st_size
    files = {name: destination / file.relative_to(submission.folder) for name, file in submission.files.items()}
    return Submission(submission.student, destination, files, submission.unknown, submission.notes)


def content_hash(path: Path) -> str:
    """SHA-256 of a file's bytes (for --resume)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _submission(student: str, folder: Path, assignments: Sequence[str]) -> Submission:
    files: dict[str, Path] = {}
    notes: list[str] = []
    for name in assignments:
        module, notebook = folder / f"{name}.py", folder / f"{name}.ipynb"
        if module.is_file() and notebook.is_file():
            notes.append(f"both {name}.py and {name}.ipynb were submitted: {name}.py was graded "
                         f"and {name}.ipynb ignored")
        found = module if module.is_file() else notebook if notebook.is_file() else None
        if found is not None:
            files[name] = found
    expected = {f"{name}{suffix}" for name in assignments for suffix in (".py", ".ipynb")}
    unknown = tuple(sorted(p.name for p in folder.iterdir()
                           if _visible(p) and p.name not in expected and p.is_file()))
    return Submission(student, folder, files, unknown, tuple(notes))


def _descend(folder: Path, assignments: Sequence[str]) -> Path:
    # An unzipped submission often has one extra level: alice/hw1/two_hidden.py.
    current = folder
    for _ in range(2):
        if _has_assignment_files(current, assignments):
            return current
        children = [p for p in current.iterdir() if p.is_dir() and _visible(p)]
        if len(children) != 1:
            return folder
        current = children[0]
    return current if _has_assignment_files(current, assignments) else folder


def _has_assignment_files(folder: Path, assignments: Iterable[str]) -> bool:
    return any((folder / f"{name}{suffix}").is_file() for name in assignments for suffix in (".py", ".ipynb"))


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in _IGNORED
