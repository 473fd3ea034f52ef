"""The README's course walk-through, run as written (in a copy of the repository)."""

from __future__ import annotations

import csv
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The README's table of the example students (examples/courses/layers/README.md says why).
TOTALS = {"good": 50, "transposed": 48, "sign": 44, "batchnorm_no_mean_term": 48,
          "conv_no_pad": 48, "notebook": 50}


def _commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```\n<!-- /walkthrough -->", text, re.S)
    assert block, "README.md has no walk-through block"
    lines = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    return [shlex.split(line) for line in lines]


def _copy_of_the_repository(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "grading-results*", "*.zip")
    shutil.copytree(ROOT, copy, ignore=ignore)
    return copy


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    repo = _copy_of_the_repository(tmp_path)
    runs = []
    for command in _commands():
        if command[0] == ".venv/bin/python":
            command = [sys.executable, *command[1:]]
        runs.append(subprocess.run(command, cwd=repo, capture_output=True, text=True,
                                   timeout=600, stdin=subprocess.DEVNULL))
    templates, graded, pytest_run, gradescope = runs
    assert templates.returncode == 0, templates.stderr
    names = {p.name for p in (repo / "layers-templates").iterdir()}
    assert {"affine.py", "affine.ipynb", "conv.py", "two_layer_net.ipynb"} <= names
    assert "### BEGIN SOLUTION" not in (repo / "layers-templates" / "conv.py").read_text()

    assert graded.returncode == 0, graded.stderr
    with open(repo / "layers-results" / "grades.csv", newline="") as handle:
        totals = {row["student"]: float(row["total"]) for row in csv.DictReader(handle)}
    assert {s: totals[s] for s in TOTALS} == TOTALS

    # pytest exits 1 because the "sign" student fails a test; its score is the grader's.
    assert pytest_run.returncode == 1, pytest_run.stdout[-2000:]
    assert f"Score: {TOTALS['sign']} / 50" in pytest_run.stdout

    assert gradescope.returncode == 0, gradescope.stderr
    with zipfile.ZipFile(repo / "layers-autograder.zip") as archive:
        assert "course/course.py" in archive.namelist()
