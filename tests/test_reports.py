"""Renderers and atomic writes: real results in, valid files out, hostile text contained."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import junitparser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck.reports import (
    atomic_write,
    feedback_markdown,
    gradescope_results,
    grades_csv,
    junit_xml,
    read_run,
    student_folder,
    write_outputs,
)
from gradcheck.results import AssignmentResult, CheckResult, RunInfo, StudentResult

ROOT = Path(__file__).resolve().parents[1]
VISIBILITY = {"enum": ["visible", "hidden", "after_due_date", "after_published"]}
# Gradescope's autograder results format (gradescope-autograders.readthedocs.io, "specs").
GRADESCOPE_SCHEMA = {
    "type": "object",
    "required": ["tests"],
    "additionalProperties": False,
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["score", "max_score", "name", "output", "visibility"],
                "additionalProperties": False,
                "properties": {
                    "score": {"type": "number"},
                    "max_score": {"type": "number"},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": VISIBILITY,
                    "extra_data": {"type": "object"},
                },
            },
        },
    },
}
HOSTILE = "\x00\x1b[31m</testcase><failure>&amp;]]><script>alert(1)</script>\ud800 | `` ``` \x7f"


def _check(name: str, score: float, max_score: float, **fields: object) -> CheckResult:
    kind = name.split(":")[0]
    passed = score >= max_score
    summary = fields.pop("summary", f"{name}: {'matches the reference' if passed else 'differs'}")
    return CheckResult("two_hidden", name, kind, score, max_score, passed, summary, **fields)  # type: ignore[arg-type]


def _alice() -> StudentResult:
    checks = (
        _check("fprop", 2, 2),
        *(_check(f"bprop: {p}", 1, 1) for p in ("W1", "b1", "b2", "W3", "b3")),
        _check("bprop: W2", 0, 1, details=("worst entry (0, 1): yours -0.0027, expected -0.0021",),
               diagnosis="dW2 matches the reference transposed", example="hidden example 2 (m=5)",
               relative_error=0.231, figure="figures/two_hidden-W2.png"),
        _check("update", 2, 2),
    )
    two_hidden = AssignmentResult("two_hidden", "two_hidden.ipynb", checks,
                                  problems=("cell 4 raised FileNotFoundError: data.npy",),
                                  output="demo loss 0.25\n", seconds=1.5)
    missing = AssignmentResult("mlp", None, (CheckResult("mlp", "fprop", "fprop", 0, 10, False,
                                                         "mlp.py or mlp.ipynb is missing"),),
                               problems=("mlp is missing",))
    return StudentResult("alice", (two_hidden, missing), unknown_files=("notes.txt",), seconds=2.2)


def _hostile() -> StudentResult:
    check = CheckResult("three_node", HOSTILE, "bprop", 0.0, 6.0, False, HOSTILE, details=(HOSTILE * 3,),
                        diagnosis=HOSTILE, relative_error=float("inf"), figure="../../etc/passwd")
    assignment = AssignmentResult("three_node", HOSTILE, (check,), problems=(HOSTILE,),
                                  output=HOSTILE + "x" * 2_000_000)
    return StudentResult(HOSTILE, (assignment,), notes=(HOSTILE,))


def test_results_json_follows_gradescopes_schema_and_adds_up() -> None:
    data = gradescope_results(_alice())
    jsonschema.validate(data, GRADESCOPE_SCHEMA)
    assert data["score"] == 9.0 == sum(t["score"] for t in data["tests"])
    assert sum(t["max_score"] for t in data["tests"]) == 20
    w2 = next(t for t in data["tests"] if t["name"] == "two_hidden: bprop: W2")
    assert w2["status"] == "failed" and "transposed" in w2["output"] and "(0, 1)" in w2["output"]
    assert "cell 4 raised FileNotFoundError" in data["output"] and "notes.txt" in data["output"]


def test_results_json_visibility_is_validated() -> None:
    assert {t["visibility"] for t in gradescope_results(_alice(), visibility="after_due_date")["tests"]} == {
        "after_due_date"}
    with pytest.raises(ValueError, match="after_due_date"):
        gradescope_results(_alice(), visibility="later")


def test_grades_csv_has_one_sorted_row_per_student() -> None:
    bob = StudentResult("bob", (AssignmentResult("two_hidden", "two_hidden.py", (_check("fprop", 1.5, 2),)),))
    formula = StudentResult("=HYPERLINK(1)", ())
    rows = list(csv.DictReader(io.StringIO(grades_csv([bob, _alice(), formula], ["two_hidden", "mlp"]))))
    assert [r["student"] for r in rows] == ["'=HYPERLINK(1)", "alice", "bob"]
    assert list(rows[1]) == ["student", "two_hidden", "mlp", "total", "max_total"]
    assert rows[1] | {} == {"student": "alice", "two_hidden": "9", "mlp": "0", "total": "9", "max_total": "20"}
    assert (rows[2]["two_hidden"], rows[2]["mlp"], rows[2]["total"]) == ("1.5", "", "1.5")


def test_junit_xml_has_one_testcase_per_check(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(junit_xml([_alice(), _hostile()]), encoding="utf-8")
    suites = list(junitparser.JUnitXml.fromfile(str(path)))
    alice = suites[0]
    cases = list(alice)
    assert len(cases) == 9 and alice.failures == 2
    failed = [c for c in cases if not c.is_passed]
    assert {c.name for c in failed} == {"bprop: W2", "fprop"}
    assert {c.classname for c in cases} == {"alice.two_hidden", "alice.mlp"}
    w2 = next(c for c in failed if c.name == "bprop: W2")
    assert "transposed" in w2.result[0].text


def test_hostile_text_is_stripped_escaped_and_capped() -> None:
    text = junit_xml([_hostile()])
    root = ET.fromstring(text.encode("utf-8"))  # parses: no illegal characters survived
    (case,) = root.iter("testcase")
    assert case.get("name").startswith("\x1b") is False and "</testcase>" in case.get("name")
    assert len(text) < 100_000

    data = gradescope_results(_hostile())
    jsonschema.validate(data, GRADESCOPE_SCHEMA)
    dumped = json.dumps(data)
    assert "\\u0000" not in dumped and len(dumped) < 100_000

    markdown = feedback_markdown(_hostile())
    assert "\x00" not in markdown and "../../etc/passwd" not in markdown and len(markdown) < 60_000
    # Printed output sits verbatim in a fence longer than any backtick run it contains;
    # everywhere else, HTML is escaped.
    prose, fenced, rest = markdown.partition("\n````\n")
    code, fence, after = rest.partition("\n````\n")
    assert fence and "<script>" in code
    assert "<script>" not in prose + after and "&lt;script&gt;" in prose


def test_feedback_speaks_to_the_student() -> None:
    text = feedback_markdown(_alice())
    assert text.startswith("# Feedback for alice")
    assert "| two_hidden | 9 / 10 | 7 of 8 |" in text and "| mlp | 0 / 10 | 0 of 1 |" in text
    for fact in ("bprop: W2: FAILED (0 / 1)", "hidden example 2 (m=5)", "yours -0.0027, expected -0.0021",
                 "2.31e-01", "**Likely cause:** dW2 matches the reference transposed",
                 "![where bprop: W2 differs](figures/two_hidden-W2.png)", "cell 4 raised FileNotFoundError",
                 "demo loss 0.25", "`notes.txt`"):
        assert fact in text, fact


@pytest.mark.parametrize(("student", "prefix"), [
    ("..", "_..-"), (".", "_.-"), ("", "_-"), ("a/../../b", "a_.._.._b-"),
    ("/etc/passwd", "_etc_passwd-"), ("CON", "_CON-"), ("Jos\u00e9 Mar\u00eda", "Jos__Mar_a-"),
])
def test_student_folders_stay_inside_the_output(student: str, prefix: str, tmp_path: Path) -> None:
    folder = student_folder(student)
    assert folder.startswith(prefix) and len(folder) == len(prefix) + 8
    assert (tmp_path / folder).resolve().parent == tmp_path.resolve()
    assert student_folder("alice") == "alice"


def test_an_id_spelled_like_another_s_folder_does_not_share_it() -> None:
    # "with space" -> "with_space-b8b8f25a": a student whose folder is named that must not
    # overwrite the other's results.json (it did: the name was safe, so it was kept).
    taken = student_folder("with space")
    assert student_folder(taken) != taken and student_folder(taken).startswith(taken + "-")


@settings(max_examples=50)
@given(st.text(max_size=40), st.text(max_size=40))
def test_any_student_id_is_a_plain_child_folder_of_its_own(student: str, other: str) -> None:
    name = student_folder(student)
    assert name and "/" not in name and "\\" not in name and not name.startswith(".")
    assert (student_folder(other) == name) == (other == student)


def test_write_outputs_writes_every_file_and_run_json_round_trips(tmp_path: Path) -> None:
    run = RunInfo("0.1.0", 7, ("two_hidden", "mlp"), {"fprop": 2.0})
    students = (_alice(), StudentResult("..", ()), StudentResult("Alice", ()))
    folders = write_outputs(tmp_path, run, students)
    assert folders[".."].parent == tmp_path and folders[".."].name.startswith("_..-")
    assert folders["Alice"] != folders["alice"]  # no clash on case-insensitive file systems
    for folder in folders.values():
        jsonschema.validate(json.loads((folder / "results.json").read_text()), GRADESCOPE_SCHEMA)
        assert (folder / "feedback.md").read_text().startswith("# Feedback for")
    assert (tmp_path / "grades.csv").read_text().splitlines()[0] == "student,two_hidden,mlp,total,max_total"
    ET.parse(tmp_path / "junit.xml")
    again_run, again = read_run(tmp_path / "run.json")
    assert again_run == run and again == students
    assert not list(tmp_path.rglob("*.tmp"))


def test_infinite_errors_are_written_as_strict_json(tmp_path: Path) -> None:
    write_outputs(tmp_path, RunInfo("0.1.0", 0, ("three_node",)), [_hostile()])
    text = (tmp_path / "run.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


_WRITER = textwrap.dedent("""
    import sys
    from gradcheck import reports
    path, size = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    while True:
        reports.atomic_write(path, "B" * size)
""")


def test_killed_writer_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    size = 4_000_000
    atomic_write(target, "A" * size)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), str(size)],
                                 stdout=subprocess.PIPE, env=env)
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        # Kill it while it is in the middle of writing (the loop writes all the time).
        deadline = time.monotonic() + 60  # a guard against hanging, not a timing assertion
        while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "the writer never used a temporary file"
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert target.read_text() in ("A" * size, "B" * size)
        # A SIGKILL cannot clean up its temporary file; it is hidden and never the target.
        for leftover in [p for p in tmp_path.iterdir() if p != target]:
            assert leftover.name.startswith(".results.json.") and leftover.name.endswith(".tmp")
            leftover.unlink()


def test_atomic_write_cleans_up_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "grades.csv"
    atomic_write(target, "old\n")

    def full_disk(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, "new\n")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["grades.csv"]
