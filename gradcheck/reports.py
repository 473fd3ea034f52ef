"""Render grading results: results.json, grades.csv, junit.xml, feedback.md; write them atomically.

Every renderer is a pure function of :mod:`gradcheck.results` objects (nothing is graded
again), in the spirit of otter's ``to_gradescope_dict``. Student-controlled text (output,
exception messages, file names, ids) can hold anything: it is stripped of control
characters, capped in length, and escaped for the format at hand. :func:`write_outputs`
puts the files in place with :func:`atomic_write_many`, so a crash, even SIGKILL, leaves
either the previous file or the new one, never half of one.

Example:
    >>> from gradcheck.results import AssignmentResult, CheckResult, StudentResult
    >>> check = CheckResult("two_hidden", "fprop", "fprop", 2.0, 2.0, True, "loss matches")
    >>> alice = StudentResult("alice", (AssignmentResult("two_hidden", "two_hidden.py", (check,)),))
    >>> gradescope_results(alice)["score"]
    2.0
    >>> print(grades_csv([alice], ["two_hidden"]).strip())
    student,two_hidden,total,max_total
    alice,2,2,2
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import AssignmentResult, CheckResult, RunInfo, StudentResult

__all__ = [
    "VISIBILITIES",
    "ResultEntry",
    "atomic_write",
    "atomic_write_many",
    "feedback_markdown",
    "gradescope_json",
    "gradescope_results",
    "grades_csv",
    "junit_xml",
    "read_run",
    "safe_name",
    "student_folder",
    "write_outputs",
]

VISIBILITIES: tuple[str, ...] = ("visible", "hidden", "after_due_date", "after_published")
"""The visibility values Gradescope accepts for a test and for stdout."""

# Gradescope shows test output in a box; a runaway print loop must not make it unusable.
MAX_OUTPUT_CHARS = 8_000
_OUTPUT_HEAD_LINES = 40
# Characters XML 1.0 forbids even as references, plus lone surrogates that cannot be encoded.
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._\-]")
_HASHED_NAME = re.compile(r"-[0-9a-f]{8}$")  # how a changed name ends: it is never kept as it is
_WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)


@dataclass(frozen=True)
class ResultEntry:
    """One graded test, whatever produced it (a grader check or a pytest test)."""

    name: str
    score: float
    max_score: float
    output: str = ""
    """What the student reads under the test: the failure message, or empty."""
    visibility: str = "visible"
    passed: bool | None = None
    """None: decide from the score (full marks pass)."""


# -- Gradescope ------------------------------------------------------------------------------


def gradescope_json(
    entries: Iterable[ResultEntry],
    *,
    execution_time: float | None = None,
    output: str = "",
    stdout_visibility: str = "hidden",
    score: float | None = None,
) -> dict[str, Any]:
    """Build Gradescope's ``results.json`` from generic test entries.

    The one implementation behind both the grader (:func:`gradescope_results`) and the
    pytest plugin (``--gradescope-results``).

    Args:
        entries: the graded tests, in display order.
        execution_time: seconds the grading took (Gradescope shows it to instructors).
        output: text about the whole submission (missing files, failing notebook cells).
        stdout_visibility: who sees the autograder's stdout: one of :data:`VISIBILITIES`.
        score: the total; default the sum of the entries' scores.

    Returns:
        A JSON-ready dict: ``score``, ``tests`` (``name``, ``score``, ``max_score``,
        ``status``, ``output``, ``visibility``), and the optional fields that were given.

    Raises:
        ValueError: a visibility is not one Gradescope knows.

    Example:
        >>> data = gradescope_json([ResultEntry("bprop", 4, 6, "dW2 is transposed")])
        >>> data["score"], data["tests"][0]["status"]
        (4.0, 'failed')
    """
    tests = []
    for entry in entries:
        _check_visibility(entry.visibility)
        passed = entry.passed if entry.passed is not None else entry.score >= entry.max_score
        test: dict[str, Any] = {
            "name": _clean(entry.name, 200),
            "score": _number(entry.score),
            "max_score": _number(entry.max_score),
            "status": "passed" if passed else "failed",
            "output": _clean(entry.output, MAX_OUTPUT_CHARS),
            "visibility": entry.visibility,
        }
        tests.append(test)
    _check_visibility(stdout_visibility)
    total = sum(test["score"] for test in tests) if score is None else score
    data: dict[str, Any] = {"score": round(_number(total), 6), "tests": tests,
                            "stdout_visibility": stdout_visibility}
    if execution_time is not None:
        # Gradescope documents execution_time as whole seconds.
        data["execution_time"] = max(0, int(math.ceil(execution_time)))
    if output:
        data["output"] = _clean(output, MAX_OUTPUT_CHARS)
    return data


def gradescope_results(
    student: StudentResult, *, visibility: str = "visible", stdout_visibility: str = "hidden",
    extra_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Gradescope's ``results.json`` for one student: one test per check.

    Args:
        student: what was graded.
        visibility: visibility of every test (``"after_due_date"`` hides hidden examples
            until the deadline).
        stdout_visibility: see :func:`gradescope_json`.
        extra_data: Gradescope's top-level ``extra_data``, stored for instructors and never
            shown to the student (the grader puts the run's isolation there).

    Example:
        >>> from gradcheck.results import AssignmentResult, StudentResult
        >>> empty = StudentResult("bob", (AssignmentResult("mlp", None, (), ("mlp.py is missing",)),))
        >>> gradescope_results(empty)["tests"][0]["output"]
        'mlp.py is missing'
    """
    entries = []
    for assignment in student.assignments:
        entries += [ResultEntry(f"{assignment.assignment}: {check.name}", check.score, check.max_score,
                                _check_text(check), visibility, check.passed)
                    for check in assignment.checks]
        if not assignment.checks and assignment.problems:
            # Nothing was scored (e.g. the file is missing): say so where the student looks.
            entries.append(ResultEntry(f"{assignment.assignment}: submission", 0.0, 0.0,
                                       "\n".join(assignment.problems), visibility, False))
    data = gradescope_json(entries, execution_time=student.seconds, output=_student_output(student),
                           stdout_visibility=stdout_visibility, score=student.score)
    if extra_data:
        data["extra_data"] = dict(extra_data)
    return data


def _instructor_data(run: RunInfo, student: StudentResult) -> dict[str, Any]:
    """What only instructors see: the run's isolation, and flags that never change a score."""
    data: dict[str, Any] = {"isolation": run.isolation} if run.isolation else {}
    flags = {a.assignment: list(a.flags) for a in student.assignments if a.flags}
    if flags:
        data["flags"] = flags
    return data


def _check_text(check: CheckResult) -> str:
    lines = [check.summary, *check.details]
    if check.diagnosis:
        lines.append(f"Likely cause: {check.diagnosis}")
    return "\n".join(line for line in lines if line)


def _student_output(student: StudentResult) -> str:
    lines = list(student.notes)
    for assignment in student.assignments:
        lines += [f"{assignment.assignment}: {problem}" for problem in assignment.problems]
    if student.unknown_files:
        lines.append("Files that are not assignments (ignored): " + ", ".join(student.unknown_files))
    return "\n".join(lines)


def _check_visibility(visibility: str) -> None:
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility {visibility!r} is not one of {', '.join(VISIBILITIES)}")


# -- grades.csv ------------------------------------------------------------------------------


def grades_csv(students: Iterable[StudentResult], assignments: Sequence[str]) -> str:
    """One row per student (sorted by id): ``student``, one column per assignment, ``total``, ``max_total``.

    An assignment a student has no result for is empty. Ids that a spreadsheet would read
    as a formula (``=``, ``+``, ``-``, ``@``) are prefixed with ``'``.

    Example:
        >>> print(grades_csv([], ["mlp"]).strip())
        student,mlp,total,max_total
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *assignments, "total", "max_total"])
    for student in sorted(students, key=lambda s: s.student):
        cells = []
        for name in assignments:
            result = student.assignment(name)
            cells.append("" if result is None else _format_number(result.score))
        writer.writerow([_spreadsheet_safe(_clean(student.student, 200)), *cells,
                         _format_number(student.score), _format_number(student.max_score)])
    return buffer.getvalue()


def _spreadsheet_safe(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# -- junit.xml -------------------------------------------------------------------------------


def junit_xml(students: Iterable[StudentResult]) -> str:
    """JUnit XML for any CI: one testsuite per student, one testcase per check.

    ``classname`` is ``student.assignment`` and ``name`` the check's name; a failed check
    has a ``<failure>`` with the summary as message and the details as text. Problems
    around the checks (missing file, failing cells) go to the suite's ``<system-out>``.

    Example:
        >>> import xml.etree.ElementTree as ET
        >>> ET.fromstring(junit_xml([])).tag
        'testsuites'
    """
    root = ET.Element("testsuites", name="gradcheck")
    totals = {"tests": 0, "failures": 0}
    for student in students:
        suite = ET.SubElement(root, "testsuite", name=_xml_text(student.student, 200))
        cases = failures = 0
        for assignment in student.assignments:
            for check in assignment.checks:
                cases += 1
                failures += not check.passed
                _testcase(suite, student, assignment, check)
        suite.set("tests", str(cases))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", "0")
        suite.set("time", f"{student.seconds:.3f}")
        out = _student_output(student)
        if out:
            ET.SubElement(suite, "system-out").text = _xml_text(out, MAX_OUTPUT_CHARS)
        totals["tests"] += cases
        totals["failures"] += failures
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _testcase(suite: ET.Element, student: StudentResult, assignment: AssignmentResult,
              check: CheckResult) -> None:
    case = ET.SubElement(suite, "testcase", classname=_xml_text(f"{student.student}.{assignment.assignment}", 300),
                         name=_xml_text(check.name, 200), time=f"{assignment.seconds:.3f}")
    if not check.passed:
        failure = ET.SubElement(case, "failure", message=_xml_text(check.summary, 500), type=check.kind)
        failure.text = _xml_text(_check_text(check), MAX_OUTPUT_CHARS)


def _xml_text(text: str, limit: int) -> str:
    return _cap(_ILLEGAL_XML.sub("", str(text)), limit)


# -- feedback.md -----------------------------------------------------------------------------


def feedback_markdown(student: StudentResult) -> str:
    """The student-facing report: a summary table, then every assignment and check in plain words.

    Example:
        >>> from gradcheck.results import AssignmentResult, CheckResult, StudentResult
        >>> check = CheckResult("mlp", "update", "update", 0.0, 2.0, False, "update returned None")
        >>> text = feedback_markdown(StudentResult("carol", (AssignmentResult("mlp", "mlp.py", (check,)),)))
        >>> "| mlp | 0 / 2 |" in text
        True
    """
    lines = [f"# Feedback for {_md(student.student)}", "",
             f"**Total: {_format_number(student.score)} / {_format_number(student.max_score)}**"
             f" ({student.percentage:.0f}%)", ""]
    lines += ["| assignment | score | checks passed |", "|---|---|---|"]
    for a in student.assignments:
        passed = sum(check.passed for check in a.checks)
        lines.append(f"| {_md_cell(a.assignment)} | {_format_number(a.score)} / {_format_number(a.max_score)} "
                     f"| {passed} of {len(a.checks)} |")
    lines.append("")
    lines += [f"> {_md(note)}" for note in student.notes]
    if student.unknown_files:
        names = ", ".join(f"`{_md_code(name)}`" for name in student.unknown_files)
        lines += [f"These files are not assignments and were ignored: {names}", ""]
    for assignment in student.assignments:
        lines += _assignment_section(assignment)
    return "\n".join(lines).rstrip() + "\n"


def _assignment_section(a: AssignmentResult) -> list[str]:
    source = f"`{_md_code(a.source)}`" if a.source else "no file"
    lines = [f"## {_md(a.assignment)}: {_format_number(a.score)} / {_format_number(a.max_score)}", "",
             f"Graded: {source}.", ""]
    if a.problems:
        lines += ["Problems:", *[f"- {_md(problem)}" for problem in a.problems], ""]
    for check in a.checks:
        lines += _check_section(check)
    if a.output.strip():
        lines += ["<details><summary>What your code printed (first lines)</summary>", "",
                  *_fenced(_head(a.output)), "", "</details>", ""]
    return lines


def _check_section(check: CheckResult) -> list[str]:
    mark = "passed" if check.passed else "FAILED"
    lines = [f"### {_md(check.name)}: {mark} ({_format_number(check.score)} / "
             f"{_format_number(check.max_score)})", "", _md(check.summary), ""]
    facts = []
    if check.example:
        facts.append(f"Example: {_md(check.example)}")
    facts += [_md(detail) for detail in check.details]
    if check.relative_error is not None and math.isfinite(check.relative_error):
        facts.append(f"Largest relative error: {check.relative_error:.2e}")
    if check.diagnosis:
        facts.append(f"**Likely cause:** {_md(check.diagnosis)}")
    lines += [f"- {fact}" for fact in facts]
    if facts:
        lines.append("")
    link = _safe_link(check.figure)
    if link:
        lines += [f"![where {_md(check.name)} differs]({link})", ""]
    return lines


def _md(text: str) -> str:
    """Plain text for markdown prose: no raw HTML, no control characters, one line."""
    text = _cap(_ILLEGAL_XML.sub("", str(text)), 2_000)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.split())


def _md_cell(text: str) -> str:
    return _md(text).replace("|", "\\|")


def _md_code(text: str) -> str:
    return _md(text).replace("`", "'")


def _fenced(text: str) -> list[str]:
    # A fence longer than any backtick run inside, so printed text cannot close it early.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text, fence]


def _head(output: str) -> str:
    lines = _ILLEGAL_XML.sub("", output).splitlines()
    head = "\n".join(lines[:_OUTPUT_HEAD_LINES])
    more = len(lines) - _OUTPUT_HEAD_LINES
    head = _cap(head, 4_000)
    return head + (f"\n... ({more} more lines)" if more > 0 else "")


def _safe_link(figure: str | None) -> str | None:
    # Only a relative path inside the student's folder: never a URL or a way out of it.
    if not figure:
        return None
    path = Path(figure)
    if path.is_absolute() or ".." in path.parts or ":" in figure or _ILLEGAL_XML.search(figure):
        return None
    return "/".join(path.parts).replace(" ", "%20").replace("(", "%28").replace(")", "%29")


# -- writing ---------------------------------------------------------------------------------


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The data goes to a temporary file in the same folder, is flushed to disk (fsync), and
    replaces ``path`` in one ``os.replace``; the folder is created when missing. Text is
    written as UTF-8. ``durable=False`` skips the fsyncs: still never half-written for
    readers, but a power cut may lose the file (for caches that are checked when read).

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "grades.csv"
        >>> atomic_write(target, "student,total\\n").read_text()
        'student,total\\n'
    """
    target = Path(path)
    temporary = _temporary_copy(target, data, durable=durable)
    try:
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(target.parent)
    return target


def atomic_write_many(files: Mapping[Path, str | bytes]) -> None:
    """:func:`atomic_write` for many files, with one flush to disk for all of them.

    Every file is written to its temporary copy, one ``os.sync`` makes them all durable,
    then each replaces its target and a second ``os.sync`` makes the renames durable: two
    waits for the disk instead of two per file (a class of 200 students has 400 files).
    """
    written: list[tuple[Path, Path]] = []
    try:
        for target, data in files.items():
            written.append((_temporary_copy(Path(target), data, durable=False), Path(target)))
        os.sync()
        for temporary, target in written:
            os.replace(temporary, target)
    except BaseException:
        for temporary, _ in written:
            temporary.unlink(missing_ok=True)  # those already renamed are gone: no-op
        raise
    os.sync()


def _temporary_copy(target: Path, data: str | bytes, *, durable: bool) -> Path:
    """``data`` in a new temporary file beside ``target`` (fsynced when ``durable``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(data, (str, bytes)):
        raise TypeError(f"atomic_write writes str or bytes, not {type(data).__name__}")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; outputs are meant to be shared
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def _fsync_folder(folder: Path) -> None:
    # The rename itself is durable only once the folder's entry is on disk (POSIX only).
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def student_folder(student: str) -> str:
    """A folder name for a student id that cannot escape the output folder.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``; names that
    are empty, start with a dot (``..``, hidden folders) or are reserved on Windows get a
    ``_`` prefix. A name that had to change gets a short hash of the id, so two ids never
    share a folder (``a b`` and ``a_b``); so does a name that ends like one (``a_b-1234abcd``
    cannot take the folder of ``a b``). The grader uses the same function for figures.

    Example:
        >>> student_folder("alice"), student_folder("..")
        ('alice', '_..-5ec1f7e7')
    """
    name = _UNSAFE_NAME.sub("_", student)[:100]
    if not name or name.startswith(".") or name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    if name != student or _HASHED_NAME.search(name):
        digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        name = f"{name}-{digest}"
    return name


safe_name = student_folder
"""Alias of :func:`student_folder`."""


def write_outputs(
    out_dir: str | os.PathLike[str], run: RunInfo, students: Sequence[StudentResult]
) -> dict[str, Path]:
    """Write every output of a run, each file atomically.

    ``OUT/<student>/results.json`` and ``OUT/<student>/feedback.md`` per student (the folder
    from :func:`student_folder`, made unique when two ids clash), ``OUT/grades.csv``,
    ``OUT/junit.xml``, and ``OUT/run.json`` (the run settings and every result, to merge
    shards and resume; read it back with :func:`read_run`).

    Returns:
        Student id -> the student's output folder.
    """
    out = Path(out_dir)
    folders = _unique_folders(s.student for s in students)
    files: dict[Path, str | bytes] = {}
    for student in students:
        folder = out / folders[student.student]
        files[folder / "results.json"] = _json(gradescope_results(
            student, extra_data=_instructor_data(run, student)))
        files[folder / "feedback.md"] = feedback_markdown(student)
    assignments = list(run.assignments) or _assignment_names(students)
    files[out / "grades.csv"] = grades_csv(students, assignments)
    files[out / "junit.xml"] = junit_xml(students)
    # Read by programs (merge, --resume): compact, which json writes in C, not in Python.
    files[out / "run.json"] = _json({"run": run.to_dict(), "students": [s.to_dict() for s in students]},
                                    indent=None)
    atomic_write_many(files)
    return {student: out / folder for student, folder in folders.items()}


def read_run(path: str | os.PathLike[str]) -> tuple[RunInfo, tuple[StudentResult, ...]]:
    """Read back a ``run.json`` written by :func:`write_outputs`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return RunInfo.from_dict(data["run"]), tuple(StudentResult.from_dict(s) for s in data["students"])


def _unique_folders(ids: Iterable[str]) -> dict[str, str]:
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for student in ids:
        if student in folders:
            continue
        base = name = student_folder(student)
        suffix = 2
        while name.lower() in taken:  # case-insensitive file systems clash on Alice/alice
            name, suffix = f"{base}-{suffix}", suffix + 1
        folders[student] = name
        taken.add(name.lower())
    return folders


def _assignment_names(students: Iterable[StudentResult]) -> list[str]:
    names: list[str] = []
    for student in students:
        names += [a.assignment for a in student.assignments if a.assignment not in names]
    return names


def _json(data: Any, indent: int | None = 2) -> str:
    # Strict JSON: an infinite relative error (a structural problem) is written as null; ASCII
    # escapes keep any character a student printed (even a lone surrogate) round-trippable.
    return json.dumps(_finite(data), indent=indent, allow_nan=False, ensure_ascii=True) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# -- small helpers ---------------------------------------------------------------------------


def _clean(text: str, limit: int) -> str:
    """Text safe for JSON consumers: no control characters but newline and tab, capped."""
    return _cap(_ILLEGAL_XML.sub("", str(text)), limit)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"\n... [{len(text) - limit} more characters cut]"
    return text[: max(0, limit - len(note))] + note


def _number(value: float) -> float:
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _format_number(value: float) -> str:
    number = round(float(value), 6)
    return str(int(number)) if number.is_integer() else repr(number)
