"""The Gradescope export: make_autograder.sh builds the zip, run_autograder grades one
submission laid out as Gradescope lays it out (under a temporary AUTOGRADER_ROOT)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import jsonschema
from test_courses import COURSE, REFERENCES
from test_reports import GRADESCOPE_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
GRADESCOPE = ROOT / "examples" / "gradescope"


def test_a_course_exported_to_gradescope_grades_a_submission(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "course.py").write_text(COURSE)
    for name, source in REFERENCES.items():
        (course / f"{name}.py").write_text(textwrap.dedent(source))
    archive = tmp_path / "autograder.zip"
    built = subprocess.run(["bash", str(GRADESCOPE / "make_autograder.sh"), str(course), str(archive)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr

    root = tmp_path / "autograder"
    with zipfile.ZipFile(archive) as handle:
        names = handle.namelist()
        handle.extractall(root / "source")
    assert "setup.sh" in names and "run_autograder" in names and "course/course.py" in names
    assert not any("/tests/" in n or ".venv" in n for n in names)
    (root / "submission").mkdir()
    (root / "results").mkdir()
    (root / "submission" / "affine.py").write_text(textwrap.dedent(REFERENCES["affine"]))
    (root / "submission" / "softmax.py").write_text(
        textwrap.dedent(REFERENCES["softmax"]).replace("return loss, dx / n", "return loss, -dx / n"))
    env = {"AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    ran = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True,
                         text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, GRADESCOPE_SCHEMA)
    tests = {t["name"]: t for t in results["tests"]}
    # affine: 8 of 8; softmax: the loss's 2, not dx's 6 (sign flipped); the rest missing.
    assert results["score"] == 10
    assert any("softmax_loss: dx" in name and t["score"] == 0 for name, t in tests.items())
