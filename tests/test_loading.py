"""Tests of gradcheck.loading (run in-process: the fixtures here are trusted)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import numpy as np
import pytest

from gradcheck import loading
from gradcheck.loading import LoadError, defined_callables, invoke, load_submission
from gradcheck.wire import Ref

MODULE = '''\
import numpy as np
import helpers

def fprop(x, y, params):
    return {"loss": float(np.sum((x - y) ** 2)), "x": x}

def bprop(cache):
    return {"W": helpers.double(cache["x"])}

if __name__ == "__main__":
    raise SystemExit("the demo block must not run")
'''


@pytest.fixture(autouse=True)
def clean_interpreter() -> Iterator[None]:
    """Undo what loading a submission does to sys.path and sys.modules."""
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def write_notebook(path: Path, *sources: str, markdown: bool = True) -> Path:
    notebook = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_markdown_cell("# Homework")] if markdown else []
    notebook.cells = cells + [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, str(path))
    return path


def test_module_loads_with_helpers_and_without_main_block(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "mod_ok.py").write_text(MODULE)
    loaded = load_submission(tmp_path / "mod_ok.py")
    assert {"fprop", "bprop"} <= set(defined_callables(loaded.namespace))
    assert loaded.namespace["__name__"] == "mod_ok" and loaded.problems == ()
    outcome = invoke(loaded.namespace, {}, "bprop", ({"x": np.ones(2)},), {})
    assert outcome.ok and outcome.value["W"].tolist() == [2.0, 2.0]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def fprop(x:\n    pass\n", r"mod_bad\.py has a syntax error on line 1"),
        ("import tensorflowx\n", "importing mod_bad.py raised ModuleNotFoundError: "
                                 "No module named 'tensorflowx' \\(line 1 of mod_bad.py\\)"),
        ("import sys\nsys.exit(3)\n", r"importing mod_bad\.py called sys\.exit\(3\)"),
        ("   \n\n", r"mod_bad\.py is empty"),
        ("x = 1\x00\n", "mod_bad.py"),
    ],
    ids=["syntax", "import", "exit", "empty", "null-byte"],
)
def test_module_failures_are_load_errors(tmp_path: Path, source: str, message: str) -> None:
    (tmp_path / "mod_bad.py").write_text(source)
    with pytest.raises(LoadError, match=message):
        load_submission(tmp_path / "mod_bad.py")


def test_notebook_with_magics_plots_prints_and_a_failing_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    path = write_notebook(
        tmp_path / "nb_ok.ipynb",
        "%matplotlib inline\nimport numpy as np\nimport matplotlib\nmatplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt",
        "!pip install foo\ndef fprop(x, y, params):\n    return {'loss': 1.0}\nprint('hi')",
        "data = np.loadtxt('data.csv')",
        "plt.plot([1, 2]); plt.show()\ndef bprop(cache):\n    return {}",
        "%%time\ndef update(params, grads, lr):\n    return params",
        "x = (",
    )
    loaded = load_submission(path)
    assert set(defined_callables(loaded.namespace)) >= {"fprop", "bprop", "update"}
    problems = "\n".join(loaded.problems)
    assert "cell 2: skipped magic %matplotlib inline" in problems
    assert "cell 3: skipped shell command !pip install foo" in problems
    assert "cell 4 raised FileNotFoundError" in problems
    assert "(the functions defined in other cells were kept)" in problems
    assert "cell 7 has a syntax error on line 1" in problems
    assert "hi" in capsys.readouterr().out


def test_cell_exceptions_name_the_cell_and_line(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb_err.ipynb", "def bprop(cache):\n\n    return 1 / 0")
    loaded = load_submission(path)
    outcome = invoke(loaded.namespace, {}, "bprop", (None,), {})
    assert outcome.error == ("bprop raised ZeroDivisionError: division by zero "
                             "(cell 2, line 3 of nb_err.ipynb)")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is not json", "not a valid Jupyter notebook"),
        ("", "not a valid Jupyter notebook"),
        ('{"cells": 3}', "not a valid Jupyter notebook"),
    ],
    ids=["text", "empty", "wrong-shape"],
)
def test_invalid_notebooks(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "nb_bad.ipynb").write_text(content)
    with pytest.raises(LoadError, match=message):
        load_submission(tmp_path / "nb_bad.ipynb")


def test_notebook_without_code(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="has no code cells"):
        load_submission(write_notebook(tmp_path / "nb_md.ipynb"))
    with pytest.raises(LoadError, match="only empty code cells"):
        load_submission(write_notebook(tmp_path / "nb_blank.ipynb", "", "  \n"))


def test_fallback_without_ipython_comments_magics_out(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "_transformer", lambda: loading._comment_out_magics)
    path = write_notebook(
        tmp_path / "nb_plain.ipynb",
        "%matplotlib inline\n!ls\ndef fprop(x, y, p):\n    return {}",
        "%%bash\necho hi",
    )
    loaded = load_submission(path)
    assert "fprop" in loaded.namespace
    assert any("skipped cell magic %%bash" in p for p in loaded.problems)
    assert any("skipped shell command !ls" in p for p in loaded.problems)


def test_input_fails_fast_inside_a_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", open("/dev/null"))  # as in the child
    loaded = load_submission(write_notebook(tmp_path / "nb_in.ipynb", "name = input('?')"))
    assert "cell 2 called input(), which gets no answer while grading" in loaded.problems[0]


def test_invoke_keeps_picks_and_resolves_refs() -> None:
    namespace = {"fprop": lambda x: {"loss": x * 2, "x": x}, "bprop": lambda c: c["x"],
                 "ten": 10}
    store: dict[str, object] = {}
    outcome = invoke(namespace, store, "fprop", (3,), {}, keep="cache", pick="loss")
    assert outcome.ok and outcome.value == 6 and store["cache"] == {"loss": 6, "x": 3}
    assert invoke(namespace, store, "bprop", (Ref("cache"),), {}).value == 3
    assert invoke(namespace, store, "bprop", (Ref("nope"),), {}).error == (
        "no value is stored under 'nope'")
    assert invoke(namespace, store, "fprop", (3,), {}, pick="grad").error == (
        "fprop returned a dict without 'grad'")
    assert invoke(namespace, store, "ten", (), {}).error == "ten is a int, not a function"
    assert invoke(namespace, store, "missing", (), {}).error == "missing is not defined"


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(LoadError, match="neither"):
        load_submission(tmp_path / "x.txt")
    with pytest.raises(LoadError, match="was not found"):
        load_submission(tmp_path / "absent.py")


def test_notebook_cells_run_in_main_as_in_jupyter(tmp_path):
    import nbformat

    from gradcheck.loading import load_submission

    cells = [nbformat.v4.new_code_cell('if __name__ == "__main__":\n    def fprop(x, y, params):\n        return {"loss": 0.0}')]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "two_hidden.ipynb")
    assert "fprop" in load_submission(tmp_path / "two_hidden.ipynb").namespace


def test_pylab_uses_agg_and_without_matplotlib_still_gives_numpy_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("pdf")
    loaded = load_submission(write_notebook(tmp_path / "nb_pylab.ipynb", "%pylab inline"))
    assert matplotlib.get_backend().lower() == "agg"
    assert loaded.namespace["plot"] is loaded.namespace["plt"].plot
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    loaded = load_submission(write_notebook(tmp_path / "nb_bare.ipynb", "%pylab inline"))
    assert loaded.namespace["linspace"] is np.linspace and loaded.namespace["np"] is np
    assert "plt" not in loaded.namespace
    assert loaded.problems == ("cell 2: %pylab gave the numpy names only: matplotlib is not "
                               "installed",)
