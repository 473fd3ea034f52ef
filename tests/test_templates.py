"""Student templates are generated from the solutions and stay in sync with them."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from gradcheck import networks, templates

ASSIGNMENTS = Path(__file__).resolve().parent.parent / "assignments"


def test_assignments_are_in_sync_with_the_solutions():
    assert templates.main(["--check"]) == 0, "run: python -m gradcheck.templates"


@pytest.mark.parametrize("name", networks.NAMES)
def test_templates_keep_no_solution_and_are_valid_notebooks(name):
    module = (ASSIGNMENTS / f"{name}.py").read_text()
    assert "BEGIN SOLUTION" not in module and module.count("NotImplementedError") == 3
    notebook = nbformat.read(ASSIGNMENTS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert any("def bprop" in cell.source for cell in notebook.cells)


def test_running_a_template_prints_a_report_that_asks_for_the_code():
    result = subprocess.run([sys.executable, str(ASSIGNMENTS / "two_hidden.py")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "fprop raised NotImplementedError" in result.stdout
