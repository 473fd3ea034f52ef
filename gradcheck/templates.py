"""Generate the student templates in ``assignments/`` from the worked solutions.

Each solution marks its answers with ``# BEGIN SOLUTION`` / ``# END SOLUTION``; the
template keeps everything else and replaces each marked block with a stub that raises
``NotImplementedError``. Templates are generated, never edited by hand, so they cannot
drift from the solutions (a test checks that they are in sync).

Usage::

    python -m gradcheck.templates            # rewrite assignments/
    python -m gradcheck.templates --check    # exit 1 if assignments/ is out of date
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat

from . import networks

__all__ = ["module_template", "notebook_template", "write_templates", "main"]

_BLOCK = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION\n.*?^[ \t]*# END SOLUTION\n", re.S | re.M)


def module_template(name: str) -> str:
    """The student module for assignment ``name``: the solution with its answers removed."""
    source = (networks.solutions_dir() / f"{name}.py").read_text()
    stubbed = _BLOCK.sub(_stub, source)
    return stubbed.rstrip("\n") + "\n\n\n" + _self_check(name) + "\n"


def notebook_template(name: str) -> nbformat.NotebookNode:
    """The same template as a notebook: one markdown cell, then one code cell per definition."""
    net = networks.get(name)
    source = module_template(name)
    tree = ast.parse(source)
    lines = source.splitlines()
    docstring = ast.get_docstring(tree) or ""
    cells = [nbformat.v4.new_markdown_cell(_markdown(net, docstring))]
    body = [node for node in tree.body if not _is_docstring(node)]
    chunks = _chunks(lines, body)
    cells += [nbformat.v4.new_code_cell(chunk) for chunk in chunks]
    for index, cell in enumerate(cells):
        cell["id"] = f"{name}-{index}"  # stable ids: regenerating gives identical files
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return notebook


def write_templates(folder: Path) -> list[Path]:
    """Write ``NAME.py`` and ``NAME.ipynb`` for every network into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in networks.NAMES:
        module = folder / f"{name}.py"
        module.write_text(module_template(name))
        notebook = folder / f"{name}.ipynb"
        notebook.write_text(nbformat.writes(notebook_template(name)) + "\n")
        written += [module, notebook]
    return written


def main(argv: list[str] | None = None) -> int:
    """Regenerate assignments/ (or, with --check, report whether it is up to date)."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(__file__).resolve().parent.parent / "assignments"
    if "--check" in args:
        stale = [name for name in networks.NAMES if _stale(folder, name)]
        for name in stale:
            print(f"assignments/{name}.* is out of date: run python -m gradcheck.templates")
        return 1 if stale else 0
    for path in write_templates(folder):
        print(f"wrote {path}")
    return 0


def _stale(folder: Path, name: str) -> bool:
    module, notebook = folder / f"{name}.py", folder / f"{name}.ipynb"
    if not (module.is_file() and notebook.is_file()):
        return True
    return (module.read_text() != module_template(name)
            or notebook.read_text() != nbformat.writes(notebook_template(name)) + "\n")


def _stub(match: re.Match[str]) -> str:
    indent = match.group("indent")
    return (f"{indent}# YOUR CODE HERE\n"
            f'{indent}raise NotImplementedError("write this function")\n')


def _self_check(name: str) -> str:
    return f'''if __name__ == "__main__":
    # Check your bprop against finite differences of your own fprop, on a random batch.
    import gradcheck

    network = gradcheck.networks.get("{name}")
    example = network.random_example(np.random.default_rng(0), m=4)
    report = gradcheck.check_gradients(
        fprop, bprop, example.x, example.y, example.params,
        fprop_kwargs=example.options, name="{name}",
    )
    print(report)'''


def _markdown(net: networks.Network, docstring: str) -> str:
    return (f"# {net.name}: {net.title}\n\n"
            f"Source: `{net.document}`. {net.summary}.\n\n"
            f"```\n{docstring}\n```\n\n"
            "Write `fprop`, `bprop` and `update` below. The last cell checks your `bprop` "
            "against finite differences of your own `fprop`.")


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)


def _chunks(lines: list[str], body: list[ast.stmt]) -> list[str]:
    # Imports and helpers share the first cell; each function and the self-check get their own.
    chunks, current = [], []
    for node in body:
        text = "\n".join(lines[node.lineno - 1 - len(getattr(node, "decorator_list", [])): node.end_lineno])
        if node.__class__.__name__ == "If":  # the __main__ self-check, unwrapped for a notebook
            text = _unwrap_main(text)
        starts_cell = isinstance(node, ast.FunctionDef) and node.name in {"fprop", "bprop", "update"}
        if (starts_cell or node.__class__.__name__ == "If") and current:
            chunks.append("\n\n".join(current))
            current = []
        current.append(text)
    chunks.append("\n\n".join(current))
    return chunks


def _unwrap_main(text: str) -> str:
    body = text.splitlines()[1:]
    return "\n".join(line[4:] if line.startswith("    ") else line for line in body)


if __name__ == "__main__":
    sys.exit(main())
