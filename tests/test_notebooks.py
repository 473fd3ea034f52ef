"""Real notebooks as students write them, loaded in the sandbox's child process.

Each notebook is written with nbformat and loaded by a real child (plain mode, or a real
Jupyter kernel with ``kernel=True``); the sentences students read are asserted exactly.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from gradcheck.isolation import Limits, Ref, Sandbox

RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
LIMITS = Limits(call_timeout=20, memory_mb=2048)
needs_kernel = pytest.mark.skipif(
    importlib.util.find_spec("ipykernel") is None or importlib.util.find_spec("nbclient") is None,
    reason="needs ipykernel and nbclient",
)

# Three cells as in a Coursera-style notebook: the helpers come from a module the student
# had next to the notebook but did not submit.
IMPORTS = "import numpy as np\nfrom planar_utils import sigmoid, load_planar_dataset"
MODEL = """\
def fprop(x, y, params):
    a = sigmoid(params["W"] @ x)
    return {"loss": float(np.sum((a - y) ** 2)), "a": a}

def update(params, grads, lr):
    return {k: params[k] - lr * grads[k] for k in params}
"""
DEMO = "X, Y = load_planar_dataset()"
PLOT = "print(X.shape)"


def write_notebook(path: Path, *sources: str) -> Path:
    """A notebook whose first cell is markdown, so code cell N is notebook cell N + 1."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Homework")]
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, str(path))
    return path


def load(path: Path, *, kernel: bool = False, limits: Limits = LIMITS):
    sandbox = Sandbox(path, limits=limits, kernel=kernel)
    return sandbox, sandbox.load()


def test_pylab_inline_gives_numpy_and_pyplot_names(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "%pylab inline",
        "def fprop(x, y, params):\n"
        "    plot(linspace(0, 1, 3)); plt.close('all')\n"
        "    return {'loss': float(sum(exp(np.zeros(2))))}\n"
        "def backend():\n    return matplotlib.get_backend()",
    )
    sandbox, loaded = load(path)
    with sandbox:
        assert loaded.ok and loaded.problems == ()
        assert sandbox.call("fprop", 1, 2, 3, pick="loss").value == 2.0
        assert sandbox.call("backend").value.lower() == "agg"


def test_pyplot_is_imported_once_by_the_fork_server_not_by_every_notebook(tmp_path: Path) -> None:
    # 0.3 to 0.6 s of every notebook's grading in a class was the import of pyplot and a font
    # cache rebuilt in the child's empty home; the fork server pays it once.
    pytest.importorskip("matplotlib")
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "import sys\nPRELOADED = 'matplotlib.pyplot' in sys.modules\nimport matplotlib.pyplot as plt",
        "plt.plot([0, 1], [1, 0]); plt.title('a title'); plt.savefig('plot.png'); plt.show()",
        "def preloaded():\n    return PRELOADED, plt.get_backend()",
    )
    sandbox, loaded = load(path)
    with sandbox:
        assert loaded.ok and loaded.problems == ()
        preloaded, backend = sandbox.call("preloaded").value
        assert preloaded and backend.lower() == "agg"


def test_a_future_import_below_a_magic_holds_in_later_cells(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "import numpy as np",
        "%matplotlib inline\nfrom __future__ import annotations\n"
        "def fprop(x, y, params: Params) -> Cache:\n    return {'loss': 1.0}",
        "def update(params: Params, grads, lr):\n    return params",
    )
    sandbox, loaded = load(path)
    with sandbox:
        assert loaded.ok
        assert loaded.problems == ("cell 3: skipped magic %matplotlib inline",)
        assert {"fprop", "update"} <= set(loaded.names)


NEWER_SYNTAX = [
    ("match", (3, 10), "match cache:\n    case {'loss': loss}:\n        pass"),
    ("except-star", (3, 11), "try:\n    pass\nexcept* ValueError:\n    pass"),
    ("type-alias", (3, 12), "type Params = dict[str, float]"),
    ("generic-def", (3, 12), "def first[T](items: list[T]) -> T:\n    return items[0]"),
    ("fstring-quotes", (3, 12), "cache = {'loss': 1}\nprint(f'{cache['loss']}')"),
    ("fstring-backslash", (3, 12), "names = ['a']\nprint(f'{\"\\n\".join(names)}')"),
    ("except-comma", (3, 14), "try:\n    pass\nexcept ValueError, TypeError:\n    pass"),
]


@pytest.mark.parametrize(
    ("version", "source"),
    [pytest.param(version, source, id=name,
                  marks=pytest.mark.skipif(sys.version_info[:2] >= version,
                                           reason=f"valid syntax on Python {RUNNING}"))
     for name, version, source in NEWER_SYNTAX],
)
def test_syntax_of_a_newer_python_says_so(tmp_path: Path, version: tuple[int, int],
                                          source: str) -> None:
    source = "import numpy as np\n\n" + source  # the faulty statement is not on line 1
    path = write_notebook(tmp_path / "nb.ipynb", "x = 1", source, "def fprop(x, y, p):\n  pass")
    sandbox, loaded = load(path)
    with sandbox:
        assert loaded.ok and "fprop" in loaded.names
        (problem,) = loaded.problems
        needed = f"{version[0]}.{version[1]}"
        assert problem.startswith("cell 3 has a syntax error on line ")
        assert problem.endswith(f"; this code may need Python {needed} or newer "
                                f"(the grader runs Python {RUNNING}) (the cell was skipped)")


def test_an_ordinary_syntax_error_names_no_python_version(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", "def fprop(x, y, p):\n    return {'loss': (1}")
    sandbox, loaded = load(path)
    with sandbox:
        assert loaded.problems == ("cell 2 has a syntax error on line 2: closing parenthesis "
                                   "'}' does not match opening parenthesis '(' (the cell was "
                                   "skipped)",)


def test_a_module_in_newer_syntax_says_so(tmp_path: Path) -> None:
    if sys.version_info >= (3, 12):
        pytest.skip(f"valid syntax on Python {RUNNING}")
    path = tmp_path / "two_hidden.py"
    path.write_text("import numpy as np\ntype Params = dict[str, np.ndarray]\n")
    sandbox, loaded = load(path)
    with sandbox:
        assert not loaded.ok
        assert loaded.error == ("two_hidden.py has a syntax error on line 2: invalid syntax; "
                                "this code may need Python 3.12 or newer "
                                f"(the grader runs Python {RUNNING})")


BOTH_MODES = pytest.mark.parametrize(
    "kernel", [False, pytest.param(True, marks=needs_kernel)], ids=["plain", "kernel"])


@BOTH_MODES
def test_a_failed_import_cell_is_the_one_root_cause_of_the_name_errors(
    tmp_path: Path, kernel: bool
) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", IMPORTS, MODEL, DEMO, PLOT,
                          "def bprop(cache):\n    return {'W': cache['a']}")
    sandbox, loaded = load(path, kernel=kernel)
    with sandbox:
        assert loaded.problems == (
            "cell 2 raised ModuleNotFoundError: No module named 'planar_utils' (cell 2, line 2 "
            "of nb.ipynb), so `load_planar_dataset` and `X` are undefined and cells 4 and 5 "
            "failed too (the functions defined in other cells were kept)",
        )
        call = sandbox.call("fprop", np.ones((2, 1)), np.ones((1, 1)), {"W": np.ones((1, 2))})
        assert call.error == (
            "fprop raised NameError: cell 2 failed (ModuleNotFoundError: No module named "
            "'planar_utils'), so `sigmoid` is undefined (cell 3, line 2 of nb.ipynb)")
        assert sandbox.call("bprop", {"a": 1.0}).ok


@BOTH_MODES
def test_functions_a_failed_cell_never_defined_are_named_by_its_cause(
    tmp_path: Path, kernel: bool
) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", IMPORTS + "\n\n" + MODEL)
    sandbox, loaded = load(path, kernel=kernel)
    with sandbox:
        assert loaded.problems == (
            "cell 2 raised ModuleNotFoundError: No module named 'planar_utils' (cell 2, line 2 "
            "of nb.ipynb), so `fprop` and `update` are undefined (the functions defined in "
            "other cells were kept)",
        )
        assert sandbox.call("fprop", 1, 2, 3).error == (
            "fprop is not defined because cell 2 failed (ModuleNotFoundError: No module named "
            "'planar_utils') before defining it")


def test_a_name_defined_again_later_is_not_blamed_on_the_failed_cell(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", IMPORTS, MODEL,
                          "def sigmoid(z):\n    return 1 / (1 + np.exp(-z))", "print(undefined)")
    sandbox, loaded = load(path)
    with sandbox:
        assert loaded.problems[0] == (
            "cell 2 raised ModuleNotFoundError: No module named 'planar_utils' (cell 2, line 2 "
            "of nb.ipynb) (the functions defined in other cells were kept)")
        assert loaded.problems[1] == (
            "cell 5 raised NameError: name 'undefined' is not defined (cell 5, line 1 of "
            "nb.ipynb) (the functions defined in other cells were kept)")
        call = sandbox.call("fprop", np.ones((2, 1)), np.ones((1, 1)), {"W": np.ones((1, 2))},
                            pick="loss")
        assert call.ok, call.error


RUNAWAY_LOOPS = {
    "training": "for epoch in range(100_000):\n    time.sleep(0.01)",
    # Swallows the first interruption: only a second one, raised by its own lines, stops it.
    "bare_except": "while True:\n    try:\n        time.sleep(0.01)\n    except:\n        pass",
}


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)], ids=["plain", "kernel"])
@pytest.mark.parametrize("loop", sorted(RUNAWAY_LOOPS))
def test_a_runaway_cell_is_stopped_and_the_next_ones_run(tmp_path: Path, loop: str, kernel: bool) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "import time\nprint('training')",
        RUNAWAY_LOOPS[loop],
        "def fprop(x, y, params):\n    return {'loss': 1.5}",
    )
    sandbox, loaded = load(path, kernel=kernel, limits=Limits(call_timeout=1.0, memory_mb=2048))
    with sandbox:
        assert loaded.ok, loaded.error
        assert loaded.problems == ("cell 3 ran for more than 1 s and was stopped (the functions "
                                   "defined in other cells were kept)",)
        assert sandbox.call("fprop", 1, 2, 3, pick="loss").value == 1.5
        assert sandbox.output.strip() == "training"  # no IPKernelApp, debugger or nbclient lines


@needs_kernel
def test_kernel_mode_names_cells_and_lines_as_plain_mode_does(tmp_path: Path) -> None:
    cells = ("import numpy as np",
             "def bprop(cache):\n    grads = {}\n    return grads['W'] + cache",
             "x = 1\n\ny = x / 0",
             "%pylab inline\ndef fprop(x, y, params):\n    return {'loss': float(sum(ones(2)))}",
             "type Params = dict\n" if sys.version_info < (3, 12) else "pass")
    expected = None
    for kernel in (False, True):
        sandbox, loaded = load(write_notebook(tmp_path / "nb.ipynb", *cells), kernel=kernel)
        with sandbox:
            results = (loaded.problems, sandbox.call("bprop", 1).error,
                       sandbox.call("fprop", 1, 2, 3, pick="loss").value)
        expected = expected or results
        assert results == expected
    problems, bprop_error, loss = expected
    assert problems[0] == ("cell 4 raised ZeroDivisionError: division by zero (cell 4, line 3 "
                           "of nb.ipynb) (the functions defined in other cells were kept)")
    assert bprop_error == "bprop raised KeyError: 'W' (cell 3, line 3 of nb.ipynb)"
    assert loss == 2.0


@needs_kernel
def test_grader_in_kernel_mode_scores_a_notebook_with_a_runaway_training_cell(tmp_path: Path):
    solution = (Path(__file__).resolve().parent.parent / "solutions" / "three_input.py").read_text()
    submit = tmp_path / "erin"
    submit.mkdir()
    training = "import time\nfor epoch in range(10_000):\n    time.sleep(0.01)  # demo"
    write_notebook(submit / "three_input.ipynb", solution, training)
    out = tmp_path / "out"
    grader = Path(__file__).resolve().parent.parent / "grader.py"
    result = subprocess.run([sys.executable, str(grader), str(submit), "--out", str(out),
                             "--kernel", "--timeout", "1", "--assignment", "three_input"],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    feedback = (out / "erin" / "feedback.md").read_text()
    assert "**Total: 10 / 10**" in feedback
    assert ("- cell 3 ran for more than 1 s and was stopped (the functions defined in other "
            "cells were kept)\n") in feedback
    assert "IPKernelApp" not in feedback and "WARNING" not in feedback
    # What it printed is its own self-check (the solution's __main__ block), nothing of the kernel.
    printed = feedback.split("What your code printed", 1)[-1] if "What your code printed" in feedback else ""
    assert "gradient check of three_input passed" in printed
    assert not any(word in printed for word in ("Traceback", "kernel", "Kernel", "zmq")), printed


@needs_kernel
def test_kernel_mode_says_which_cell_killed_the_kernel(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", "def fprop(x, y, p):\n    pass",
                          "import os\nos._exit(3)")
    sandbox, loaded = load(path, kernel=True)
    with sandbox:
        assert not loaded.ok
        assert loaded.error == ("the Jupyter kernel died while running cell 3 (out of memory, "
                                "or the cell ended its own process)")


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)],
                         ids=["plain", "kernel"])
def test_a_colab_notebook_with_pip_and_input_is_told_the_same_in_both_modes(
    tmp_path: Path, kernel: bool
) -> None:
    # Colab habits: `!pip install` at the top, `files = !ls`, and an input() demo. In the
    # kernel, IPython runs `!cmd` through a pty, which the sandbox lacks; `x = !cmd` runs.
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "!pip install tqdm\nimport numpy as np",
        "def fprop(x, y, params):\n    return {'loss': 1.5}",
        "files = !ls\nprint(files)",
        "name = input('your name: ')\nprint('hello', name)",
    )
    sandbox, loaded = load(path, kernel=kernel)
    with sandbox:
        assert loaded.ok, loaded.error
        assert sandbox.call("fprop", 1, 2, 3, pick="loss").value == 1.5
    skipped = ["cell 2: skipped shell command !pip install tqdm"
               + (" (the grader's sandbox has no terminal)" if kernel else "")]
    skipped += [] if kernel else ["cell 4: skipped shell command !ls"]
    assert list(loaded.problems[:-1]) == skipped
    assert loaded.problems[-1] == (
        "cell 5 called input(), which gets no answer while grading (nobody is at the keyboard): "
        "remove the call, or give the value in the code (cell 5, line 1 of nb.ipynb) (the "
        "functions defined in other cells were kept)")


def grade_folder(submit: Path, out: Path, *args: str, student: str = "") -> str:
    """Run the real grader on a folder; return the feedback.md of one student (its own)."""
    grader = Path(__file__).resolve().parent.parent / "grader.py"
    result = subprocess.run([sys.executable, str(grader), str(submit), "--out", str(out), *args],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return (out / (student or submit.name) / "feedback.md").read_text()


def solution_text(name: str) -> str:
    return (Path(__file__).resolve().parent.parent / "solutions" / f"{name}.py").read_text()


def test_a_notebook_downloaded_as_python_keeps_its_magics_skipped(tmp_path: Path) -> None:
    # What "Download as .py" (nbconvert --to script) makes of `!pip` and `%matplotlib` lines.
    exported = ("#!/usr/bin/env python\n# coding: utf-8\n\n# In[1]:\n\n\n"
                "get_ipython().system('pip install tqdm')\n"
                "get_ipython().run_line_magic('matplotlib', 'inline')\n\n\n# In[2]:\n\n\n")
    submit = tmp_path / "ed"
    submit.mkdir()
    (submit / "three_input.py").write_text(exported + solution_text("three_input"))
    feedback = grade_folder(submit, tmp_path / "out", "--assignment", "three_input")
    assert "**Total: 10 / 10**" in feedback
    assert ("- three_input.py: skipped shell command !pip install tqdm\n"
            "- three_input.py: skipped magic %matplotlib inline\n") in feedback


@pytest.mark.parametrize(("demo", "problem"), [
    ("print(accuracy)\n", "importing three_input.py raised NameError: name 'accuracy' is "
                          "not defined (line {line} of three_input.py)"),
    ("import time\nwhile True:\n    time.sleep(0.01)\n",
     "loading three_input.py did not finish within 1 s"),
], ids=["failing", "endless"])
def test_a_module_with_a_top_level_demo_is_told_to_guard_it(tmp_path: Path, demo: str,
                                                           problem: str) -> None:
    # A module written like a notebook: the functions, then the training code at top level.
    submit = tmp_path / "sam"
    submit.mkdir()
    solution = solution_text("three_input").split('if __name__ == "__main__":')[0]
    (submit / "three_input.py").write_text(solution + demo)
    feedback = grade_folder(submit, tmp_path / "out", "--assignment", "three_input",
                            "--timeout", "1")
    problem = problem.format(line=solution.count("\n") + 1)
    assert "**Total: 0 / 10**" in feedback
    assert (f"- {problem}; the grader imports your file, which runs its top-level code: put "
            'demo and training code under `if __name__ == "__main__":`\n') in feedback


def test_a_module_failing_before_its_functions_gets_no_guard_hint(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text("import tensorflowx\n\ndef fprop(x, y, p):\n    pass\n")
    sandbox, loaded = load(tmp_path / "mod.py")
    with sandbox:
        assert loaded.error == ("importing mod.py raised ModuleNotFoundError: No module named "
                                "'tensorflowx' (line 1 of mod.py)")


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)],
                         ids=["plain", "kernel"])
def test_a_cache_stored_under_other_names_says_which_names_it_has(tmp_path: Path,
                                                                  kernel: bool) -> None:
    # fprop stores 'A1', bprop reads 'a1': the KeyError alone does not say what is there.
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "def fprop(x, y, params):\n    return {'loss': 1.0, 'A1': x, 'a2': y}",
        "def bprop(cache):\n    a1, a2 = cache['a1'], cache['a2']\n    return {'W': a1 * a2}",
        "def update(params, grads, lr):\n    return params['W']",
    )
    sandbox, loaded = load(path, kernel=kernel)
    with sandbox:
        sandbox.call("fprop", 1.0, 2.0, {}, store="cache", pick="loss")
        bprop = sandbox.call("bprop", Ref("cache")).error
        update = sandbox.call("update", {"b": 1.0}, {}, 0.1).error
    assert bprop == ("bprop raised KeyError: 'a1' (cell 3, line 2 of nb.ipynb); the cache your "
                     "fprop returned has no key 'a1', only 'loss', 'A1', 'a2' (did you mean "
                     "'A1'?)")
    assert update == ("update raised KeyError: 'W' (cell 4, line 2 of nb.ipynb); its dict "
                      "argument has no key 'W', only 'b'")


@needs_kernel
def test_kernel_mode_draws_a_gui_backend_inline_and_survives_exit(tmp_path: Path) -> None:
    # A student's own machine had Qt; the sandbox has no display. exit() at the end of a
    # notebook ends the kernel 0.1 s later in Jupyter, in the middle of the grader's calls.
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "%matplotlib qt\nimport numpy as np\nimport matplotlib.pyplot as plt",
        "def fprop(x, y, params):\n    return {'loss': float(np.sum(x))}",
        "plt.plot([1, 2]); plt.show()\nexit()\nprint('not reached')",
        "def update(params, grads, lr):\n    return params",
    )
    sandbox, loaded = load(path, kernel=True)
    with sandbox:
        assert loaded.ok, loaded.error
        time.sleep(0.5)  # past the 0.1 s after which an exit() would have ended the kernel
        assert sandbox.call("fprop", np.ones(3), 2, 3, pick="loss").value == 3.0
        assert sandbox.call("update", {"W": 1.0}, {}, 0.1).value == {"W": 1.0}
    assert loaded.problems == (
        "cell 2: %matplotlib qt needs a display or a package the grader does not have; the "
        "plots were drawn inline instead",
        "cell 4 called sys.exit(None) (the functions defined in other cells were kept)")
    assert "not reached" not in sandbox.output


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)],
                         ids=["plain", "kernel"])
def test_run_magic_brings_the_helpers_a_notebook_needs(tmp_path: Path, kernel: bool) -> None:
    # `%run utils.py` (and a helper notebook) defined sigmoid; plain mode skipped it, so a
    # correct notebook lost every check that plain mode's kernel twin passed.
    (tmp_path / "utils.py").write_text("import numpy as np\n\ndef sigmoid(z):\n"
                                       "    return 1 / (1 + np.exp(-z))\n")
    helper = write_notebook(tmp_path / "helpers.ipynb", "%matplotlib inline\nscale = 2.0")
    assert helper.is_file()
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "%run utils.py\n%run helpers.ipynb\n%run -i missing.py",
        "def fprop(x, y, params):\n    return {'loss': float(scale * np.sum(sigmoid(x)))}",
    )
    sandbox, loaded = load(path, kernel=kernel)
    with sandbox:
        assert loaded.ok, loaded.error
        assert sandbox.call("fprop", np.zeros(3), 2, 3, pick="loss").value == 3.0
    if not kernel:
        assert loaded.problems == (
            "cell 2: skipped magic %matplotlib inline",
            "cell 2: %run missing.py: missing.py was not found (submit it next to the notebook)")


def test_a_bprop_returning_a_tuple_is_told_to_return_a_dict(tmp_path: Path) -> None:
    # Andrew Ng's style: `return dW1, db1, dW2, db2`. Each gradient used to say only
    # "bprop returned no gradient for W1", which the student reads as a missing line.
    solution = solution_text("binary_classifier").split('if __name__ == "__main__":')[0]
    bprop = solution.replace('return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}',
                             "return dW1, db1, dW2, db2")
    assert bprop != solution
    submit = tmp_path / "tess"
    submit.mkdir()
    write_notebook(submit / "binary_classifier.ipynb", bprop)
    feedback = grade_folder(submit, tmp_path / "out", "--assignment", "binary_classifier")
    assert "**Total: 4 / 10**" in feedback
    assert feedback.count(
        "- bprop returned a tuple of 4 items, not a dict of gradients: return {'W1': dW1, "
        "'b1': db1, 'W2': dW2, 'b2': db2}, one entry per parameter\n") == 4


def test_an_fprop_returning_loss_and_cache_is_told_to_return_one_dict(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb",
                          "def fprop(x, y, params):\n    cache = {'x': x}\n    return 1.0, cache")
    sandbox, loaded = load(path)
    with sandbox:
        assert sandbox.call("fprop", 1, 2, 3, pick="loss").error == (
            "fprop returned a tuple of 2 items, not a dict with 'loss': return one dict (the "
            "cache) with the loss stored in it, cache['loss'] = loss")


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)],
                         ids=["plain", "kernel"])
def test_a_function_defined_with_other_parameters_is_shown_the_call(tmp_path: Path,
                                                                    kernel: bool) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "def bprop(cache, params):\n    return {}",
        "def update(params, grads):\n    return params",
    )
    sandbox, loaded = load(path, kernel=kernel)
    with sandbox:
        bprop = sandbox.call("bprop", {"x": 1.0}).error
        update = sandbox.call("update", {}, {}, 0.1).error
    assert bprop == ("bprop raised TypeError: bprop() missing 1 required positional argument: "
                     "'params'; the grader calls bprop with 1 positional argument, as the "
                     "assignment defines it, and yours is bprop(cache, params)")
    assert update == ("update raised TypeError: update() takes 2 positional arguments but 3 "
                      "were given; the grader calls update with 3 positional arguments, as the "
                      "assignment defines it, and yours is update(params, grads)")


def test_a_capture_cell_over_pip_installs_is_run_as_ipython_runs_it(tmp_path: Path) -> None:
    # Colab's way to quieten installs; the body was compiled untransformed: a SyntaxError.
    path = write_notebook(
        tmp_path / "nb.ipynb",
        "%%capture\n!pip install tqdm\nimport numpy as np\n%matplotlib inline",
        "%%time\ndef fprop(x, y, params):\n    return {'loss': float(np.sum(x))}",
    )
    sandbox, loaded = load(path)
    with sandbox:
        assert sandbox.call("fprop", np.ones(2), 2, 3, pick="loss").value == 2.0
    assert loaded.problems == (
        "cell 2: ran the body of cell magic %%capture without the magic",
        "cell 2: skipped shell command !pip install tqdm",
        "cell 2: skipped magic %matplotlib inline",
        "cell 3: ran the body of cell magic %%time without the magic",
    )


@pytest.mark.parametrize("name", ["three_input (1).ipynb", "Copy of three_input.ipynb",
                                  "Three-Input.ipynb"])
def test_a_renamed_download_is_named_in_the_missing_message(tmp_path: Path, name: str) -> None:
    # The browser's second download, Colab's copy, an editor's capitals: still 0 (files are
    # found by name), but the student is told which file to rename.
    for student in ("dora", "gina"):
        (tmp_path / "submit" / student).mkdir(parents=True)
    write_notebook(tmp_path / "submit" / "dora" / name, solution_text("three_input"))
    write_notebook(tmp_path / "submit" / "gina" / "three_input.ipynb", solution_text("three_input"))
    feedback = grade_folder(tmp_path / "submit", tmp_path / "out", "--assignment", "three_input",
                            student="dora")
    assert "**Total: 0 / 10**" in feedback
    assert (f"- three_input.py or three_input.ipynb is missing; `{name}` looks like it: rename "
            "it to three_input.ipynb to have it graded\n") in feedback


@pytest.mark.parametrize("kernel", [False, pytest.param(True, marks=needs_kernel)],
                         ids=["plain", "kernel"])
def test_many_slow_demo_cells_cost_the_cells_not_the_notebook(tmp_path: Path,
                                                              kernel: bool) -> None:
    # Forty experiments of just under the cell limit: together past the load's limit, which
    # killed the child and scored a correct notebook 0. The cells left are told instead.
    submit = tmp_path / "sal"
    submit.mkdir()
    experiments = [f"import time\nprint('experiment {i}')\ntime.sleep(0.9)" for i in range(40)]
    write_notebook(submit / "three_input.ipynb", solution_text("three_input"), *experiments)
    feedback = grade_folder(submit, tmp_path / "out", "--assignment", "three_input",
                            "--timeout", "1", *(["--kernel"] if kernel else []))
    assert "**Total: 10 / 10**" in feedback
    assert re.search(r"- cell \d+ was not run, nor the \d+ cells after it: the cells before took "
                     r"24 s, all the time a notebook gets to load \(shorten the training demos, "
                     r"or put them after the graded functions\)", feedback), feedback
