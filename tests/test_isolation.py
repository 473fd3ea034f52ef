"""Tests of gradcheck.isolation with real child processes (bounded, cleaned up)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import numpy as np
import pytest

from folders import nest, remove
from gradcheck.isolation import Limits, Ref, Sandbox
from gradcheck.wire import ArraySubclass, Unsupported

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX sandbox")

FAST = Limits(call_timeout=3.0, memory_mb=1024)

STUDENT = '''\
import os, signal, subprocess, sys, time
import numpy as np

print("imported")

def fprop(x, y, params):
    z = params["W"] @ x
    return {"loss": float(np.sum((z - y) ** 2)), "z": z, "x": x, "fn": print}

def bprop(cache):
    return {"W": 2 * np.outer(cache["z"], cache["x"])}

def update(params, grads, lr):
    return {k: params[k] - lr * grads[k] for k in params}

def spin():
    while True:
        pass

def bye():
    sys.exit(0)

def hard_exit():
    os._exit(0)

def suicide():
    os.kill(os.getpid(), signal.SIGKILL)

def misaligned():
    a = np.ones((2, 3))
    return a @ a

def recurse(n=0):
    return recurse(n + 1)

def c_stack_overflow():
    sys.setrecursionlimit(10**7)
    nested = []
    for _ in range(200_000):
        nested = [nested]
    return repr(nested)

def memory_bomb():
    hog = []
    while True:
        hog.append(np.ones(10**7))

def chatty():
    for _ in range(200):
        print("x" * 10**6)
    os.system("head -c 50000000 /dev/zero")
    return "done"

def parent():
    return os.getppid()

def daemon():
    return subprocess.Popen(["sleep", "30.4242"], start_new_session=True).pid

def nap(seconds):
    time.sleep(seconds)
    return seconds

def interleaved():
    print("left", end="")
    os.write(2, b"[another process]\\n")  # as a subprocess sharing the pipe would
    print(" right")
    print("no newline yet", end="")
    return "done"

def odd_values():
    return {"list": [1, 2.5], "set": {1, 2}, "objects": np.array([1, "a"], dtype=object),
            "matrix": np.matrix([[1.0, 2.0]]), "f32": np.float32(1.5)}

def vandal():
    with open("data.txt", "w") as handle:
        handle.write("changed")
    os.remove(__file__)
    return sorted(os.listdir("."))

def sleepers(count, wait):
    procs = [subprocess.Popen(["sleep", "30.4242"]) for _ in range(count)]
    if wait:
        time.sleep(30)
    return len(procs)

def forker():
    for _ in range(40):
        if os.fork() == 0:
            time.sleep(30.4242)
            os._exit(0)
    return "forked"

def ask():
    return input("name? ")

if __name__ == "__main__":
    print("demo block ran")
'''


def marker_processes() -> list[int]:
    """Pids of leftover processes started by the tests (their argv holds 30.4242)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if b"30.4242" in cmdline and state != "Z":
            found.append(int(entry))
    return found


def assert_no_leftovers() -> None:
    deadline = time.monotonic() + 5
    while marker_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker_processes() == []


@pytest.fixture
def student(tmp_path: Path) -> Path:
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "data.txt").write_text("original")
    path = folder / "two_hidden.py"
    path.write_text(STUDENT)
    return path


@pytest.fixture
def box(student: Path) -> Iterator[Sandbox]:
    with Sandbox(student, limits=FAST) as sandbox:
        yield sandbox


def test_correct_module_fprop_bprop_update_with_refs(box: Sandbox) -> None:
    loaded = box.load()
    assert loaded.ok and {"fprop", "bprop", "update"} <= set(loaded.names)
    x, y, params = np.ones(3), np.zeros(2), {"W": np.arange(6.0).reshape(2, 3)}
    loss = box.call("fprop", x, y, params, store="cache", pick="loss")
    assert loss.ok and loss.value == pytest.approx(3**2 + 12**2)
    grads = box.call("bprop", Ref("cache"))
    assert grads.ok and grads.value["W"].shape == (2, 3)
    new = box.call("update", params, grads.value, 0.5)
    assert np.allclose(new.value["W"], params["W"] - 0.5 * grads.value["W"])
    assert "imported" in box.output and "demo block ran" not in box.output
    assert params["W"][0, 0] == 0.0  # the grader's arrays were copied, not shared


def test_call_many_one_round_trip(box: Sandbox) -> None:
    params = {"W": np.eye(2)}
    sets = [(np.full(2, float(i)), np.zeros(2), params) for i in range(20)]
    results = box.call_many("fprop", sets, pick="loss")
    assert [r.value for r in results] == [2.0 * i * i for i in range(20)]


def test_a_monitor_runs_one_sandbox_after_another_and_nothing_of_the_last_survives(
        student: Path) -> None:
    with Sandbox(student, limits=FAST) as first:
        monitor = first.call("parent").value
        assert first.call("daemon").ok
    assert_no_leftovers()  # the detached daemon died with its sandbox
    with Sandbox(student, limits=FAST) as second:
        assert second.call("parent").value == monitor  # the same monitor, one fork saved
        assert second.call("update", {"a": 1.0}, {"a": 1.0}, 1.0).value == {"a": 0.0}


def test_call_many_limits_all_calls_together_or_each_call(student: Path) -> None:
    with Sandbox(student, limits=Limits(call_timeout=1.0)) as box:
        each = box.call_many("nap", [(0.4,), (0.4,), (0.4,)], each=True)
        assert [r.value for r in each] == [0.4, 0.4, 0.4]
        together = box.call_many("nap", [(0.4,), (0.4,), (0.4,)])
        assert [r.ok for r in together] == [True, True, False]
        assert together[2].error == "nap did not return within 1 s"


def test_infinite_loop_costs_one_call_then_a_fresh_child(box: Sandbox) -> None:
    box.call("fprop", np.ones(2), np.ones(2), {"W": np.eye(2)}, store="cache")
    result = box.call("spin")
    assert not result.ok and result.error == "spin did not return within 3 s"
    assert box.call("bprop", Ref("cache")).error.startswith("the stored value 'cache' is gone")
    assert box.call("misaligned").error.endswith("(line 31 of two_hidden.py)")


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("bye", "bye called sys.exit(0)"),
        ("hard_exit", "process exited with status 0 during hard_exit"),
        ("suicide", "process was killed by signal 9 (SIGKILL) during suicide: it ran out of its "
                    "memory limit of 1024 MB, or killed itself or its process group"),
        ("recurse", "recurse raised RecursionError: maximum recursion depth exceeded "
                    "(line 34 of two_hidden.py)"),
        ("ask", "ask called input(), which gets no answer while grading (nobody is at the "
                "keyboard): remove the call, or give the value in the code (line 95 of "
                "two_hidden.py)"),
    ],
)
def test_deaths_and_errors_cost_only_that_call(box: Sandbox, function: str, message: str) -> None:
    result = box.call(function)
    assert not result.ok and result.error.startswith(message)
    assert box.call("update", {"a": 1.0}, {"a": 1.0}, 1.0).value == {"a": 0.0}


def test_c_stack_overflow_is_reported_as_a_crash(student: Path) -> None:
    with Sandbox(student, limits=Limits(call_timeout=20)) as sandbox:
        assert sandbox.call("c_stack_overflow").error.startswith(
            "process was killed by signal 11 (SIGSEGV) during c_stack_overflow: a crash")
        assert sandbox.call("update", {"a": 1.0}, {"a": 1.0}, 1.0).ok


def test_memory_limit(student: Path) -> None:
    with Sandbox(student, limits=Limits(call_timeout=10, memory_mb=256)) as sandbox:
        result = sandbox.call("memory_bomb")
        assert not result.ok and "MemoryError" in result.error and "256 MB" in result.error
        assert sandbox.call("update", {"a": 1.0}, {"a": 1.0}, 1.0).ok


def test_infinite_loop_at_import(tmp_path: Path) -> None:
    (tmp_path / "loop.py").write_text("while True:\n    pass\n")
    with Sandbox(tmp_path / "loop.py", limits=Limits(call_timeout=1.5)) as sandbox:
        assert sandbox.load().error == "loading loop.py did not finish within 1.5 s"
        assert sandbox.call("fprop").error == (
            "fprop could not be called: loading loop.py did not finish within 1.5 s")


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("def fprop(:\n", "two_hidden.py has a syntax error on line 1: invalid syntax"),
        ("import tensorflowx\n", "importing two_hidden.py raised ModuleNotFoundError: "
                                 "No module named 'tensorflowx' (line 1 of two_hidden.py)"),
        ("", "two_hidden.py is empty"),
    ],
)
def test_load_failures(tmp_path: Path, source: str, error: str) -> None:
    (tmp_path / "two_hidden.py").write_text(source)
    with Sandbox(tmp_path / "two_hidden.py", limits=FAST) as sandbox:
        assert sandbox.load().error == error


def test_fork_storms_are_cleaned_up(student: Path) -> None:
    with Sandbox(student, limits=FAST) as sandbox:
        storm = sandbox.call("sleepers", 40, True)
        assert not storm.ok  # the process limit stopped it, one way or another
        assert sandbox.call("sleepers", 3, False).value == 3  # left running after returning
        assert sandbox.call("forker").ok is False  # 3 + 40 > 32 processes
        assert sandbox.call("update", {"a": 1.0}, {"a": 1.0}, 1.0).ok
    assert_no_leftovers()


def test_process_limit_without_cgroup(student: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Spawned monitors read the environment afresh, so the cgroup can be switched off.
    monkeypatch.setenv("GRADCHECK_FORKSERVER", "0")
    monkeypatch.setenv("GRADCHECK_CGROUP", "0")
    with Sandbox(student, limits=FAST) as sandbox:
        assert sandbox.call("sleepers", 40, True).error == (
            "process was stopped during sleepers because it started more than 32 processes")
        assert sandbox.call("sleepers", 3, False).value == 3
    assert_no_leftovers()


def test_huge_output_is_capped_and_the_call_succeeds(box: Sandbox) -> None:
    started = time.monotonic()
    assert box.call("chatty").value == "done"
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 2
    while "more bytes not shown" not in box.output and time.monotonic() < deadline:
        time.sleep(0.05)
    output = box.output
    assert len(output) < FAST.output_bytes + 200
    assert "more bytes not shown" in output


def test_printed_lines_arrive_whole_and_before_the_reply(box: Sandbox) -> None:
    assert box.call("interleaved").value == "done"
    deadline = time.monotonic() + 2
    while "no newline yet" not in box.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "[another process]\nleft right\nno newline yet" in box.output


def test_odd_return_values_are_decoded_into_markers(box: Sandbox) -> None:
    value = box.call("odd_values").value
    assert value["list"] == [1, 2.5] and value["f32"].dtype == np.float32
    assert value["set"] == Unsupported("set", "{1, 2}")
    assert isinstance(value["objects"], Unsupported)
    assert isinstance(value["matrix"], ArraySubclass)
    assert value["matrix"].type_name == "numpy.matrix"
    stored = box.call("fprop", np.ones(2), np.ones(2), {"W": np.eye(2)})
    assert isinstance(stored.value["fn"], Unsupported)  # the cache may hold anything


def test_student_edits_stay_in_the_scratch_copy(box: Sandbox, student: Path) -> None:
    assert box.call("vandal").value == ["data.txt"]
    assert (student.parent / "data.txt").read_text() == "original"
    assert student.read_text() == STUDENT


def test_garbage_from_the_child_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "evil.py"
    path.write_text(textwrap.dedent('''\
        import gc, socket
        def evil():
            for obj in gc.get_objects():
                if (isinstance(obj, socket.socket) and obj.fileno() >= 0
                        and obj.family == socket.AF_UNIX):
                    obj.sendall(b"\\x00" * 7 + b"\\x09" + b"garbage!!")
            return 1
    '''))
    with Sandbox(path, limits=FAST) as sandbox:
        result = sandbox.call("evil")
        assert not result.ok and "could not be read" in result.error
        assert sandbox.call("evil").ok is False  # a fresh child, same behaviour, no crash


def test_notebook_submission_in_a_sandbox(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np\n!pip install foo"),
        nbformat.v4.new_code_cell("def fprop(x, y, params):\n    return {'loss': 1.5}"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\n"
                                  "plt.show()\nprint('plotted')"),
        nbformat.v4.new_code_cell("open('missing.csv')"),
    ]
    nbformat.write(notebook, str(tmp_path / "demo.ipynb"))
    with Sandbox(tmp_path / "demo.ipynb", limits=Limits(call_timeout=20)) as sandbox:
        loaded = sandbox.load()
        assert loaded.ok and "fprop" in loaded.names
        assert any("cell 4 raised FileNotFoundError" in p for p in loaded.problems)
        assert sandbox.call("fprop", 1, 2, 3, pick="loss").value == 1.5
        assert "plotted" in sandbox.output


@pytest.mark.skipif(importlib.util.find_spec("ipykernel") is None, reason="needs ipykernel")
def test_kernel_mode(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np"),
        nbformat.v4.new_code_cell("def fprop(x, y, params):\n"
                                  "    return {'loss': float(np.sum(x)), 'x': x}\n"
                                  "def bprop(cache):\n    return {'W': cache['x'] * 2}"),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    nbformat.write(notebook, str(tmp_path / "k.ipynb"))
    with Sandbox(tmp_path / "k.ipynb", kernel=True, limits=Limits(call_timeout=20)) as sandbox:
        loaded = sandbox.load()
        assert loaded.ok, loaded.error
        assert {"fprop", "bprop"} <= set(loaded.names)
        assert any("ZeroDivisionError" in p for p in loaded.problems)
        loss = sandbox.call("fprop", np.ones(3), None, {}, store="cache", pick="loss")
        assert loss.value == 3.0
        assert sandbox.call("bprop", Ref("cache")).value["W"].tolist() == [2.0, 2.0, 2.0]


def test_spawn_fallback_without_fork_server(student: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADCHECK_FORKSERVER", "0")
    with Sandbox(student, limits=FAST) as sandbox:
        assert sandbox.call("update", {"a": 1.0}, {"a": 1.0}, 1.0).value == {"a": 0.0}


def test_a_killed_fork_server_is_restarted(student: Path) -> None:
    from gradcheck import isolation

    with Sandbox(student, limits=FAST) as sandbox:
        assert sandbox.load().ok
    server = isolation._SERVER._process
    assert server is not None
    server.kill()
    server.wait()
    with Sandbox(student, limits=FAST) as sandbox:
        assert sandbox.call("update", {"a": 1.0}, {"a": 1.0}, 1.0).ok


def test_timing_fork_server_against_fresh_interpreters(tmp_path: Path) -> None:
    path = tmp_path / "trivial.py"
    path.write_text("import numpy as np\ndef f(x):\n    return np.asarray(x) * 2\n")
    with Sandbox(path) as warm_up:  # start the fork server before timing
        warm_up.load()
    started = time.perf_counter()
    for _ in range(50):
        with Sandbox(path) as sandbox:
            assert sandbox.call("f", 1.0).ok
    sandboxes = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(50):
        subprocess.run([sys.executable, "-c", "import numpy"], check=True)
    interpreters = time.perf_counter() - started
    print(f"\n50 sandboxes (load + call): {sandboxes:.2f} s; "
          f"50 `python -c 'import numpy'`: {interpreters:.2f} s")


def _has_nobody() -> bool:
    import pwd

    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0 or not _has_nobody(), reason="needs root and 'nobody'")
def test_child_runs_as_another_user(tmp_path: Path) -> None:
    path = tmp_path / "who.py"
    path.write_text("import os\ndef uid():\n    return os.getuid()\n"
                    "def write():\n    open('x.txt', 'w').write('ok')\n    return True\n")
    with Sandbox(path, limits=FAST, user="nobody") as sandbox:
        assert sandbox.call("uid").value != 0
        assert sandbox.call("write").value is True  # the scratch copy is its own


def test_unknown_user_is_refused(student: Path) -> None:
    with pytest.raises(ValueError):
        Sandbox(student, user="no-such-user-gradcheck")


def test_a_folder_nested_thousands_of_levels_deep_is_copied_a_few_levels_down_and_a_fifo_not_at_all(
        student: Path) -> None:
    # The plugin copies the student's own folder (the grader, its snapshot): os.walk recursed
    # and raised RecursionError, which no call survived.
    nest(student.parent, 1500)
    os.mkfifo(student.parent / "pipe")  # only regular files are copied: reading it never ends
    try:
        with Sandbox(student, limits=FAST) as sandbox:
            assert sandbox.load().ok
            assert sandbox.call("fprop", np.ones(3), np.zeros(2), {"W": np.ones((2, 3))}, pick="loss").ok
    finally:
        remove(student.parent / "d")


BIG_VALUE = '''
import numpy as np

def headroom():
    # The largest block that still fits in the address-space limit, in MB.
    low, high = 0, 1 << 16
    while high - low > 1:
        mid = (low + high) // 2
        try:
            np.empty(mid << 20, dtype=np.uint8)
            low = mid
        except MemoryError:
            high = mid
    return low

def big(megabytes):
    return np.ones(megabytes << 17)
'''


def test_a_value_too_large_to_encode_names_the_memory_limit(tmp_path: Path) -> None:
    # A large gradient returned fine but its encoding crossed the limit: the message said
    # only "(MemoryError)", or "process exited with status 0" when the copy that joined the
    # header to the body was the one that failed (a 1.8M-parameter bprop at --memory 250).
    student = tmp_path / "big.py"
    student.write_text(BIG_VALUE)
    limits = Limits(call_timeout=10.0, memory_mb=600)
    with Sandbox(student, limits=limits) as box:
        room = box.call("headroom").value
    with Sandbox(student, limits=limits) as box:
        fits = box.call("big", int(room / 6))
        too_big = box.call("big", int(room / 2.2))
    assert fits.ok and fits.value.size == int(room / 6) << 17
    assert not too_big.ok
    assert "big returned a value that could not be sent back (MemoryError)" in too_big.error
    assert "did not fit in the memory limit of 600 MB" in too_big.error


def test_inputs_too_large_for_the_child_name_the_memory_limit(tmp_path: Path) -> None:
    # Receiving the request is the child's own code: its MemoryError ended the child with
    # "process exited with status 0 during first".
    student = tmp_path / "big.py"
    student.write_text(BIG_VALUE + "\ndef first(a):\n    return float(a[0])\n")
    limits = Limits(call_timeout=10.0, memory_mb=600)
    with Sandbox(student, limits=limits) as box:
        room = box.call("headroom").value
    with Sandbox(student, limits=limits) as box:
        result = box.call("first", np.zeros(int(room / 1.5) << 17))
        again = box.call("first", np.ones(3))
    assert not result.ok
    assert result.error.startswith("process ran out of its memory limit of 600 MB during first")
    assert again.ok and again.value == 1.0  # a fresh child for the next call


def test_what_a_call_printed_is_in_the_output_as_soon_as_it_returns(tmp_path: Path) -> None:
    # The grader reads the output right after the last call; the pipe's reader thread may not
    # have run yet on a busy machine (a student's prints were missing from the feedback).
    student = tmp_path / "talk.py"
    student.write_text("def say(i):\n    print('line', i, 'x' * 1000)\n    return i\n")
    with Sandbox(student, limits=FAST) as box:
        for i in range(30):
            assert box.call("say", i).value == i
            assert f"line {i} " in box.output
