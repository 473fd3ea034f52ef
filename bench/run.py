"""Benchmarks of issue 7, each reported as a ratio measured in the same run.

    python -m bench [--json] [--quick] [--only NAME ...] [--repeat N]

- ``numerical``: wall time of ``gradcheck.numerical_gradient`` (central, 2P loss calls)
  against 2P times one loss evaluation, for an MLP loss with P = 1,000, 10,000, 100,000,
  side by side with document 003's loop (copy per entry, O(P^2): small sizes only),
  ``scipy.optimize.approx_fprime``, the CS231n ``np.nditer`` loop and, when torch is
  importable, ``torch.autograd.gradcheck`` in float64 (torch is never a dependency).
- ``fast``: the fast check on an MLP with 1,000,000 parameters: loss evaluations (target
  <= 50, against 2,000,001 for the full check) and wall time in units of one loss call.
- ``conv``: ``gradcheck.check_layer`` on a naive conv layer (8x3x16x16 input, 4x3x3x3
  filters, pad 1): the full check against 2P forward calls (target <= 1.05x), the fast
  check's forward calls (target < 60), beside torch's gradcheck and jax's check_grads when
  installed (see bench/conv.py).
- ``memory``: peak RSS of that fast check (in a fresh subprocess, ``resource.getrusage``)
  over the memory of the parameters (target < 3).
- ``throughput``: ``grader.py --workers 2`` on 200 generated students (five modules each,
  60% correct, the others with one-line bugs of ``tests/bug_corpus.py``) against 200 bare
  ``python -c "import numpy"`` starts (target: faster in total).
- ``sandbox``: the same students graded with the kernel sandbox (``--isolation best``) and
  without it (``--isolation off``), side by side: modules per minute and their ratio
  (target: the sandbox keeps at least 90% of the throughput).

Adding a benchmark is one function ``bench_NAME(options) -> list[Row]`` registered in
:data:`BENCHMARKS`. BLAS runs on one thread unless the environment says otherwise, so
that a loss call costs the same in every column.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from copy import copy
from dataclasses import asdict, dataclass
from typing import Any
from pathlib import Path

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # before numpy is imported

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # python bench/run.py
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import gradcheck  # noqa: E402
from gradcheck import networks  # noqa: E402

# Widths (n0, H, 1) with exactly P = H * (n0 + 2) + 1 parameters.
WIDTHS = {1_000: (35, 27, 1), 10_000: (99, 99, 1), 100_000: (367, 271, 1), 1_000_000: (999, 999, 1)}
BATCH = 8


@dataclass(frozen=True)
class Row:
    """One measured line of the table."""

    benchmark: str
    case: str
    method: str
    calls: int | None = None
    """Loss evaluations made."""
    seconds: float | None = None
    ratio: float | None = None
    """The benchmark's figure of merit (see ``unit``)."""
    unit: str = ""
    target: str = ""
    note: str = ""


@dataclass(frozen=True)
class Options:
    quick: bool = False
    repeat: int = 3


@dataclass
class Problem:
    """An MLP loss ``loss(params) -> float`` on a fixed batch, and its pieces."""

    size: int
    x: np.ndarray
    y: np.ndarray
    params: dict[str, np.ndarray]
    options: dict[str, object]

    def loss(self, params: dict[str, np.ndarray]) -> float:
        return self.fprop(self.x, self.y, params)["loss"]

    @property
    def fprop(self) -> Callable[..., dict]:
        return networks.get("mlp").solution().fprop


def mlp_problem(size: int, m: int = BATCH, seed: int = 0) -> Problem:
    """The reference MLP (sigmoid, squared loss) with ``size`` parameters, batch ``m``."""
    example = networks.get("mlp").random_example(
        np.random.default_rng(seed), m, widths=WIDTHS[size], activations=("sigmoid", "sigmoid"),
        loss="squared")
    params = {key: value.copy() for key, value in example.params.items()}
    return Problem(size, example.x, example.y, params, dict(example.options))


def _best(function: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


# -- target 1: the full numerical gradient at the 2P limit ---------------------------------


def document_003_loop(fprop: Callable[..., dict], x: np.ndarray, y: np.ndarray,
                      params: dict[str, np.ndarray], eps: float = 1e-6) -> dict[str, np.ndarray]:
    """Document 003's loop in Python 3 (``range``, ``import copy``): two copies per entry."""
    ng_cache = {}
    for key in params:
        param = params[key]
        ng = np.zeros(param.shape)
        for j in range(ng.shape[0]):
            for k in range(ng.shape[1]):
                add_eps, min_eps = np.copy(param), np.copy(param)
                add_eps[j, k] += eps
                min_eps[j, k] -= eps
                add_params, min_params = copy(params), copy(params)
                add_params[key], min_params[key] = add_eps, min_eps
                ng[j, k] = (fprop(x, y, add_params)["loss"] - fprop(x, y, min_params)["loss"]) / (2 * eps)
        ng_cache[key] = ng
    return ng_cache


def cs231n_loop(loss: Callable[[dict], float], params: dict[str, np.ndarray], h: float = 1e-6) -> dict[str, np.ndarray]:
    """The CS231n ``eval_numerical_gradient`` loop: ``np.nditer`` over each array, in place."""
    grads = {}
    for key, x in params.items():
        grad = np.zeros_like(x)
        it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
        while not it.finished:
            ix = it.multi_index
            oldval = x[ix]
            x[ix] = oldval + h
            fxph = loss(params)
            x[ix] = oldval - h
            fxmh = loss(params)
            x[ix] = oldval
            grad[ix] = (fxph - fxmh) / (2 * h)
            it.iternext()
        grads[key] = grad
    return grads


def scipy_loop(loss: Callable[[dict], float], params: dict[str, np.ndarray]) -> np.ndarray:
    """``scipy.optimize.approx_fprime`` on the flattened parameters (forward differences)."""
    from scipy.optimize import approx_fprime

    keys = list(params)
    flat = np.concatenate([params[k].reshape(-1) for k in keys])
    bounds = np.cumsum([0] + [params[k].size for k in keys])

    def f(vector: np.ndarray) -> float:  # views into scipy's vector: no copy per call
        return loss({k: vector[bounds[i]:bounds[i + 1]].reshape(params[k].shape) for i, k in enumerate(keys)})

    return approx_fprime(flat, f, 1e-6)


def torch_gradcheck(problem: Problem) -> tuple[float, int] | str:
    """``torch.autograd.gradcheck`` (float64) on the same loss; a note when torch is absent."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (optional, never a dependency): skipped"
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    tensors = tuple(torch.from_numpy(v.copy()).requires_grad_(True) for v in problem.params.values())
    calls = [0]

    def loss(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        a = torch.sigmoid(w2 @ torch.sigmoid(w1 @ x + b1) + b2)
        return 0.5 * torch.sum((y - a) ** 2)

    start = time.perf_counter()
    torch.autograd.gradcheck(loss, tensors, eps=1e-6, atol=1e-5, rtol=1e-3)
    return time.perf_counter() - start, calls[0]


def bench_numerical(options: Options) -> list[Row]:
    """Target 1: numerical_gradient within 1.05x of 2P loss calls; other loops alongside."""
    rows = []
    for size in (1_000, 10_000) if options.quick else (1_000, 10_000, 100_000):
        problem = mlp_problem(size)
        params, loss = problem.params, problem.loss
        repeat = options.repeat if size < 100_000 else 1

        def baseline() -> None:
            for _ in range(2 * size):
                loss(params)

        # Interleave the two measurements so that drift in the machine hits both.
        limit, ours = float("inf"), float("inf")
        for _ in range(repeat):
            limit = min(limit, _best(baseline, 1))
            ours = min(ours, _best(lambda: gradcheck.numerical_gradient(loss, params), 1))
        one = limit / (2 * size)
        case = f"P={size:,}"

        def row(method: str, seconds: float, calls: int, note: str = "") -> Row:
            per_call = seconds / (calls * one)
            return Row("numerical", case, method, calls, seconds, seconds / limit, "x (2P loss calls)",
                       "<= 1.05" if method.startswith("gradcheck") else "",
                       (note + "; " if note else "") + f"{per_call:.2f}x its own calls")

        rows.append(Row("numerical", case, "2P loss calls (the limit)", 2 * size, limit, 1.0,
                        "x (2P loss calls)", note=f"one loss call {one * 1e6:.1f} us (batch {BATCH})"))
        rows.append(row("gradcheck.numerical_gradient", ours, 2 * size))
        if size <= 10_000:
            seconds = _best(lambda: document_003_loop(problem.fprop, problem.x, problem.y, params), 1)
            rows.append(row("document 003 loop (Py3)", seconds, 2 * size, "copy per entry, O(P^2)"))
        else:
            rows.append(Row("numerical", case, "document 003 loop (Py3)",
                            note="not run: copies the array per entry, O(P^2)"))
        rows.append(row("CS231n nditer loop", _best(lambda: cs231n_loop(loss, params), 1), 2 * size))
        rows.append(row("scipy approx_fprime", _best(lambda: scipy_loop(loss, params), 1), size + 1,
                        "forward differences, O(eps) error"))
        if size <= 10_000:
            result = torch_gradcheck(problem)
            if isinstance(result, str):
                rows.append(Row("numerical", case, "torch.autograd.gradcheck", note=result))
            else:
                rows.append(row("torch.autograd.gradcheck", result[0], result[1],
                                "float64, torch's own loss, plus the analytic Jacobian"))
    return rows


# -- targets 2 and 4: the fast check -------------------------------------------------------


def bench_fast(options: Options) -> list[Row]:
    """Target 2: the fast check of a 1,000,000-parameter MLP, in loss evaluations."""
    problem = mlp_problem(1_000_000, m=BATCH)
    solution = networks.get("mlp").solution()
    one = _best(lambda: problem.loss(problem.params), 20)

    def check(bprop: Callable[[object], object]) -> gradcheck.GradientReport:
        return gradcheck.check_gradients(problem.fprop, bprop, problem.x, problem.y, problem.params,
                                         fprop_kwargs=problem.options, mode="fast")

    # Best of --repeat, as the loss call it is compared with (best of 20): the first run also
    # imports gradcheck.fast and touches fresh memory for the first time.
    report = check(solution.bprop)
    seconds = _best(lambda: check(solution.bprop), options.repeat)
    rows = [Row("fast", "P=1,000,000, correct", "check_gradients(mode='fast')", report.evaluations,
                seconds, seconds / one, "x one loss call (wall time)", "<= 50 calls",
                f"ok={report.ok}; full check: {2 * 1_000_000 + 1:,} calls, "
                f"{2_000_001 / report.evaluations:,.0f}x more; one loss call {one * 1e3:.2f} ms")]

    def sparse_bug(cache: object) -> dict[str, np.ndarray]:
        grads = solution.bprop(cache)
        grads["W1"] = grads["W1"].copy()
        grads["W1"][[3, 500, 998], [7, 0, 411]] *= -1.0  # three wrong entries out of 998,001
        return grads

    buggy = check(sparse_bug)
    seconds = _best(lambda: check(sparse_bug), options.repeat)
    w1 = buggy["W1"]
    rows.append(Row("fast", "P=1,000,000, 3 wrong entries of W1", "check_gradients(mode='fast')",
                    buggy.evaluations, seconds, seconds / one, "x one loss call (wall time)",
                    "flagged", f"ok={buggy.ok}; W1 {w1.status}, worst index {w1.worst_index} "
                    f"(screen + bisection + {w1.size} entries)"))
    return rows


_MEMORY_SCRIPT = r"""
import json, resource, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import gradcheck
from gradcheck import networks
net = networks.get("mlp")
solution = net.solution()
ex = net.random_example(np.random.default_rng(0), 8, widths=(999, 999, 1), activations=("sigmoid", "sigmoid"))
np.ones((64, 64)) @ np.ones((64, 64))  # BLAS initialised before the baseline

def peak_kb():
    try:  # VmHWM can be reset (below), so drawing the example does not hide the check
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak to the current RSS (Linux >= 4.0)
except OSError:
    pass
before = peak_kb()
report = gradcheck.check_gradients(solution.fprop, solution.bprop, ex.x, ex.y, ex.params,
                                   fprop_kwargs=ex.options, mode="fast")
after = peak_kb()
print(json.dumps({"before_kb": before, "after_kb": after, "ok": report.ok,
                  "params_bytes": sum(v.nbytes for v in ex.params.values())}))
"""


def bench_memory(options: Options) -> list[Row]:
    """Target 4: peak RSS added by the 1M-parameter fast check, over the parameters' bytes."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(ROOT)], capture_output=True,
                         text=True, check=True, env=os.environ.copy())
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    added = (figures["after_kb"] - figures["before_kb"]) * 1024
    ratio = added / figures["params_bytes"]
    return [Row("memory", "P=1,000,000 fast check", "peak RSS added (getrusage, subprocess)",
                seconds=None, ratio=ratio, unit="x the parameters' bytes", target="< 3",
                note=f"params {figures['params_bytes'] / 2**20:.1f} MiB, peak +{added / 2**20:.1f} MiB, "
                     f"process peak {figures['after_kb'] / 1024:.0f} MiB (interpreter and numpy "
                     f"included); ok={figures['ok']}")]


# -- target 3: grading throughput ----------------------------------------------------------


THROUGHPUT_ASSIGNMENTS = ("three_node", "batch_sigmoid", "two_hidden", "binary_classifier", "three_input")
STUDENTS = 200


def tests_module(stem: str) -> Any:
    """``tests/STEM.py`` (a helper module of the tests, not a package), loaded by path."""
    import importlib.util

    name = f"gradcheck_bench_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{stem}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules[name]


def _bug_corpus() -> Any:
    """``tests/bug_corpus.py``: one-line bugs of the solutions."""
    return tests_module("bug_corpus")


def _with_bug(source: str, old: str, new: str) -> str:
    lines = source.splitlines()
    hits = [i for i, line in enumerate(lines) if line.strip() == old]
    assert len(hits) == 1, f"{old!r} occurs {len(hits)} times"
    indent = lines[hits[0]][: len(lines[hits[0]]) - len(lines[hits[0]].lstrip())]
    lines[hits[0]] = indent + new
    return "\n".join(lines) + "\n"


def write_submissions(folder: Path, students: int = STUDENTS, correct_share: float = 0.6) -> dict[str, bool]:
    """One folder per student with the five document assignments as modules.

    The first ``correct_share`` of every five students submit the reference solutions; the
    others submit, for every assignment, the solution with one line of the bug corpus
    changed (cycling through the corpus). Returns student -> all correct.

    Example:
        >>> import tempfile
        >>> sum(write_submissions(Path(tempfile.mkdtemp()), 10).values())
        6
    """
    corpus = _bug_corpus()
    bugs = {name: [b for b in corpus.BUGS if b.assignment == name] for name in THROUGHPUT_ASSIGNMENTS}
    sources = {name: (networks.solutions_dir() / f"{name}.py").read_text() for name in THROUGHPUT_ASSIGNMENTS}
    correct_per_five = round(5 * correct_share)
    plan = {}
    for i in range(students):
        student = f"student{i:04d}"
        correct = i % 5 < correct_per_five
        plan[student] = correct
        (folder / student).mkdir(parents=True)
        for j, name in enumerate(THROUGHPUT_ASSIGNMENTS):
            source = sources[name]
            if not correct:
                bug = bugs[name][(i + j) % len(bugs[name])]
                source = _with_bug(source, bug.old, bug.new)
            (folder / student / f"{name}.py").write_text(source)
    return plan


def _bare_starts(count: int) -> float:
    """Wall time of ``count`` sequential ``python -c "import numpy"`` processes."""
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run([sys.executable, "-c", "import numpy"], check=True, env=os.environ.copy())
    return time.perf_counter() - start


def _grade(submit: Path, out: Path, workers: int = 2, *options: str) -> float:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "grader.py"), str(submit), "--workers",
                             str(workers), "--out", str(out), *options], capture_output=True, text=True,
                            env=os.environ.copy(), cwd=ROOT, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"grader.py exited with status {result.returncode}:\n{result.stderr[-3000:]}")
    return seconds


def _full_marks(out: Path, plan: dict[str, bool]) -> tuple[int, int]:
    """(correct students with full marks, buggy students below full marks) in grades.csv."""
    import csv

    with open(out / "grades.csv", newline="") as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    full = {s: float(rows[s]["total"]) == float(rows[s]["max_total"]) for s in plan}
    return (sum(full[s] for s in plan if plan[s]), sum(not full[s] for s in plan if not plan[s]))


def bench_throughput(options: Options) -> list[Row]:
    """Target 3: grade 200 generated students (5 modules each) with ``--workers 2``.

    The grader runs as a real ``python grader.py`` subprocess and is timed wall clock, from
    the command to its exit (interpreter start, fork server, snapshots, every sandboxed
    job, reports). The baseline, measured in the same run, is 200 sequential bare
    ``python -c "import numpy"`` starts: a grader that started one plain process per
    student would pay at least that. Isolation is kept: every (student, assignment) job
    runs in its own freshly forked child. The figures keep the best of ``--repeat``
    (interleaved, so that drift of the machine hits both).
    """
    import tempfile

    students = 20 if options.quick else STUDENTS
    jobs = students * len(THROUGHPUT_ASSIGNMENTS)
    with tempfile.TemporaryDirectory(prefix="gradcheck-bench-") as scratch:
        submit = Path(scratch) / "submit"
        plan = write_submissions(submit, students)
        grading, bare = float("inf"), float("inf")
        for attempt in range(options.repeat):
            out = Path(scratch) / f"out{attempt}"
            grading = min(grading, _grade(submit, out))
            bare = min(bare, _bare_starts(students))
        correct, caught = _full_marks(out, plan)
    n_correct = sum(plan.values())
    per_start = bare / students
    case = f"{students} students x {len(THROUGHPUT_ASSIGNMENTS)} modules ({jobs} jobs)"
    return [
        Row("throughput", case, f"{students} bare python -c 'import numpy'", seconds=bare, ratio=1.0,
            unit="x (bare starts)", note=f"one start {per_start * 1e3:.0f} ms"),
        Row("throughput", case, "grader.py --workers 2", seconds=grading, ratio=grading / bare,
            unit="x (bare starts)", target="< 1",
            note=f"{60 * students / grading:,.0f} students/min ({60 * jobs / grading:,.0f} modules/min); "
                 f"{grading / students * 1e3:.0f} ms per student = {grading / students / per_start:.2f} "
                 f"bare starts, {grading / jobs * 1e3:.0f} ms per module; full marks for "
                 f"{correct}/{n_correct} correct and {students - n_correct - caught}/{students - n_correct} "
                 f"buggy students; a fresh child per job"),
    ]


def bench_sandbox(options: Options) -> list[Row]:
    """Target 4: the kernel sandbox costs at most 10% of the modules graded per minute.

    The same 200 generated students (``--workers 2``) graded with ``--isolation best`` (every
    layer this kernel offers: Landlock, a network namespace, seccomp, per child) and with
    ``--isolation off``, interleaved in alternating order, best of ``--repeat`` each.
    """
    import tempfile

    from gradcheck.confinement import probe

    students = 20 if options.quick else STUDENTS
    jobs = students * len(THROUGHPUT_ASSIGNMENTS)
    with tempfile.TemporaryDirectory(prefix="gradcheck-bench-") as scratch:
        submit = Path(scratch) / "submit"
        write_submissions(submit, students)
        seconds = {"best": float("inf"), "off": float("inf")}
        for attempt in range(options.repeat):
            # Interleaved, in alternating order, so that drift of the machine hits both.
            for level in sorted(seconds, reverse=attempt % 2 == 1):
                out = Path(scratch) / f"out-{level}-{attempt}"
                seconds[level] = min(seconds[level], _grade(submit, out, 2, "--isolation", level))
    per_minute = {level: 60 * jobs / value for level, value in seconds.items()}
    ratio = per_minute["best"] / per_minute["off"]
    case = f"{students} students x {len(THROUGHPUT_ASSIGNMENTS)} modules ({jobs} jobs), --workers 2"
    return [
        Row("sandbox", case, "--isolation off", seconds=seconds["off"], ratio=1.0, unit="x (off)",
            note=f"{per_minute['off']:,.0f} modules/min"),
        Row("sandbox", case, "--isolation best", seconds=seconds["best"], ratio=ratio, unit="x (off)",
            target=">= 0.9",
            note=f"{per_minute['best']:,.0f} modules/min; {probe().describe()}; "
                 f"{(1 - ratio) * 100:+.1f}% of the throughput"),
    ]


def bench_conv(options: Options) -> list[Row]:
    """check_layer on a naive conv layer (issue 12): see bench/conv.py."""
    from bench.conv import bench_conv as run

    return run(options)


_LARGE_COURSE = """
from gradcheck.assignments import Network

TITLE = "MNIST-sized"
ASSIGNMENTS = (Network.document("mlp", sizes=(
    {"widths": (784, 256, 128, 10), "activations": ("relu", "relu", "sigmoid"), "m": 64},)),)
"""
_LARGE_STUDENTS = {
    "correct": None,
    "no_relu_derivative": (" * ACTIVATIONS[activations[layer - 2]][1](zs[layer - 2])", ""),
    "averaged_dW": ("delta @ inputs[layer - 1].T", "delta @ inputs[layer - 1].T / y.shape[1]"),
    "notebook": None,
}


def _large_submissions(root: Path) -> None:
    answer = "\n".join(line for line in (ROOT / "solutions" / "mlp.py").read_text().splitlines()
                       if "### " not in line) + "\n"
    for student, edit in _LARGE_STUDENTS.items():
        (root / student).mkdir(parents=True)
        if student == "notebook":  # the same answer in a notebook that plots, as students do
            import nbformat

            notebook = nbformat.v4.new_notebook()
            notebook.cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt"),
                              nbformat.v4.new_code_cell(answer.split("if __name__")[0]),
                              nbformat.v4.new_code_cell("plt.plot([1, 2]); plt.title('loss'); plt.show()")]
            nbformat.write(notebook, str(root / student / "mlp.ipynb"))
            continue
        source = answer if edit is None else answer.replace(*edit)
        assert edit is None or source != answer
        (root / student / "mlp.py").write_text(source)


def bench_large(options: Options) -> list[Row]:
    """A 784-256-128-10 mlp at batch 64 (235,146 parameters): seconds per student, one worker.

    The grader compares gradients with the reference's (no finite differences) and, for a
    wrong gradient, differentiates the student's own fprop on a sample that fits in a
    quarter of the call time limit (10 s): a buggy student costs more than a correct one,
    never 2P forward calls. The notebook student imports pyplot and plots (preloaded by the
    fork server).
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gradcheck-bench-large-") as scratch:
        course, submit = Path(scratch) / "course", Path(scratch) / "submit"
        course.mkdir()
        (course / "course.py").write_text(_LARGE_COURSE)
        (course / "mlp.py").write_text((ROOT / "solutions" / "mlp.py").read_text())
        _large_submissions(submit)
        _grade(submit, Path(scratch) / "out", 1, "--course", str(course))
        run = json.loads((Path(scratch) / "out" / "run.json").read_text())
    rows = []
    for student in run["students"]:
        (graded,) = student["assignments"]
        score = sum(c["score"] for c in graded["checks"])
        rows.append(Row("large", "mlp 784-256-128-10, m = 64", student["student"],
                        seconds=graded["seconds"], ratio=graded["seconds"] / 10.0,
                        unit="x the call limit (10 s)", target="< 1", note=f"{score:g}/10"))
    return rows


BENCHMARKS: dict[str, Callable[[Options], list[Row]]] = {
    "numerical": bench_numerical,
    "fast": bench_fast,
    "conv": bench_conv,
    "memory": bench_memory,
    "throughput": bench_throughput,
    "sandbox": bench_sandbox,
    "large": bench_large,
}


def machine() -> dict[str, object]:
    """Where the figures come from."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(),
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}


def render(rows: list[Row]) -> str:
    """The table of ratios."""
    header = ("benchmark", "case", "method", "calls", "seconds", "ratio", "unit", "target", "note")
    cells = [header] + [(
        r.benchmark, r.case, r.method, f"{r.calls:,}" if r.calls is not None else "-",
        f"{r.seconds:.3f}" if r.seconds is not None else "-",
        f"{r.ratio:.3f}" if r.ratio is not None else "-", r.unit, r.target, r.note) for r in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(header) - 1)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
                     for row in cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="numerical: P = 1,000 and 10,000 only")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--repeat", type=int, default=3, help="timings keep the best of N runs")
    args = parser.parse_args(argv)
    options = Options(quick=args.quick, repeat=max(1, args.repeat))
    rows: list[Row] = []
    for name in args.only or BENCHMARKS:
        rows += BENCHMARKS[name](options)
        if not args.json:
            print(f"[{name} done]", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"machine": machine(), "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print("machine: " + ", ".join(f"{k}={v}" for k, v in machine().items()))
        print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
