"""``grader.py --shard K/N`` and ``grader.py merge``: real subprocesses, real output folders.

A small class (twelve students, one assignment, some of them wrong) is graded once whole
and once in three slices; the gradings run side by side to keep the file fast.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gradcheck import networks
from gradcheck.grading import select_shard
from gradcheck.submissions import Submission

ROOT = Path(__file__).resolve().parent.parent
GRADER = ROOT / "grader.py"
ASSIGNMENT = "three_input"
STUDENTS = [f"s{i:02d}" for i in range(12)]
WRONG = {"s01", "s04", "s05", "s10"}  # dW1 sign flipped after bprop: loses that share


def _source(student: str) -> str:
    source = (networks.solutions_dir() / f"{ASSIGNMENT}.py").read_text()
    if student not in WRONG:
        return source
    return source + textwrap.dedent("""

        _correct_bprop = bprop

        def bprop(cache):
            grads = _correct_bprop(cache)
            grads["W1"] = -grads["W1"]
            return grads
        """)


def _write_class(folder: Path, students: list[str]) -> Path:
    for student in students:
        (folder / student).mkdir(parents=True)
        (folder / student / f"{ASSIGNMENT}.py").write_text(_source(student))
    return folder


def _grader(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(GRADER), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GRADER), *map(str, args)], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _students(out: Path) -> list[str]:
    return [s["student"] for s in json.loads((out / "run.json").read_text())["students"]]


def _testcases(out: Path) -> list[tuple[str, str, bool]]:
    root = ET.parse(out / "junit.xml").getroot()
    return sorted((case.get("classname", ""), case.get("name", ""), case.find("failure") is not None)
                  for case in root.iter("testcase"))


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Output folders: whole, 1/3, 2/3, 3/3, 1/3 with seed 1, 2/3 of a larger class."""
    base = tmp_path_factory.mktemp("shard")
    submit = _write_class(base / "submit", STUDENTS)
    larger = _write_class(base / "larger", STUDENTS + [f"late{i}" for i in range(6)])
    jobs = {
        "whole": (submit, ()),
        "1/3": (submit, ("--shard", "1/3")),
        "2/3": (submit, ("--shard", "2/3")),
        "3/3": (submit, ("--shard", "3/3")),
        "seed 1": (submit, ("--shard", "1/3", "--seed", "1")),
        "larger 2/3": (larger, ("--shard", "2/3")),
    }
    outs = {name: base / f"out{i}" for i, name in enumerate(jobs)}
    processes = {name: _grader(folder, "--out", outs[name], "--workers", "1", *extra)
                 for name, (folder, extra) in jobs.items()}
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name}: {stderr}"
    return outs


def test_slices_are_disjoint_and_cover_every_student(runs):
    slices = [_students(runs[f"{k}/3"]) for k in (1, 2, 3)]
    assert all(slices), "every slice of this class has students (the ids are fixed)"
    flat = [student for part in slices for student in part]
    assert len(flat) == len(set(flat))
    assert sorted(flat) == sorted(STUDENTS) == sorted(_students(runs["whole"]))


def test_a_students_slice_does_not_change_when_students_are_added(runs):
    before = set(_students(runs["2/3"]))
    after = set(_students(runs["larger 2/3"]))
    assert after & set(STUDENTS) == before


@given(st.sets(st.text(min_size=1, max_size=12), min_size=1, max_size=30),
       st.sets(st.text(min_size=1, max_size=12), max_size=10), st.integers(1, 9))
def test_select_shard_partitions_and_is_stable_under_added_students(ids, added, n):
    def submissions(names: set[str]) -> list[Submission]:
        return [Submission(name, Path("/nowhere"), {}) for name in sorted(names)]

    slices = [{s.student for s in select_shard(submissions(ids), (k, n))} for k in range(1, n + 1)]
    assert set().union(*slices) == ids and sum(map(len, slices)) == len(ids)
    grown = [{s.student for s in select_shard(submissions(ids | added), (k, n))} for k in range(1, n + 1)]
    assert [part & ids for part in grown] == slices


def test_merge_gives_the_unsharded_grades_and_every_testcase(runs, tmp_path):
    merged = tmp_path / "merged"
    result = _run("merge", runs["1/3"], runs["2/3"], runs["3/3"], "--out", merged)
    assert result.returncode == 0, result.stderr
    assert f"{len(STUDENTS)} students" in result.stdout
    whole_csv = (runs["whole"] / "grades.csv").read_text()
    assert (merged / "grades.csv").read_text() == whole_csv
    rows = {row["student"]: row for row in csv.DictReader(whole_csv.splitlines())}
    assert {s for s in rows if rows[s]["total"] != rows[s]["max_total"]} == WRONG  # a real mix
    cases = _testcases(merged)
    assert cases == _testcases(runs["whole"])
    assert len({classname for classname, _, _ in cases}) == len(STUDENTS)
    assert all((merged / student / "results.json").is_file() for student in STUDENTS)


def test_merge_refuses_slices_graded_with_another_seed(runs, tmp_path):
    result = _run("merge", runs["seed 1"], runs["2/3"], runs["3/3"], "--out", tmp_path / "m")
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert "seed 1" in line and "seed 0" in line
    assert not (tmp_path / "m" / "grades.csv").exists()


def _with_run_field(folder: Path, copy: Path, field: str, value: str) -> Path:
    """A copy of a run's output folder whose run.json says ``field`` is ``value``."""
    shutil.copytree(folder, copy)
    data = json.loads((copy / "run.json").read_text())
    data["run"][field] = value
    (copy / "run.json").write_text(json.dumps(data))
    return copy


def test_merge_refuses_slices_of_another_grader_version(runs, tmp_path):
    other = _with_run_field(runs["3/3"], tmp_path / "other", "grader_version", "0.0.0+other")
    result = _run("merge", runs["1/3"], runs["2/3"], other, "--out", tmp_path / "m")
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert "grader 0.0.0+other" in line
    assert not (tmp_path / "m" / "grades.csv").exists()


def test_merge_refuses_a_folder_without_run_json(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    result = _run("merge", runs["1/3"], tmp_path / "empty", "--out", tmp_path / "m")
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert "has no run.json" in line and "empty" in line


@pytest.mark.parametrize(("folders", "phrase"), [
    (("1/3", "1/3", "2/3", "3/3"), "slice 1/3 is given twice"),
    (("whole", "1/3", "2/3", "3/3"), "appears in two slices"),
    (("1/3", "3/3"), "slice 2/3 missing: merge every slice, or pass --partial"),
])
def test_merge_refuses_overlapping_or_missing_slices(runs, tmp_path, folders, phrase):
    result = _run("merge", *(runs[name] for name in folders), "--out", tmp_path / "m")
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert phrase in line
    assert not (tmp_path / "m" / "grades.csv").exists()


def test_merge_of_some_slices_on_request(runs, tmp_path):
    result = _run("merge", runs["1/3"], runs["3/3"], "--partial", "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    assert sorted(_students(tmp_path / "m")) == sorted(_students(runs["1/3"]) + _students(runs["3/3"]))


def test_merge_refuses_slices_of_different_splits(runs, tmp_path):
    other = _with_run_field(runs["3/3"], tmp_path / "other", "shard", "3/4")
    result = _run("merge", runs["1/3"], runs["2/3"], other, "--out", tmp_path / "m")
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert "splits into 3 and 4 parts" in line


@pytest.mark.parametrize("shard", ["0/3", "4/3", "x", "1/0", "1/2/3"])
def test_bad_shards_are_usage_errors(tmp_path, shard):
    _write_class(tmp_path / "submit", STUDENTS[:1])
    result = _run(tmp_path / "submit", "--shard", shard, "--out", tmp_path / "out")
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert "--shard" in line and repr(shard) in line
    assert not (tmp_path / "out").exists()
