"""Write examples/submit/: three students for the README's main command.

- alice: modules, correct.
- bob: notebooks, correct, with IPython magics, a plot, prints and a demo cell that fails
  (it reads a data file that is not there).
- carol: modules with classic bugs: two_hidden's dW2 is transposed; binary_classifier's
  fprop averages the loss over the batch and bprop is consistent with that (wrong) fprop.

Run ``python examples/make_submissions.py`` to regenerate.
"""

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent
SOLUTIONS = ROOT.parent / "solutions"
ASSIGNMENTS = ("two_hidden", "binary_classifier")


def solution_body(name: str) -> str:
    text = (SOLUTIONS / f"{name}.py").read_text()
    return "\n".join(line for line in text.splitlines() if "SOLUTION" not in line) + "\n"


def write_alice(folder: Path) -> None:
    for name in ASSIGNMENTS:
        (folder / f"{name}.py").write_text(solution_body(name))


def write_bob(folder: Path) -> None:
    for name in ASSIGNMENTS:
        body = solution_body(name)
        head, _, rest = body.partition("def fprop")
        cells = [
            nbformat.v4.new_markdown_cell(f"# {name}\nMy implementation, with a little training demo."),
            nbformat.v4.new_code_cell("%matplotlib inline\n!pip install --quiet numpy\nimport numpy as np\n"
                                      "import matplotlib.pyplot as plt"),
            nbformat.v4.new_code_cell(head.split('"""', 2)[-1].strip()),
            nbformat.v4.new_code_cell("def fprop" + rest),
            nbformat.v4.new_code_cell("data = np.loadtxt('training_data.csv')  # only on my laptop"),
            nbformat.v4.new_code_cell(
                "print('plotting the sigmoid')\nzs = np.linspace(-5, 5, 50)\n"
                "plt.plot(zs, sigmoid(zs))\nplt.title('sigmoid')\nplt.show()"),
        ]
        notebook = nbformat.v4.new_notebook(cells=cells)
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        for index, cell in enumerate(notebook.cells):
            cell["id"] = f"bob-{name}-{index}"
        nbformat.write(notebook, folder / f"{name}.ipynb")


def write_carol(folder: Path) -> None:
    two_hidden = solution_body("two_hidden").replace(
        'grads[f"W{layer}"] = delta @ a_prev.T',
        'grads[f"W{layer}"] = (a_prev @ delta.T) if layer == 2 else (delta @ a_prev.T)')
    (folder / "two_hidden.py").write_text(two_hidden)
    binary = solution_body("binary_classifier")
    binary = binary.replace("loss = -np.sum(y * np.log(a2) + (1 - y) * np.log(1 - a2))",
                            "loss = -np.mean(y * np.log(a2) + (1 - y) * np.log(1 - a2))")
    binary = binary.replace("dz2 = a2 - y  # (1, m)", "dz2 = (a2 - y) / y.shape[1]  # (1, m)")
    (folder / "binary_classifier.py").write_text(binary)
    (folder / "notes.txt").write_text("I was not sure about the mean vs the sum.\n")


if __name__ == "__main__":
    for student, write in (("alice", write_alice), ("bob", write_bob), ("carol", write_carol)):
        folder = ROOT / "submit" / student
        folder.mkdir(parents=True, exist_ok=True)
        write(folder)
        print(f"wrote {folder}")
