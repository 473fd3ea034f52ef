"""Grade many students: snapshots, parallel isolated jobs, resume, shards.

Data flows one way: discover -> snapshot -> grade each (student, assignment) in its own
sandboxed child -> collect :class:`StudentResult` objects -> reports. Results do not depend
on the number of workers: every example is drawn from the seed and the assignment alone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .results import AssignmentResult, RunInfo, StudentResult
from .scoring import GradingOptions, grade_assignment, missing_assignment
from .submissions import Submission, content_hash, discover, snapshot

__all__ = ["RunOptions", "grade_folder", "select_shard", "run_info"]

_FIGURE_LOCK = threading.Lock()


@dataclass(frozen=True)
class RunOptions:
    """Everything a grading run needs besides the submissions."""

    assignments: tuple[str, ...]
    grading: GradingOptions
    workers: int = 1
    out_dir: Path | None = None
    """Where the --resume cache lives (``OUT/.cache``); None disables caching."""
    resume: bool = False
    shard: tuple[int, int] | None = None
    figures: bool = True


def run_info(options: RunOptions) -> RunInfo:
    """The facts that make two runs comparable (and shards mergeable)."""
    shard = f"{options.shard[0]}/{options.shard[1]}" if options.shard else ""
    return RunInfo(__version__, options.grading.seed, options.assignments,
                   options.grading.rubric.to_dict(), shard)


def select_shard(submissions: Sequence[Submission], shard: tuple[int, int] | None) -> list[Submission]:
    """The K-th of N slices, by a hash of the student id.

    A student's shard depends only on its own id, so adding students never moves the
    others to another shard.
    """
    if shard is None:
        return list(submissions)
    k, n = shard
    return [s for s in submissions if zlib.crc32(s.student.encode()) % n == k - 1]


def grade_folder(
    submit_dir: Path,
    options: RunOptions,
    *,
    progress: Callable[[str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[StudentResult]:
    """Grade every student in ``submit_dir`` and return their results, sorted by id.

    Args:
        submit_dir: one student's files, or one folder per student.
        options: assignments, seed, limits, workers, resume, shard.
        progress: called with a short label after each (student, assignment) job.
        on_total: called once with the number of jobs, before grading starts.
    """
    submissions = select_shard(discover(submit_dir, options.assignments), options.shard)
    with tempfile.TemporaryDirectory(prefix="gradcheck-snapshots-") as scratch:
        snapshots = [snapshot(s, Path(scratch) / f"{i:05d}") for i, s in enumerate(submissions)]
        jobs = [(s, name) for s in snapshots for name in options.assignments]
        if on_total:
            on_total(len(jobs))

        def run(job: tuple[Submission, str]) -> AssignmentResult:
            result = _grade_job(job[0], job[1], options)
            if progress:
                progress(f"{job[0].student}/{job[1]}")
            return result

        with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            results = list(pool.map(run, jobs))
    by_student: dict[str, list[AssignmentResult]] = {}
    for (submission, _), result in zip(jobs, results):
        by_student.setdefault(submission.student, []).append(result)
    return [
        StudentResult(s.student, tuple(by_student.get(s.student, ())), s.unknown, s.notes,
                      seconds=round(sum(a.seconds for a in by_student.get(s.student, ())), 3))
        for s in snapshots
    ]


def _grade_job(submission: Submission, name: str, options: RunOptions) -> AssignmentResult:
    file = submission.files.get(name)
    rubric = options.grading.rubric
    if file is None:
        return missing_assignment(name, rubric, f"{name}.py or {name}.ipynb is missing")
    digest = content_hash(file)
    cached = _cached(options, submission.student, name, digest)
    if cached is not None:
        return cached
    figures = _figure_writer(options, submission.student) if options.figures else None
    try:
        result = grade_assignment(name, file, options.grading,
                                  relative_source=str(file.relative_to(submission.folder)),
                                  figures=figures)
    except Exception as error:  # noqa: BLE001 - one broken job must never stop the run
        result = missing_assignment(
            name, rubric, f"the grader could not grade {file.name}: {type(error).__name__}: {error}")
    result = AssignmentResult(result.assignment, result.source, result.checks, result.problems,
                              result.output, round(result.seconds, 3), digest)
    _store(options, submission.student, name, result)
    return result


# -- --resume cache -------------------------------------------------------------------------


def _cache_path(options: RunOptions, student: str, name: str) -> Path | None:
    if options.out_dir is None:
        return None
    from .reports import student_folder

    return options.out_dir / ".cache" / student_folder(student) / f"{name}.json"


def _cache_key(options: RunOptions, digest: str) -> dict[str, object]:
    return {"hash": digest, "version": __version__, "seed": options.grading.seed,
            "rubric": options.grading.rubric.to_dict(), "hidden": options.grading.hidden}


def _cached(options: RunOptions, student: str, name: str, digest: str) -> AssignmentResult | None:
    path = _cache_path(options, student, name)
    if not options.resume or path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("key") != _cache_key(options, digest):
            return None
        return AssignmentResult.from_dict(data["result"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged cache entry is graded again, never trusted


def _store(options: RunOptions, student: str, name: str, result: AssignmentResult) -> None:
    path = _cache_path(options, student, name)
    if path is None:
        return
    from .reports import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps({"key": _cache_key(options, result.content_hash),
                                   "result": result.to_dict()}))


def _figure_writer(options: RunOptions, student: str) -> Callable[[str, np.ndarray, np.ndarray], str | None] | None:
    if options.out_dir is None:
        return None
    try:
        from .heatmaps import save_heatmap
        from .reports import student_folder
    except ImportError:
        return None
    folder = options.out_dir / student_folder(student)

    def write(label: str, analytic: np.ndarray, reference: np.ndarray) -> str | None:
        # matplotlib is not thread-safe, and a picture is a nicety: it never costs a point.
        with _FIGURE_LOCK:
            try:
                path = save_heatmap(label, analytic, reference, folder / "figures" / f"{label}.png")
            except Exception:  # noqa: BLE001
                return None
        return str(path.relative_to(folder)) if path is not None else None

    return write


def clear_cache(out_dir: Path) -> None:
    """Forget cached results (a run without --resume starts clean)."""
    shutil.rmtree(out_dir / ".cache", ignore_errors=True)
