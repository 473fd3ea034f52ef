"""Write submit/: example students of the layers course, derived from the references.

Every student is the reference solutions without their solution markers, plus text
edits, so the students never drift from the references (a test regenerates them and
compares). Each buggy student has ONE bug, in one file, named in a comment at its top.

Run ``python examples/courses/layers/make_submissions.py`` to regenerate.
"""

import ast
import sys
import textwrap
from pathlib import Path

import nbformat

COURSE = Path(__file__).resolve().parent
NAMES = ("affine", "relu", "batchnorm", "conv", "softmax", "two_layer_net")

# student -> (file, the bug, the expected score, [(reference text, buggy text), ...]);
# the student's other files are the references.
BUGS = {
    "transposed": (
        "affine", "affine_backward returns dw = dout.T @ x, of shape (M, D) instead of (D, M).",
        "affine 6/8 (forward 2, dx 2, dw 0, db 2); every other assignment full marks (48/50).",
        [("    dw = x.T @ dout\n", "    dw = dout.T @ x\n")]),
    "sign": (
        "relu", "relu_backward returns -dout where x > 0: the gradient's sign is flipped.",
        "relu 2/8 (forward 2, dx 0); every other assignment full marks (44/50).",
        [("    return dout * (x > 0)", "    return -dout * (x > 0)")]),
    "batchnorm_no_mean_term": (
        "batchnorm", "batchnorm_backward drops the mean term (- sum_n dxhat[n]) of dx.",
        ("batchnorm 6/8 (forward 2, dx 0, dgamma 2, dbeta 2); every other assignment full "
         "marks (48/50)."),
        [("(n * dxhat - dxhat.sum(axis=0) - xhat", "(n * dxhat - xhat")]),
    "conv_no_pad": (
        "conv", "conv_backward_naive returns dx with the padding, (N, C, H + 2p, W + 2p).",
        "conv 6/8 (forward 2, dx 0, dw 2, db 2); every other assignment full marks (48/50).",
        [("    dx = dxpad[:, :, p:p + x_shape[2], p:p + x_shape[3]]  # crop the padding away\n",
          "    dx = dxpad\n")]),
    "softmax_not_averaged": (
        "softmax",
        ("softmax_loss sums the loss over the batch instead of averaging it, and dx is "
         "consistent with that sum (N times the reference's)."),
        ("softmax 3/8 (forward 0, dx 3: half its share, consistent with the student's own "
         "loss); every other assignment full marks (45/50)."),
        [("    loss = -log_p[np.arange(n), y].mean()\n",
          "    loss = -log_p[np.arange(n), y].sum()\n"),
         ("    return float(loss), dx / n", "    return float(loss), dx")]),
}
NOTEBOOKS = ("affine", "batchnorm", "conv", "softmax", "two_layer_net")  # relu stays a module
MISSING = ("affine", "softmax")


def reference(name: str) -> str:
    """The reference solution ``name`` without its solution markers."""
    lines = (COURSE / f"{name}.py").read_text().splitlines()
    return "\n".join(line for line in lines if "### BEGIN SOLUTION" not in line
                     and "### END SOLUTION" not in line) + "\n"


def buggy(name: str, bug: str, expected: str, edits: list[tuple[str, str]]) -> str:
    """The reference ``name`` with ``edits``, and a comment naming the bug at its top."""
    text = reference(name)
    for old, new in edits:
        if text.count(old) != 1:  # the reference changed: update the edit, never skip it
            raise SystemExit(f"{name}.py: {old!r} is not in the reference exactly once")
        text = text.replace(old, new)
    head = textwrap.wrap(f"Bug: {bug}", 88) + textwrap.wrap(f"Expected: {expected}", 88)
    return "".join(f"# {line}\n" for line in head) + text


def notebook(name: str) -> nbformat.NotebookNode:
    """The reference as a student's notebook: the docstring, then one cell per statement."""
    source = reference(name)
    tree = ast.parse(source)
    lines = source.splitlines()
    cells = [nbformat.v4.new_markdown_cell(f"# {name}\n\n{ast.get_docstring(tree)}")]
    for node in tree.body[1:]:
        code = "\n".join(lines[node.lineno - 1:node.end_lineno])
        if isinstance(node, ast.If):  # the self-check: students run it unguarded
            code = "\n".join(line[4:] for line in code.splitlines()[1:])
            if name != "affine":
                continue  # one notebook with a demo cell is enough
        cells.append(nbformat.v4.new_code_cell(code))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"{name}-{index}"  # stable ids: regenerating gives identical files
    return nb


def students() -> dict[str, dict[str, str]]:
    """Every student's files: student -> file name -> text."""
    good = {f"{name}.py": reference(name) for name in NAMES}
    result = {"good": good}
    for student, (name, bug, expected, edits) in BUGS.items():
        result[student] = {**good, f"{name}.py": buggy(name, bug, expected, edits)}
    result["notebook"] = {f"{name}.py": reference(name) for name in NAMES if name not in NOTEBOOKS}
    result["notebook"].update({f"{name}.ipynb": nbformat.writes(notebook(name)) + "\n"
                               for name in NOTEBOOKS})
    result["missing"] = {f"{name}.py": reference(name) for name in MISSING}
    result["missing"]["notes.txt"] = "Ran out of time: relu, batchnorm, conv and the net next.\n"
    return result


def write(folder: Path) -> None:
    for student, files in students().items():
        (folder / student).mkdir(parents=True, exist_ok=True)
        for file_name, text in files.items():
            (folder / student / file_name).write_text(text)
        print(f"wrote {folder / student}")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else COURSE / "submit")
