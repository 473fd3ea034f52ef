"""Student templates are generated from a course's reference solutions and stay in sync."""

import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from gradcheck import networks, templates

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"

AFFINE = '''\
"""affine: a fully connected layer, CS231n style.

    out = x @ w + b        x: (N, D), w: (D, M), b: (M,)
"""

import numpy as np


def affine_forward(x, w, b):
    """Return (out, cache)."""
    ### BEGIN SOLUTION
    out = x @ w + b
    return out, (x, w)
    ### END SOLUTION


def affine_backward(dout, cache):
    """Return (dx, dw, db)."""
    x, w = cache
    ### BEGIN SOLUTION
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)
    ### END SOLUTION


if __name__ == "__main__":
    # Run the layer once on a small batch.
    rng = np.random.default_rng(0)
    out, cache = affine_forward(rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), np.zeros(2))
    print("affine ok", [g.shape for g in affine_backward(np.ones_like(out), cache)])
'''

# Calls both functions of a template and says what each raised; a template is loaded as a
# module (python file) or by running its code cells in order (notebook, as Jupyter would).
CALL_BOTH = '''
import sys, numpy as np
for name, args in (("affine_forward", (np.ones((2, 3)), np.ones((3, 2)), np.ones(2))),
                   ("affine_backward", (np.ones((2, 2)), (np.ones((2, 3)), np.ones((3, 2)))))):
    try:
        namespace[name](*args)
    except NotImplementedError as error:
        print(name, "raised NotImplementedError:", error)
'''
LOAD_MODULE = '''
import importlib.util, sys
spec = importlib.util.spec_from_file_location("affine", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
namespace = vars(module)
'''
LOAD_NOTEBOOK = '''
import nbformat, sys
cells = [c.source for c in nbformat.read(sys.argv[1], as_version=4).cells if c.cell_type == "code"]
namespace = {"__name__": "__main__"}
for source in cells[:-1]:
    exec(source, namespace)
try:
    exec(cells[-1], namespace)  # the self-check calls the student's functions
except NotImplementedError:
    print("self-check raised NotImplementedError")
'''


@pytest.fixture
def course(tmp_path):
    folder = tmp_path / "layers"
    folder.mkdir()
    (folder / "affine.py").write_text(AFFINE)
    (folder / "course.py").write_text("# declares the assignments; not a solution\n")
    return folder


def run_python(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)


def invoke(*args):
    return CliRunner().invoke(templates.cli, [str(arg) for arg in args])


# -- the bundled course -------------------------------------------------------------------


def test_assignments_are_in_sync_with_the_solutions():
    assert templates.main(["--check"]) == 0, "run: python -m gradcheck.templates"


@pytest.mark.parametrize("name", networks.NAMES)
def test_templates_keep_no_solution_and_are_valid_notebooks(name):
    module = (ASSIGNMENTS / f"{name}.py").read_text()
    assert "SOLUTION" not in module and module.count("NotImplementedError") == 3
    notebook = nbformat.read(ASSIGNMENTS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert "SOLUTION" not in nbformat.writes(notebook)
    assert any("def bprop" in cell.source for cell in notebook.cells)


def test_running_a_template_prints_a_report_that_asks_for_the_code():
    result = run_python(ASSIGNMENTS / "two_hidden.py")
    assert result.returncode == 0, result.stderr
    assert "fprop raised NotImplementedError" in result.stdout


def test_a_solution_passes_its_own_self_check():
    result = run_python(ROOT / "solutions" / "two_hidden.py")
    assert result.returncode == 0, result.stderr
    assert "two_hidden" in result.stdout and "NotImplementedError" not in result.stdout


def test_the_generator_knows_no_assignment_kind():
    code = "import sys, gradcheck.templates; print(sorted(m for m in sys.modules if m.startswith('gradcheck')))"
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['gradcheck', 'gradcheck.templates']"


# -- any course ---------------------------------------------------------------------------


def test_a_course_gets_module_and_notebook_templates_in_its_templates_folder(course):
    written = templates.write_templates(course)
    assert written == [course / "templates" / "affine.py", course / "templates" / "affine.ipynb"]
    module = written[0].read_text()
    assert "SOLUTION" not in module and "x @ w + b" not in module.split('"""')[2]
    assert module.count('raise NotImplementedError("write this function")') == 2
    assert module.endswith('print("affine ok", [g.shape for g in affine_backward(np.ones_like(out), cache)])\n')


@pytest.mark.parametrize("suffix, loader", [(".py", LOAD_MODULE), (".ipynb", LOAD_NOTEBOOK)])
def test_templates_run_and_raise_not_implemented_when_called(course, suffix, loader):
    templates.write_templates(course)
    result = run_python("-c", loader + CALL_BOTH, course / "templates" / f"affine{suffix}")
    assert result.returncode == 0, result.stderr
    assert "affine_forward raised NotImplementedError: write this function" in result.stdout
    assert "affine_backward raised NotImplementedError: write this function" in result.stdout
    if suffix == ".ipynb":
        assert "self-check raised NotImplementedError" in result.stdout


def test_the_course_s_support_files_go_beside_the_templates_so_they_run_at_home(course):
    # The template imports a helper the grader copies into each scratch copy: a student who
    # downloads the templates needs it too, or the self-check fails on the import.
    (course / "affine.py").write_text(AFFINE.replace("import numpy as np\n",
                                                     "import numpy as np\nfrom checks import shapes\n"))
    (course / "support" / "data").mkdir(parents=True)
    (course / "support" / "checks.py").write_text("def shapes(*arrays):\n    return [a.shape for a in arrays]\n")
    (course / "support" / "data" / "batch.npy").write_bytes(b"\x93NUMPY binary")
    out = course / "templates"
    assert sorted(p.relative_to(out).as_posix() for p in templates.write_templates(course)) == [
        "affine.ipynb", "affine.py", "checks.py", "data/batch.npy"]
    assert (out / "data" / "batch.npy").read_bytes() == b"\x93NUMPY binary"
    result = run_python("-c", LOAD_MODULE + CALL_BOTH, out / "affine.py", cwd=out)
    assert "affine_backward raised NotImplementedError" in result.stdout, result.stderr
    (course / "support" / "checks.py").write_text("def shapes(*arrays):\n    return []\n")
    assert templates.stale_templates(course) == [out / "checks.py"]


def test_the_notebook_has_the_docstring_then_one_cell_per_function_then_the_self_check(course):
    notebook = templates.notebook_template(course / "affine.py")
    nbformat.validate(notebook)
    kinds = [cell.cell_type for cell in notebook.cells]
    sources = [cell.source for cell in notebook.cells]
    assert kinds == ["markdown", "code", "code", "code", "code"]
    assert sources[0].startswith("# affine: a fully connected layer, CS231n style\n\n    out = x @ w + b")
    assert sources[0].endswith("Write `affine_forward` and `affine_backward` below, "
                               "then run the last cell to check your code.")
    assert sources[1] == "import numpy as np"
    assert sources[2].startswith("def affine_forward") and sources[3].startswith("def affine_backward")
    assert sources[4].startswith("# Run the layer once on a small batch.\nrng = np.random")
    assert "__main__" not in sources[4]
    assert [cell.id for cell in notebook.cells] == [f"affine-{i}" for i in range(5)]


def test_regenerating_gives_byte_identical_files(course):
    first = templates.write_templates(course)
    contents = {path: path.read_bytes() for path in first}
    assert templates.write_templates(course) == []
    (course / "templates" / "affine.ipynb").unlink()
    templates.write_templates(course)
    assert {path: path.read_bytes() for path in first} == contents


def test_percent_format_solutions_keep_their_own_cells(tmp_path):
    (tmp_path / "relu.py").write_text(textwrap.dedent('''\
        # %% [markdown]
        # # ReLU
        # Write the forward and backward pass.

        # %%
        import numpy as np

        # %%
        def relu_forward(x):
            ### BEGIN SOLUTION
            return np.maximum(x, 0), x
            ### END SOLUTION

        def relu_backward(dout, cache):
            ### BEGIN SOLUTION
            return dout * (cache > 0)
            ### END SOLUTION

        # %%
        if __name__ == "__main__":
            print(relu_forward(np.arange(-2, 3)))
        '''))
    cells = templates.notebook_template(tmp_path / "relu.py").cells
    assert [(cell.cell_type, cell.source.splitlines()[0]) for cell in cells] == [
        ("markdown", "# ReLU"), ("code", "import numpy as np"), ("code", "def relu_forward(x):"),
        ("code", "print(relu_forward(np.arange(-2, 3)))")]
    assert cells[0].source == "# ReLU\nWrite the forward and backward pass."
    assert cells[2].source.count("NotImplementedError") == 2
    assert "# %%" in templates.module_template(tmp_path / "relu.py")  # still jupytext-readable


def test_the_old_single_hash_markers_are_accepted(tmp_path):
    (tmp_path / "old.py").write_text("def f(x):\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION\n")
    assert templates.module_template(tmp_path / "old.py") == (
        'def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError("write this function")\n')


# -- instructor mistakes ------------------------------------------------------------------

BODY = "def f(x):\n    y = 2 * x\n"
MISTAKES = {
    "unclosed": (BODY + "    ### BEGIN SOLUTION\n    return y\n", 3, "never closed"),
    "unopened": (BODY + "    return y\n    ### END SOLUTION\n", 4, "without a BEGIN SOLUTION"),
    "nested": (BODY + "    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return y\n"
               "    ### END SOLUTION\n    ### END SOLUTION\n", 4, "do not nest"),
    "no_marker": (BODY + "    return y\n", 1, "no ### BEGIN SOLUTION"),
    "misspelt": (BODY + "    ##BEGIN SOLUTION\n    return y\n    ### END SOLUTION\n", 3,
                 "is not a solution marker"),
    "lower_case": (BODY + "    ### begin solution\n    return y\n    ### end solution\n", 3,
                   "is not a solution marker"),
    "after_code": (BODY + "    return y  ### BEGIN SOLUTION\n    ### END SOLUTION\n", 3,
                   "alone on its line"),
    "module_level": ("import numpy as np\n### BEGIN SOLUTION\nW = np.eye(2)\n### END SOLUTION\n", 2,
                     "not inside a function"),
    "cuts_a_statement": ("def f(x):\n    return (x +\n    ### BEGIN SOLUTION\n        1)\n"
                         "    ### END SOLUTION\n", 3, "not valid Python"),
    "solution_not_python": ("def f(x:\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n",
                            1, "the solution is not valid Python"),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_marker_mistakes_name_the_file_and_line(tmp_path, mistake):
    source, line, words = MISTAKES[mistake]
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(templates.TemplateError) as caught:
        templates.module_template(path)
    assert str(caught.value).startswith(f"{path}:{line}: ") and words in str(caught.value)


def test_a_marker_inside_a_string_is_not_a_marker(tmp_path):
    (tmp_path / "doc.py").write_text('"""Mark answers with\n### BEGIN SOLUTION\n"""\n\n'
                                     "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n")
    assert "### BEGIN SOLUTION\n" in templates.module_template(tmp_path / "doc.py")


def test_a_mistake_in_one_solution_writes_no_template(course):
    (course / "broken.py").write_text(MISTAKES["unclosed"][0])
    result = invoke("--course", course)
    assert result.exit_code == 2
    assert f"Error: {course / 'broken.py'}:3: BEGIN SOLUTION is never closed" in result.output
    assert not (course / "templates").exists()


# -- the command line ---------------------------------------------------------------------


def test_check_exits_1_listing_stale_templates_and_0_when_in_sync(course):
    out = course / "templates"
    assert invoke("--course", course, "--check").exit_code == 1  # nothing generated yet
    assert invoke("--course", course).exit_code == 0
    assert invoke("--course", course, "--check").exit_code == 0
    (course / "affine.py").write_text(AFFINE.replace("dout.sum(axis=0)", "np.sum(dout, axis=0)"))
    assert invoke("--course", course, "--check").exit_code == 0  # an answer is not in a template
    (course / "affine.py").write_text(AFFINE.replace("Return (dx, dw, db).", "Return dx, dw and db."))
    (out / "affine.ipynb").unlink()
    result = invoke("--course", course, "--check")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{out / 'affine.py'} is out of date: run python -m gradcheck.templates --course {course}",
        f"{out / 'affine.ipynb'} is out of date: run python -m gradcheck.templates --course {course}"]
    assert not (out / "affine.ipynb").exists()  # --check writes nothing


def test_out_chooses_the_templates_folder(course, tmp_path):
    assert invoke("--course", course, "--out", tmp_path / "given").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "given").iterdir()) == ["affine.ipynb", "affine.py"]
    assert not (course / "templates").exists()


def test_templates_never_overwrite_the_solutions(course):
    result = invoke("--course", course, "--out", course)
    assert result.exit_code == 2 and "would overwrite the reference solutions" in result.output
    assert (course / "affine.py").read_text() == AFFINE


def test_help_writes_nothing(course):
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in ASSIGNMENTS.iterdir()}
    for args in (["--help"], ["--course", course, "--help"], ["-h"]):
        result = run_python("-m", "gradcheck.templates", *args, cwd=course)
        assert result.returncode == 0 and "--check" in result.stdout, result.stderr
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in ASSIGNMENTS.iterdir()} == before
    assert sorted(p.name for p in course.iterdir()) == ["affine.py", "course.py"]


@pytest.mark.parametrize("args, words", [
    (["--bogus"], "No such option '--bogus'"),
    (["--course", "EMPTY"], "holds no reference solution"),
    (["--course", "MISSING"], "does not exist"),
])
def test_usage_errors_exit_2_with_one_error_line(tmp_path, args, words):
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "empty") if a == "EMPTY" else str(tmp_path / "no") if a == "MISSING" else a
            for a in args]
    result = run_python("-m", "gradcheck.templates", *args, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
