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
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Submission", "discover", "snapshot", "content_hash", "entries"]

_IGNORED = {"__pycache__", ".ipynb_checkpoints", ".git", ".DS_Store", "__MACOSX"}
_SNAPSHOT_LIMIT = 50 * 1024 * 1024  # a student folder larger than this is not copied whole
_SNAPSHOT_ATTEMPTS = 5  # copies of a folder that keeps changing before the last one is kept
# Folder levels below a student's folder that are copied, and entries looked at: a tree
# nested thousands of levels deep stopped the whole run (RecursionError in os.walk).
_MAX_DEPTH = 32
_MAX_ENTRIES = 20_000


@dataclass(frozen=True)
class Submission:
    """One student's folder and the assignment files found in it."""

    student: str
    folder: Path
    files: dict[str, Path]
    """Assignment name -> file, for the assignments found."""
    unknown: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    digests: dict[str, str] = field(default_factory=dict)
    """Assignment name -> SHA-256 of the file's bytes in the snapshot (empty before one)."""
    folder_digest: str = ""
    """SHA-256 over every snapshot file's relative path and bytes (helpers, data files)."""
    linked: dict[str, str] = field(default_factory=dict)
    """Assignment name -> file name, for files that were symbolic links (never followed)."""
    too_large: dict[str, str] = field(default_factory=dict)
    """Assignment name -> why its file was not copied: it is over the snapshot's limit."""


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
    to /etc or to another student's folder is not copied (an assignment file that is a link
    is named in ``linked``). A folder that changes while it is
    copied (a sync client, a student still uploading) is copied again until two listings
    of it agree, so the snapshot is one consistent state, never half old and half new.
    The returned submission carries the digests of exactly the bytes that were copied.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (root / "alice").mkdir(), (root / "alice" / "two_hidden.py").write_text("x = 1")
        >>> [alice] = discover(root, ["two_hidden"])
        >>> copy = snapshot(alice, root / "snap")
        >>> copy.files["two_hidden"].read_text(), copy.digests["two_hidden"] == content_hash(alice.files["two_hidden"])
        ('x = 1', True)
    """
    notes = submission.notes
    for attempt in range(_SNAPSHOT_ATTEMPTS):
        before = _fingerprint(submission.folder)
        if attempt:
            shutil.rmtree(destination, ignore_errors=True)
        # The assignment files first: a big data file must not crowd them out of the limit.
        copied = _copy_folder(submission.folder, destination, list(submission.files.values()))
        if _fingerprint(submission.folder) == before:
            break
    else:
        notes += ("the folder kept changing while it was copied for grading: the last copy was "
                  "graded",)
    files = {name: destination / file.relative_to(submission.folder) for name, file in submission.files.items()}
    linked = {name: file.name for name, file in submission.files.items() if file.is_symlink()}
    sizes = {name: _size(file) for name, file in submission.files.items()
             if name not in linked and not files[name].is_file()}
    too_large = {name: _too_large_reason(submission.files[name].name, size)
                 for name, size in sizes.items() if size > _SNAPSHOT_LIMIT}
    files = {name: path for name, path in files.items() if path.is_file()}
    digests = {name: hashlib.sha256(copied[path]).hexdigest() for name, path in files.items() if path in copied}
    folder = hashlib.sha256()
    for path in sorted(copied):
        folder.update(str(path.relative_to(destination)).encode("utf-8", "surrogateescape") + b"\0")
        folder.update(hashlib.sha256(copied[path]).digest())
    return Submission(submission.student, destination, files, submission.unknown, notes,
                      digests, folder.hexdigest(), linked, too_large)


def _too_large_reason(file_name: str, size: int) -> str:
    """Why an assignment file over the snapshot's limit is not graded, in one sentence."""
    return (f"{file_name} is {size / 2**20:,.0f} MB, more than the {_SNAPSHOT_LIMIT // 2**20} MB "
            "a submission may hold, so it was not graded: clear the notebook's outputs (or "
            "remove what makes it so large) and submit it again")


def _size(path: Path) -> int:
    try:
        return path.stat(follow_symlinks=False).st_size
    except OSError:
        return 0


def _copy_folder(source: Path, destination: Path, first: Sequence[Path] = ()) -> dict[Path, bytes]:
    """Copy ``source`` to ``destination``; return each copied file's bytes, by target path.

    Each file is read once and written from those bytes, so its digest is the digest of
    what was written, whatever happens to the original meanwhile. The files ``first`` are
    copied before the others, so they are the last to be left out by the size limit.
    """
    destination.mkdir(parents=True, exist_ok=True)
    budget = _SNAPSHOT_LIMIT
    copied: dict[Path, bytes] = {}
    # Never a link: it could point anywhere on the grader's disk (the answer key...).
    ahead = [path for path in first if path.parent == source and not path.is_symlink()]
    listed = [path for path, kind in entries(source) if kind != "link" and path not in ahead]
    for path in ahead + listed:
        target = destination / path.relative_to(source)
        try:
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif path.is_file() and path.stat().st_size <= budget:
                data = path.read_bytes()
                if len(data) > budget:
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                copied[target] = data
                budget -= len(data)
        except OSError:
            continue  # deleted or made unreadable while we copied (the retry sees it), or a
            # name too long to copy
    return copied


def entries(folder: Path, max_depth: int = _MAX_DEPTH, max_entries: int | None = _MAX_ENTRIES,
            skip: frozenset[str] | set[str] = frozenset(_IGNORED)) -> list[tuple[Path, str]]:
    """``(path, kind)`` below ``folder``, kind ``"dir"``, ``"file"`` or ``"link"`` (not followed).

    Without recursion, at most ``max_depth`` levels down and ``max_entries`` entries, and
    leaving out the names in ``skip`` (``__pycache__``, ``.git`` and the like); sorted within
    each folder.
    """
    found: list[tuple[Path, str]] = []
    todo = [(folder, 1)]
    limit = max_entries if max_entries is not None else float("inf")
    while todo and len(found) < limit:
        current, depth = todo.pop()
        try:
            with os.scandir(current) as listing:
                children = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            continue
        below = []
        for child in children:
            if child.name in skip:
                continue
            path = Path(child.path)
            try:
                kind = ("link" if child.is_symlink() else
                        "dir" if child.is_dir(follow_symlinks=False) else "file")
            except OSError:
                continue
            found.append((path, kind))
            if kind == "dir" and depth < max_depth:
                below.append((path, depth + 1))
        todo.extend(reversed(below))
    return found if max_entries is None else found[:max_entries]


def _fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """What the folder looks like (names, sizes, modification times), to notice changes."""
    listed = []
    for path, kind in entries(folder):
        if kind == "dir":
            continue
        try:
            stat = path.stat(follow_symlinks=False)
        except OSError:
            continue
        listed.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(listed)


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
