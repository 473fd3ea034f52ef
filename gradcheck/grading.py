"""Grade many students: snapshots, parallel isolated jobs, resume, shards.

Data flows one way: discover -> snapshot -> grade each (student, assignment) in its own
sandboxed child, batches of jobs spread over ``--workers`` processes -> collect
:class:`StudentResult` objects -> reports. Results do not depend on the number of workers:
every example is drawn from the seed and the assignment alone.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .isolation import link_refusal
from .results import AssignmentResult, RunInfo, StudentResult
from .scoring import FigureWriter, GradingOptions, grade_assignment, missing_assignment, sandbox_for
from .submissions import Submission, content_hash, discover, snapshot

if TYPE_CHECKING:
    from .isolation import Sandbox

__all__ = ["RunOptions", "grade_folder", "select_shard", "run_info", "user_problem"]

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
    isolation: str = "best"
    """``--isolation``: ``"strict"``, ``"best"`` or ``"off"`` (see :mod:`gradcheck.confinement`)."""


def run_info(options: RunOptions, isolation: str = "") -> RunInfo:
    """The facts that make two runs comparable (and shards mergeable).

    ``isolation`` is the line the grader printed, e.g. ``"isolation: landlock 7, netns, seccomp"``.
    """
    shard = f"{options.shard[0]}/{options.shard[1]}" if options.shard else ""
    return RunInfo(__version__, options.grading.seed, options.assignments,
                   _rubrics(options), shard, isolation)


def _rubrics(options: RunOptions) -> dict[str, object]:
    """Each graded assignment's rubric (the course's own, or the one given for all)."""
    course, forced = options.grading.course_folder(), options.grading.rubric
    return {name: (forced or course.get(name).rubric).to_dict() for name in options.assignments
            if name in course.assignments}


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
    _prepare_out_dir(options)
    # mkdtemp makes the folder 0700: with --user, student code can neither read nor change
    # the other students' snapshots.
    with _snapshot_root(options.out_dir) as scratch:
        snapshots = [snapshot(s, Path(scratch) / f"{i:05d}") for i, s in enumerate(submissions)]
        # Taken before any student code runs, so these bytes are what each student submitted.
        pristine = {(s.folder, name): file.read_bytes() for s in snapshots for name, file in s.files.items()}
        jobs = [(s, name) for s in snapshots for name in options.assignments]
        if on_total:
            on_total(len(jobs))
        results = _grade_jobs([(s, name, pristine.get((s.folder, name))) for s, name in jobs],
                              options, progress)
    by_student: dict[str, list[AssignmentResult]] = {}
    for (submission, _), result in zip(jobs, results):
        by_student.setdefault(submission.student, []).append(result)
    return [
        StudentResult(s.student, tuple(by_student.get(s.student, ())), s.unknown, s.notes,
                      seconds=round(sum(a.seconds for a in by_student.get(s.student, ())), 3))
        for s in snapshots
    ]


@contextlib.contextmanager
def _snapshot_root(out_dir: Path | None) -> Iterator[Path]:
    """A private folder for the snapshots, removed afterwards.

    Under ``OUT/.snapshots`` when there is an output folder: a grader killed with SIGKILL
    cannot clean up, and the next run over the same folder then removes what it left.
    """
    if out_dir is None:
        with tempfile.TemporaryDirectory(prefix="gradcheck-snapshots-") as scratch:
            yield Path(scratch)
        return
    root = out_dir / ".snapshots"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, mode=0o700)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# Jobs handed to a worker process at a time: enough to pay for the hand-over, few enough for
# the workers to finish together.
_BATCH = 10

_Job = tuple[Submission, str, "bytes | None"]  # the snapshot, the assignment, the file's bytes


def _grade_jobs(jobs: list[_Job], options: RunOptions,
                progress: Callable[[str], None] | None) -> list[AssignmentResult]:
    """Every job's result, in order: in batches over worker processes when there are several.

    Processes rather than threads: comparing, diagnosing and writing results is Python work
    that a single interpreter lock would serialise. A batch whose worker died (a student's
    code may kill any process of the grader's user) is graded again here.
    """
    def report(job: _Job) -> None:
        if progress:
            progress(f"{job[0].student}/{job[1]}")

    batches = [jobs[start:start + _BATCH] for start in range(0, len(jobs), _BATCH)]
    if options.workers <= 1 or len(batches) <= 1:
        return _grade_batch(jobs, options, report)
    results: list[list[AssignmentResult]] = [[] for _ in batches]
    # spawn, not fork: the grader has threads (the progress bar), which fork does not copy.
    context = multiprocessing.get_context("spawn")
    workers = min(options.workers, len(batches))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_die_with,
                               initargs=(os.getpid(),))
    try:
        futures = {pool.submit(_grade_batch, batch, options): i for i, batch in enumerate(batches)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception:  # noqa: BLE001 - the worker is gone, the batch is not lost
                results[index] = _grade_batch(batches[index], options)
            for job in batches[index]:
                report(job)
    except BaseException:  # Ctrl-C: stop now; finished jobs are in the --resume cache
        pool.shutdown(wait=False, cancel_futures=True)
        _kill_workers(pool)
        raise
    pool.shutdown()
    return [result for batch in results for result in batch]


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    terminate = getattr(pool, "kill_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


def _die_with(grader: int) -> None:
    """A worker's first act: make sure it does not outlive the grader.

    A grader stopped by SIGKILL (a CI timeout, an impatient instructor) cannot stop its
    workers, which would otherwise wait for work forever, or grade on and write results
    that a resumed run is reading.
    """
    try:
        from ._child import _libc

        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # Linux: at once
    except (OSError, AttributeError):
        pass
    threading.Thread(target=_exit_when_orphaned, args=(grader,), daemon=True).start()
    # Ctrl-C is the grader's to handle: workers end with it rather than print tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _exit_when_orphaned(grader: int) -> None:
    while os.getppid() == grader:  # elsewhere, or a missed signal: within half a second
        time.sleep(0.5)
    os._exit(1)


_PR_SET_PDEATHSIG = 1


def _grade_batch(batch: list[_Job], options: RunOptions,
                 done: Callable[[_Job], None] | None = None) -> list[AssignmentResult]:
    """Grade jobs one after another, each job's sandbox started while the one before runs."""
    results = []
    with _SandboxPipeline(batch, options) as sandboxes:
        for job in batch:
            submission, name, pristine = job
            _restore_if_tampered(submission, name, pristine)
            box = sandboxes.take()
            try:
                results.append(_grade_job(submission, name, options, box))
            finally:
                sandboxes.release(box)
            if done:
                done(job)
    return results


class _SandboxPipeline:
    """Each job's sandbox started while the job before runs, and closed behind it.

    Forking a child, moving it into its cgroup and applying the limits, then killing it and
    removing its scratch folder, are mostly waiting: a helper thread does them while the
    jobs run students' calls and compare. Isolation is unchanged (a fresh child per job)
    and student code still runs only in its own job: a child started ahead waits, without a
    scratch folder, for its load request. Jobs are taken in order, from one thread.
    """

    def __init__(self, jobs: Sequence[_Job], options: RunOptions) -> None:
        self._jobs, self._options = jobs, options
        self._helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradcheck-sandboxes")
        self._next: Future[Sandbox | None] | None = None
        self._taken = 0

    def __enter__(self) -> _SandboxPipeline:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._next is not None:
            self.release(self._next.result())
        self._helper.shutdown(wait=True)

    def take(self) -> Sandbox | None:
        """The next job's sandbox if it was started ahead; starts the one after it."""
        started, self._taken = self._next, self._taken + 1
        self._next = (self._helper.submit(self._started_sandbox, self._taken)
                      if self._taken < len(self._jobs) else None)
        return started.result() if started is not None else None

    def release(self, box: Sandbox | None) -> None:
        if box is not None:
            self._helper.submit(box.close)

    def _started_sandbox(self, index: int) -> Sandbox | None:
        (submission, name, _), options = self._jobs[index], self._options
        if name not in submission.files or (options.resume and _cached_result(submission, name, options)):
            return None
        try:
            box = _sandbox(submission.files[name], options)
        except Exception:  # noqa: BLE001 - the job then makes its own sandbox, and reports why
            return None
        box.start()
        return box


def _sandbox(file: Path, options: RunOptions) -> Sandbox:
    """The job's sandbox: the scorer's limits, confined as ``--isolation`` says."""
    return sandbox_for(file, options.grading).with_isolation(options.isolation)


def _cached_result(submission: Submission, name: str, options: RunOptions) -> AssignmentResult | None:
    return _cached(options, submission.student, name, _job_key(submission, name, options))


def _job_key(submission: Submission, name: str, options: RunOptions) -> dict[str, object]:
    digest = submission.digests.get(name) or content_hash(submission.files[name])
    return _cache_key(options, digest, submission.folder_digest)


def _missing_reason(submission: Submission, name: str) -> str:
    if name in submission.linked:
        return link_refusal(submission.linked[name])
    if name in submission.too_large:
        return submission.too_large[name]
    missing = f"{name}.py or {name}.ipynb is missing"
    alike = [file for file in submission.unknown if _plain_name(file) == name]
    if not alike:
        return missing
    suffix = Path(alike[0]).suffix
    return (f"{missing}; `{alike[0]}` looks like it: rename it to {name}{suffix} to have it "
            "graded")


# What browsers, Colab and editors do to a file's name: "binary_classifier (1).ipynb",
# "Copy of binary_classifier.ipynb", "Binary-Classifier.ipynb".
_NAME_NOISE = re.compile(r"^(copy of |copia de )|( ?\(\d+\)| - copy| copy)$")


def _plain_name(file: str) -> str | None:
    path = Path(file)
    if path.suffix not in (".py", ".ipynb"):
        return None
    stem = _NAME_NOISE.sub("", path.stem.strip().lower()).strip()
    return re.sub(r"[\s-]+", "_", stem)


def _grade_job(submission: Submission, name: str, options: RunOptions,
               sandbox: Sandbox | None = None) -> AssignmentResult:
    file = submission.files.get(name)
    course = options.grading.course_folder()
    assignment = course.get(name)
    rubric = options.grading.rubric or assignment.rubric
    if file is None:
        return missing_assignment(assignment, rubric, _missing_reason(submission, name))
    key = _job_key(submission, name, options)
    digest = str(key["hash"])
    cached = _cached(options, submission.student, name, key)
    if cached is not None:
        return cached
    figures = _figure_writer(options, submission.student) if options.figures else None
    owned = sandbox is None
    try:
        if owned:
            sandbox = _sandbox(file, options)
        result = grade_assignment(assignment, file, options.grading,
                                  reference=course.reference(name),
                                  relative_source=str(file.relative_to(submission.folder)),
                                  figures=figures, sandbox=sandbox)
    except Exception as error:  # noqa: BLE001 - one broken job must never stop the run
        # Not cached: a grader failure is not the student's result, --resume tries again.
        result = missing_assignment(
            assignment, rubric,
            f"the grader could not grade {file.name}: {type(error).__name__}: {error}")
        return replace(result, seconds=round(result.seconds, 3), content_hash=digest)
    finally:
        if owned and sandbox is not None:
            sandbox.close()
    result = replace(result, seconds=round(result.seconds, 3), content_hash=digest)
    _store(options, submission.student, name, key, result)
    return result


def _restore_if_tampered(submission: Submission, name: str, pristine: bytes | None) -> None:
    """Put back a snapshot file that another student's code changed (possible without --user).

    Student code that runs as the grader's own user can write anywhere the grader can,
    including the other snapshots; what is graded is still what was submitted.
    """
    file = submission.files.get(name)
    if file is None or pristine is None or submission.digests.get(name) is None:
        return
    if content_hash(file) != submission.digests[name]:
        file.unlink(missing_ok=True)  # a symlink planted in its place is removed, not followed
        file.write_bytes(pristine)


def _prepare_out_dir(options: RunOptions) -> None:
    """Create the cache folder private to the grader, and drop leftovers of a killed run.

    With ``--user`` the output folder is closed to other users too: student code running
    as that user cannot read other students' results or plant files in it.
    """
    if options.out_dir is None:
        return
    cache = options.out_dir / ".cache"
    cache.mkdir(parents=True, exist_ok=True)
    os.chmod(cache, 0o700)
    if options.grading.user is not None:
        os.chmod(options.out_dir, os.stat(options.out_dir).st_mode & 0o770)
    # atomic_write's temporary files ("..name.XXXX.tmp") that a SIGKILL left behind.
    for stale in options.out_dir.rglob(".*.tmp"):
        if stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)


# -- --resume cache -------------------------------------------------------------------------


def _cache_path(options: RunOptions, student: str, name: str) -> Path | None:
    if options.out_dir is None:
        return None
    from .reports import student_folder

    return options.out_dir / ".cache" / student_folder(student) / f"{name}.json"


def _cache_key(options: RunOptions, digest: str, folder_digest: str = "") -> dict[str, object]:
    # Everything a result depends on: the file, the rest of the folder (helper modules, data
    # files a notebook reads), the grader, the examples, the rubric and the limits.
    grading = options.grading
    return {"hash": digest, "folder": folder_digest, "version": __version__, "seed": grading.seed,
            "rubric": _rubrics(options), "course": _course_digest(options), "hidden": grading.hidden,
            "timeout": grading.timeout, "memory_mb": grading.memory_mb, "kernel": grading.kernel}


def _course_digest(options: RunOptions) -> str:
    """The course's definition and references: changing an answer key invalidates the cache."""
    course = options.grading.course_folder()
    return _folder_digest(course.folder, course.support)


@functools.cache
def _folder_digest(folder: Path, support: Path | None) -> str:
    # Once per run and course, not once per job: the course folder does not change meanwhile.
    files = sorted(folder.glob("*.py"))
    if support is not None:
        files += sorted(p for p in support.rglob("*") if p.is_file())
    return format(zlib.crc32(b"".join(p.read_bytes() for p in files)), "08x")


def _cached(options: RunOptions, student: str, name: str, key: dict[str, object]) -> AssignmentResult | None:
    path = _cache_path(options, student, name)
    if not options.resume or path is None or not path.is_file() or path.is_symlink():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return None
        return AssignmentResult.from_dict(data["result"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged cache entry is graded again, never trusted


def _store(options: RunOptions, student: str, name: str, key: dict[str, object],
           result: AssignmentResult) -> None:
    path = _cache_path(options, student, name)
    if path is None:
        return
    from .reports import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    # Not fsynced: an entry a power cut damaged fails to parse and is graded again.
    atomic_write(path, json.dumps({"key": key, "result": result.to_dict()}), durable=False)


def _figure_writer(options: RunOptions, student: str) -> FigureWriter | None:
    if options.out_dir is None:
        return None
    try:
        from .heatmaps import save_heatmap
        from .reports import student_folder
    except ImportError:
        return None
    folder = options.out_dir / student_folder(student)

    def write(assignment: str, param: str, analytic: np.ndarray, reference: np.ndarray) -> str | None:
        # One font object serves every figure (a FreeType face is not safe to share between
        # threads), and a picture is a nicety: it never costs a point.
        path = folder / "figures" / f"{assignment}_{param}.png"
        with _FIGURE_LOCK:
            try:
                path = save_heatmap(param, analytic, reference, path, title=f"{assignment}: d{param}")
            except Exception:  # noqa: BLE001
                return None
        return str(path.relative_to(folder)) if path is not None else None

    return write


def user_problem(user: str) -> str | None:
    """Why student code cannot run as ``user`` (``--user``), or None when it can.

    The child is forked from the grader's interpreter and then drops to ``user``, so that
    user must be able to read Python's standard library and the installed packages; a
    Python installed under /root (pyenv, a venv made from it) is not readable by others.

    Example:
        >>> user_problem("no-such-user-gradcheck")
        "there is no user 'no-such-user-gradcheck' to run submissions as"
    """
    import pwd
    import subprocess
    import sys

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return f"there is no user {user!r} to run submissions as"
    if os.geteuid() != 0:
        return f"running submissions as {user!r} needs the grader to run as root"
    package_parent = str(Path(__file__).resolve().parent.parent)
    probe = "import csv, glob, json, numpy, nbformat, gradcheck.loading"
    try:
        result = subprocess.run(
            [sys.executable, "-c", probe], user=entry.pw_uid, group=entry.pw_gid, extra_groups=[],
            env={"PYTHONPATH": package_parent, "PATH": os.environ.get("PATH", "")}, cwd="/",
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as error:
        failure = f"{type(error).__name__}: {error}"
    else:
        if result.returncode == 0:
            return None
        failure = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
    return (f"--user {user}: that user cannot run this Python ({sys.executable}) with gradcheck "
            f"and numpy ({failure}); install Python and the packages where {user} can read "
            f"them (e.g. a virtual environment outside /root, made world-readable)")


def clear_cache(out_dir: Path) -> None:
    """Forget cached results (a run without --resume starts clean)."""
    shutil.rmtree(out_dir / ".cache", ignore_errors=True)
