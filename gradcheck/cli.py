"""The command line behind ``grader.py``: grade a folder, or merge shards.

``python grader.py SUBMIT_DIR [options]`` grades; ``python grader.py merge OUT_1 OUT_2 ...
--out OUT`` combines the outputs of ``--shard K/N`` runs. Exit status: 0 when grading
completed (whatever the scores), 1 with ``--fail-under`` when a student's percentage is
below it, 2 on a usage error, with one line saying why.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .errors import InvalidArgument
from .results import RunInfo, StudentResult

if TYPE_CHECKING:
    from .courses import Course

__all__ = ["main", "cli"]


class _GraderGroup(click.Group):
    """``grader.py SUBMIT_DIR`` means ``grader.py grade SUBMIT_DIR``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["grade", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_GraderGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gradcheck")
def cli() -> None:
    """Grade hand-written fprop/bprop/update submissions (modules or notebooks)."""


def _shard(_: click.Context, __: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        k, n = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not K/N, e.g. 2/8") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"{value!r}: K must be between 1 and N")
    return k, n


@cli.command()
@click.argument("submit_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("grading-results"), show_default=True, help="Folder for the outputs.")
@click.option("--course", "course_dir", type=click.Path(path_type=Path), default=None,
              help="Course folder (course.py, reference solutions, support/). "
                   "Default: the bundled document course.")
@click.option("--assignment", "assignments", multiple=True, metavar="NAME",
              help="Grade only these assignments of the course (repeatable). "
                   "Default: all found in the folder.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes grading at once, each one job at a time. Default: number of cores.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds each call of student code may take.")
@click.option("--memory", "memory_mb", type=click.IntRange(min=64), default=1024, show_default=True,
              help="Memory limit of a student process, in MB.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the hidden examples.")
@click.option("--fail-under", type=click.FloatRange(0, 100), default=None,
              help="Exit 1 when a student's total percentage is below this.")
@click.option("--kernel", is_flag=True, help="Run notebooks in a real Jupyter kernel (nbclient).")
@click.option("--resume", is_flag=True, help="Reuse finished results of an interrupted run.")
@click.option("--shard", callback=_shard, default=None, metavar="K/N",
              help="Grade only the K-th of N slices of the students.")
@click.option("--user", default=None, help="When run as root: run student code as this user.")
@click.option("--isolation", type=click.Choice(("strict", "best", "off")), default="best",
              show_default=True,
              help="Kernel sandbox of student code (Landlock, network namespace, seccomp): strict "
                   "refuses to grade without every layer, best uses what the kernel offers and "
                   "warns, off is for debugging only.")
def grade(submit_dir: Path, out_dir: Path, course_dir: Path | None, assignments: tuple[str, ...],
          workers: int | None,
          timeout: float, memory_mb: int, seed: int, fail_under: float | None, kernel: bool,
          resume: bool, shard: tuple[int, int] | None, user: str | None, isolation: str) -> None:
    """Grade SUBMIT_DIR: one student's files, or one folder per student."""
    from .grading import RunOptions, clear_cache, grade_folder, run_info, user_problem
    from .reports import write_outputs
    from .scoring import GradingOptions
    from .submissions import discover

    course = _course(course_dir)
    unknown = [name for name in assignments if name not in course.assignments]
    if unknown:
        raise click.UsageError(f"no assignment {', '.join(map(repr, unknown))} in the course "
                               f"{course.title!r}; choose among {', '.join(course.names)}")
    if missing := course.missing_packages():
        raise click.UsageError(f"the course needs packages that do not import here: "
                               f"{', '.join(missing)} (pip install -r {course.folder}/requirements.txt)")
    chosen = assignments or _assignments_in(submit_dir, course.names)
    if not discover(submit_dir, chosen):
        example = course.names[0]
        raise click.UsageError(f"{submit_dir} holds no submissions of the course {course.title!r}: "
                               f"expected files such as {example}.py or {example}.ipynb, or one "
                               "folder per student")
    options = RunOptions(
        assignments=chosen,
        grading=GradingOptions(seed=seed, timeout=timeout, memory_mb=memory_mb, kernel=kernel,
                               user=user, course=str(course.folder)),
        workers=workers or _usable_cores(),
        out_dir=out_dir,
        resume=resume,
        shard=shard,
        isolation=isolation,
    )
    if user is not None and (problem := user_problem(user)):
        raise click.UsageError(problem)
    achieved = _announce_isolation(isolation, kernel)
    if not resume:
        clear_cache(out_dir)
    try:
        students = _grade_with_progress(submit_dir, options, grade_folder)
    except KeyboardInterrupt:
        click.echo(f"Interrupted. The finished jobs are kept in {out_dir / '.cache'}: run the same "
                   "command with --resume to go on from there.", err=True)
        sys.exit(130)
    write_outputs(out_dir, run_info(options, achieved), students)
    _print_table(students, chosen, out_dir)
    _exit_for(students, fail_under)


@cli.command()
@click.argument("outputs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the merged grades.csv, junit.xml and per-student outputs.")
@click.option("--partial", is_flag=True,
              help="Merge the slices given even when some of the N are missing.")
def merge(outputs: tuple[Path, ...], out_dir: Path, partial: bool) -> None:
    """Combine the outputs of --shard runs into one grades.csv and junit.xml."""
    from .reports import write_outputs

    runs = [_read_run(folder) for folder in outputs]
    missing = _missing_slices(outputs, [info for info, _ in runs])
    if missing and not partial:
        raise click.UsageError(f"slice{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                               "missing: merge every slice, or pass --partial to merge these alone")
    first = runs[0][0]
    for folder, (info, _) in zip(outputs, runs):
        if (info.grader_version, info.seed, info.assignments, info.rubric) != (
                first.grader_version, first.seed, first.assignments, first.rubric):
            raise click.UsageError(
                f"{folder} was graded with grader {info.grader_version}, seed {info.seed}, "
                f"assignments {', '.join(info.assignments)}; {outputs[0]} with grader "
                f"{first.grader_version}, seed {first.seed}, assignments "
                f"{', '.join(first.assignments)}: only slices of the same run can be merged")
    students: dict[str, StudentResult] = {}
    for folder, (_, results) in zip(outputs, runs):
        for student in results:
            if student.student in students:
                raise click.UsageError(f"student {student.student!r} appears in two slices "
                                       f"(again in {folder}): were the slices graded with --shard?")
            students[student.student] = student
    isolation = "; ".join(sorted({info.isolation for info, _ in runs if info.isolation}))
    merged = RunInfo(first.grader_version, first.seed, first.assignments, first.rubric, shard="",
                     isolation=isolation)
    ordered = [students[key] for key in sorted(students)]
    write_outputs(out_dir, merged, ordered)
    click.echo(f"merged {len(outputs)} slices, {len(ordered)} students, into {out_dir}")


def _missing_slices(outputs: tuple[Path, ...], infos: list[RunInfo]) -> list[str]:
    """The K/N slices absent from the outputs (none when they are not --shard slices)."""
    given: dict[tuple[int, int], Path] = {}
    for folder, info in zip(outputs, infos):
        if not info.shard:
            continue
        k, n = (int(part) for part in info.shard.split("/"))
        if (k, n) in given:
            raise click.UsageError(f"slice {k}/{n} is given twice: {given[k, n]} and {folder}")
        given[k, n] = folder
    totals = sorted({n for _, n in given})
    if len(totals) > 1:
        raise click.UsageError(f"the slices come from splits into {' and '.join(map(str, totals))} "
                               "parts: merge the slices of one --shard K/N run")
    return [f"{k}/{totals[0]}" for k in range(1, totals[0] + 1) if (k, totals[0]) not in given] if totals else []


def _announce_isolation(level: str, kernel: bool) -> str:
    """Probe the sandbox's layers, print the line that says what student code gets, and
    stop (exit 2) when ``--isolation strict`` cannot have every layer. Returns that line."""
    if level == "off":
        click.echo("WARNING: --isolation off: student code runs WITHOUT the kernel sandbox: it can "
                   "read the solutions, use the network and signal the grader (debugging only)",
                   err=True)
        click.echo("isolation: off")
        return "isolation: off"
    from .confinement import probe

    found = probe(kernel)
    gaps = found.gaps()
    if gaps and level == "strict":
        click.echo(f"--isolation strict: missing {gaps[0]}", err=True)
        sys.exit(2)
    click.echo(found.describe())
    for gap in gaps:
        click.echo(f"WARNING: weaker isolation than the default: missing {gap}; student code is "
                   "less confined (--isolation strict refuses to grade like this)", err=True)
    return found.describe()


def _usable_cores() -> int:
    # The cores this process may run on (a container's cpuset), not all of the host's.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _read_run(folder: Path) -> tuple[RunInfo, list[StudentResult]]:
    from .reports import read_run

    path = folder / "run.json"
    try:
        info, students = read_run(path)
        return info, list(students)
    except FileNotFoundError:
        raise click.UsageError(f"{folder} has no run.json: is it the --out folder of a grading run?") from None
    except (ValueError, KeyError, TypeError) as error:
        raise click.UsageError(f"{path} is not a valid grading run: {error}") from None


def _course(folder: Path | None) -> Course:
    from .courses import load_course

    try:
        return load_course(folder)
    except InvalidArgument as error:
        raise click.UsageError(str(error)) from None


def _assignments_in(submit_dir: Path, names: tuple[str, ...]) -> tuple[str, ...]:
    # Grade the assignments that anyone submitted, so a class doing two_hidden only is not
    # told about five missing assignments; --assignment chooses explicitly.
    from .submissions import entries

    # Three levels: alice/hw1/two_hidden.py is as deep as a submission sits (see discover).
    found = {p.stem for p, kind in entries(submit_dir, max_depth=3, max_entries=None)
             if kind == "file" and p.suffix in (".py", ".ipynb")}
    chosen = tuple(name for name in names if name in found)
    return chosen or names


def _grade_with_progress(submit_dir: Path, options: object, grade_folder: object) -> list[StudentResult]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    # A class of hundreds grades for minutes: the time left is what the instructor waits on.
    columns = (TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("elapsed,"), TimeRemainingColumn(), TextColumn("left"),
               TextColumn("{task.description}"))
    with Progress(*columns, transient=False, console=_console()) as bar:
        task = bar.add_task("", total=None)
        return grade_folder(  # type: ignore[operator]
            submit_dir, options,
            on_total=lambda total: bar.update(task, total=total),
            progress=lambda label: bar.update(task, advance=1, description=label),
        )


def _print_table(students: list[StudentResult], assignments: tuple[str, ...], out_dir: Path) -> None:
    from rich.table import Table

    table = Table(title="Scores")
    table.add_column("student")
    for name in assignments:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    table.add_column("%", justify="right")
    for student in students:
        cells = []
        for name in assignments:
            result = student.assignment(name)
            cells.append(f"{result.score:g}/{result.max_score:g}" if result else "-")
        table.add_row(student.student, *cells, f"{student.score:g}/{student.max_score:g}",
                      f"{student.percentage:.0f}")
    console = _console()
    console.print(table)
    console.print(f"outputs: {out_dir}/grades.csv, {out_dir}/junit.xml, "
                  f"{out_dir}/<student>/results.json and feedback.md")


def _exit_for(students: list[StudentResult], fail_under: float | None) -> None:
    if fail_under is None:
        return
    below = [s for s in students if s.percentage < fail_under]
    if below:
        names = ", ".join(f"{s.student} ({s.percentage:.0f}%)" for s in below[:10])
        click.echo(f"below --fail-under {fail_under:g}%: {names}", err=True)
        sys.exit(1)


def _console() -> object:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status instead of raising SystemExit."""
    try:
        cli.main(args=argv, prog_name="grader.py", standalone_mode=True)
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    return 0
