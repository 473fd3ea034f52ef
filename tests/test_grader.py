"""grader.py end to end: real subprocesses, real notebooks, real output files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from processes import survivors

from gradcheck import networks

ROOT = Path(__file__).resolve().parent.parent
GRADER = ROOT / "grader.py"
EXAMPLES = ROOT / "examples" / "submit"


def grade(submit: Path, out: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GRADER), str(submit), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def grades(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


def solution_source(name: str) -> str:
    return (networks.solutions_dir() / f"{name}.py").read_text()


def with_wrapped_bprop(name: str, key: str, change: str) -> str:
    """The solution, with one gradient changed after bprop (e.g. change='-g')."""
    return solution_source(name) + textwrap.dedent(f"""

        _correct_bprop = bprop

        def bprop(cache):
            grads = _correct_bprop(cache)
            g = grads[{key!r}]
            grads[{key!r}] = {change}
            return grads
        """)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("out")
    return grade(EXAMPLES, out, "--workers", "2"), out


def test_the_bundled_examples_are_graded_with_all_four_outputs(example_run):
    result, out = example_run
    assert result.returncode == 0, result.stderr
    assert "Scores" in result.stdout
    table = grades(out)
    assert set(table) == {"alice", "bob", "carol"}
    assert table["alice"]["total"] == table["alice"]["max_total"] == "20"
    assert table["bob"]["total"] == "20", (out / "bob" / "feedback.md").read_text()
    for student in table:
        assert (out / student / "results.json").is_file() and (out / student / "feedback.md").is_file()
    ET.parse(out / "junit.xml")


def test_a_transposed_gradient_loses_exactly_its_share_and_is_diagnosed(example_run):
    _, out = example_run
    table = grades(out)
    assert float(table["carol"]["two_hidden"]) == pytest.approx(10 - 1.0)  # 6 points / 6 params
    feedback = (out / "carol" / "feedback.md").read_text()
    assert "transpose" in feedback


def test_bprop_consistent_with_a_wrong_fprop_gets_the_documented_partial_credit(example_run):
    _, out = example_run
    table = grades(out)
    # fprop averages instead of summing: fprop 0/2, each of 4 gradients half of 1.5, update 2/2.
    assert float(table["carol"]["binary_classifier"]) == pytest.approx(0 + 4 * 0.75 + 2)
    assert "consistent with your fprop" in (out / "carol" / "feedback.md").read_text()


def test_the_notebook_with_magics_plots_and_a_failing_demo_cell_is_graded_and_told(example_run):
    _, out = example_run
    feedback = (out / "bob" / "feedback.md").read_text()
    assert "training_data.csv" in feedback  # the failing demo cell is reported


def test_results_json_follows_gradescope_schema(example_run):
    _, out = example_run
    data = json.loads((out / "carol" / "results.json").read_text())
    assert data["score"] == pytest.approx(14.0)
    assert isinstance(data["execution_time"], (int, float))
    assert sum(t["score"] for t in data["tests"]) == pytest.approx(data["score"])
    for test in data["tests"]:
        assert {"name", "score", "max_score", "output", "visibility"} <= set(test)


def test_junit_has_one_testcase_per_check(example_run):
    _, out = example_run
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    names = [case.get("name") for case in cases]
    # two_hidden: fprop, 6 params, update; binary_classifier: fprop, 4 params, update; 3 students
    assert len(names) == 3 * (8 + 6)


def test_each_single_parameter_bug_loses_exactly_that_parameters_share(tmp_path):
    submit = tmp_path / "submit"
    expected = {}
    for name in networks.DOCUMENT_NAMES:
        keys = list(networks.get(name).param_shapes())
        for key in keys:
            folder = submit / f"{name}-{key}"
            folder.mkdir(parents=True)
            (folder / f"{name}.py").write_text(with_wrapped_bprop(name, key, "-g"))
            expected[folder.name] = (name, 10 - 6 / len(keys))
    result = grade(submit, tmp_path / "out", "--workers", "2")
    assert result.returncode == 0, result.stderr
    table = grades(tmp_path / "out")
    for student, (name, score) in expected.items():
        assert float(table[student][name]) == pytest.approx(score), student


def test_a_broken_student_costs_only_its_own_checks(tmp_path):
    submit = tmp_path / "submit"
    cases = {
        "alice": solution_source("three_input"),
        "looper": with_wrapped_bprop("three_input", "W1", "[0 for _ in iter(int, 1)]"),
        "exiter": solution_source("three_input").replace('    W1, W2 = params["W1"], params["W2"]\n    a1',
                                                         '    import sys; sys.exit(0)\n    W1, W2 = params["W1"], params["W2"]\n    a1', 1),
        "raiser": solution_source("three_input") + "\n\ndef update(params, grads, lr):\n    raise ValueError('nope')\n",
        "garbage": solution_source("three_input") + "\n\ndef bprop(cache):\n    return [1, 2, 3]\n",
    }
    for student, source in cases.items():
        (submit / student).mkdir(parents=True)
        (submit / student / "three_input.py").write_text(source)
    result = grade(submit, tmp_path / "out", "--timeout", "2", "--workers", "2")
    assert result.returncode == 0, result.stderr
    table = grades(tmp_path / "out")
    assert table["alice"]["three_input"] == "10"
    assert float(table["looper"]["three_input"]) == pytest.approx(4)  # bprop never returns: 0 of 6
    assert float(table["exiter"]["three_input"]) == pytest.approx(2)  # only update works
    assert float(table["raiser"]["three_input"]) == pytest.approx(8)
    assert float(table["garbage"]["three_input"]) == pytest.approx(4)
    feedback = (tmp_path / "out" / "looper" / "feedback.md").read_text()
    assert "did not return within 2" in feedback
    assert "sys.exit(0)" in (tmp_path / "out" / "exiter" / "feedback.md").read_text()


WORKER_KILLER = """
import os, signal
def _kill_the_grading_worker():
    pid = os.getppid()
    while pid > 1:  # up the chain: monitor, fork server, the worker process that grades us
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            if b"multiprocessing" in handle.read():
                os.kill(pid, signal.SIGKILL)
                return
        with open(f"/proc/{pid}/stat") as handle:
            pid = int(handle.read().rsplit(")", 1)[1].split()[1])
try:
    _kill_the_grading_worker()
except OSError:  # the sandbox: no /proc, no signal outside it; the student's work still counts
    pass
"""


@pytest.mark.parametrize("isolation", ["best", "off"])
def test_a_student_who_kills_its_grading_worker_stops_nothing(tmp_path, isolation):
    submit = tmp_path / "submit"
    students = [f"s{i:02d}" for i in range(12)]  # two batches, so worker processes grade them
    for student in students:
        (submit / student).mkdir(parents=True)
        prefix = WORKER_KILLER if student == "s03" else ""
        (submit / student / "three_node.py").write_text(prefix + solution_source("three_node"))
    marker = f"GRADCHECK_TEST_RUN={tmp_path.name}"
    result = subprocess.run([sys.executable, str(GRADER), str(submit), "--out", str(tmp_path / "out"),
                             "--workers", "2", "--isolation", isolation], capture_output=True, text=True, timeout=300,
                            stdin=subprocess.DEVNULL, env={**os.environ, "GRADCHECK_TEST_RUN": tmp_path.name})
    assert result.returncode == 0, result.stderr
    # Every batch the dead worker held is graded again in the grader's own process, where the
    # killer finds no worker to kill: everyone, the killer included, is graded on their work.
    assert {student: row["three_node"] for student, row in grades(tmp_path / "out").items()} == \
        {student: "10" for student in students}
    # And the other workers, their fork servers and monitors are gone with the run.
    assert survivors(marker) == []


def test_ctrl_c_stops_the_run_at_once_and_says_how_to_resume(tmp_path):
    submit = tmp_path / "submit"
    for i in range(30):  # three batches: workers are busy when the interrupt comes
        (submit / f"s{i:02d}").mkdir(parents=True)
        (submit / f"s{i:02d}" / "three_node.py").write_text("import time; time.sleep(0.3)\n"
                                                            + solution_source("three_node"))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, str(GRADER), str(submit), "--out", str(out), "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL, env={**os.environ, "GRADCHECK_TEST_RUN": tmp_path.name})
    deadline = time.monotonic() + 60
    while not list((out / ".cache").rglob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "--resume" in stderr and "Traceback" not in stderr
    assert survivors(f"GRADCHECK_TEST_RUN={tmp_path.name}") == []
    # Stopped, not run to the end: the batches not started were cancelled.
    assert len(list((out / ".cache").rglob("*.json"))) <= 20


def test_results_do_not_depend_on_workers_and_reruns_are_identical(tmp_path, example_run):
    _, first = example_run
    again = tmp_path / "again"
    assert grade(EXAMPLES, again, "--workers", "1").returncode == 0
    assert (again / "grades.csv").read_text() == (first / "grades.csv").read_text()


def test_missing_assignment_scores_zero_and_unknown_files_are_listed(tmp_path):
    submit = tmp_path / "dave"
    submit.mkdir()
    (submit / "two_hidden.py").write_text(solution_source("two_hidden"))
    (submit / "scratch.txt").write_text("notes")
    result = grade(submit, tmp_path / "out", "--assignment", "two_hidden", "--assignment", "three_input")
    assert result.returncode == 0, result.stderr
    row = grades(tmp_path / "out")["dave"]
    assert (row["two_hidden"], row["three_input"], row["total"], row["max_total"]) == ("10", "0", "10", "20")
    feedback = (tmp_path / "out" / "dave" / "feedback.md").read_text()
    assert "missing" in feedback and "scratch.txt" in feedback


def test_fail_under_and_usage_errors_have_their_exit_codes(tmp_path):
    assert grade(EXAMPLES, tmp_path / "o1", "--fail-under", "90").returncode == 1
    assert grade(EXAMPLES, tmp_path / "o2", "--fail-under", "50").returncode == 0
    bad_path = grade(tmp_path / "nowhere", tmp_path / "o3")
    assert bad_path.returncode == 2 and "does not exist" in bad_path.stderr
    bad_name = grade(EXAMPLES, tmp_path / "o4", "--assignment", "resnet")
    assert bad_name.returncode == 2 and "resnet" in bad_name.stderr


def test_a_slow_notebook_cell_is_stopped_and_the_rest_still_grades(tmp_path):
    import nbformat

    submit = tmp_path / "erin"
    submit.mkdir()
    cells = [nbformat.v4.new_code_cell(solution_source("three_input")),
             nbformat.v4.new_code_cell("import time\nfor epoch in range(10_000):\n    time.sleep(0.01)  # training demo"),
             nbformat.v4.new_code_cell("def update(params, grads, lr):\n    return {k: params[k] - lr * grads[k] for k in params}")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), submit / "three_input.ipynb")
    result = grade(submit, tmp_path / "out", "--timeout", "1")
    assert result.returncode == 0, result.stderr
    assert grades(tmp_path / "out")["erin"]["three_input"] == "10"
    assert "cell 2 ran for more than 1 s and was stopped" in (tmp_path / "out" / "erin" / "feedback.md").read_text()


def test_kernel_mode_grades_a_notebook_in_a_real_jupyter_kernel(tmp_path):
    pytest.importorskip("ipykernel")
    pytest.importorskip("nbclient")
    result = grade(EXAMPLES / "bob", tmp_path / "out", "--kernel", "--assignment", "two_hidden")
    assert result.returncode == 0, result.stderr
    assert grades(tmp_path / "out")["bob"]["two_hidden"] == "10"
    assert "training_data.csv" in (tmp_path / "out" / "bob" / "feedback.md").read_text()


def test_the_progress_bar_says_the_time_elapsed_and_left(tmp_path: Path) -> None:
    # On a terminal (TTY_COMPATIBLE stands for one): a large class grades for minutes.
    env = {**os.environ, "TTY_COMPATIBLE": "1", "NO_COLOR": "1", "COLUMNS": "160"}
    result = subprocess.run([sys.executable, str(GRADER), str(EXAMPLES), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                            env=env)
    assert result.returncode == 0, result.stderr
    final = [line for line in result.stdout.replace("\r", "\n").splitlines() if "6/6" in line]
    assert final and "elapsed," in final[-1] and "left" in final[-1], result.stdout[-2000:]
