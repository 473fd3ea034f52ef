"""Hostile and broken submissions against grader.py end to end (issue 5).

Most cases share ONE grading run: every hostile student sits in one submission folder next
to two correct students, and ``grader.py`` runs once with short limits. Each case asserts
its exact score (it loses only what it did not answer) and a specific message; the correct
students must score exactly what they score when graded alone. Separate runs cover
kill-and-resume, a folder that changes during grading, and ``--user``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np
import pytest
from folders import nest, remove
from processes import survivors
from users import readable_python, throwaway_user

from gradcheck import networks
from gradcheck.grading import user_problem
from gradcheck.submissions import discover, snapshot

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX sandbox")

ROOT = Path(__file__).resolve().parent.parent
GRADER = ROOT / "grader.py"
LIMITS = ("--timeout", "2", "--memory", "512", "--workers", "2")
SOLUTION = (networks.solutions_dir() / "three_input.py").read_text()
STORM_MARK, LINGER_MARK, DAEMON_MARK = "37.25", "41.75", "gradcheck-test-vandal-daemon"


# -- building hostile sources -----------------------------------------------------------------


def wrap_bprop(body: str) -> str:
    """The solution whose bprop runs ``body`` (with ``g`` = the correct gradients)."""
    return (SOLUTION + "\n\n_correct_bprop = bprop\n\ndef bprop(cache):\n    g = _correct_bprop(cache)\n"
            + textwrap.indent(textwrap.dedent(body), "    ") + "\n")


def wrap_fprop(body: str) -> str:
    """The solution whose fprop runs ``body`` first."""
    return (SOLUTION + "\n\n_correct_fprop = fprop\n\ndef fprop(x, y, params):\n"
            + textwrap.indent(textwrap.dedent(body), "    ") + "\n    return _correct_fprop(x, y, params)\n")


def at_import(code: str) -> str:
    return textwrap.dedent(code) + "\n" + SOLUTION


# Where the grader runs, found the way an attacker would: the command lines of our ancestors.
FIND_GRADER = '''
import glob, json, os, subprocess
def _grader_argv():
    pid = os.getppid()
    while pid > 1:
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\\0")
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            return None
        if any(a.endswith("grader.py") for a in argv):
            return argv
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return None
try:
    ARGV = _grader_argv() or []
except OSError:  # the sandbox hides /proc
    ARGV = []
# An attacker who cannot read the grader's command line may still guess its folders: the test
# hands them over (guess.json), so that every attack below is really tried.
GUESS = json.load(open("guess.json")) if os.path.exists("guess.json") else {}
OUT = ARGV[ARGV.index("--out") + 1] if "--out" in ARGV else GUESS.get("out")
SUBMIT = next((a for a in ARGV[ARGV.index(next(a for a in ARGV if a.endswith("grader.py"))) + 1:]
               if not a.startswith("-")), None) if ARGV else GUESS.get("submit")
def _try(what, action):
    try:
        action()
        ATTEMPTS[what] = "ok"
    except Exception as exc:
        ATTEMPTS[what] = type(exc).__name__
ATTEMPTS = {}
def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
'''

FAKE_RESULT = '{"score": 1000, "tests": [], "execution_time": 0}'
ZERO_SOURCE = "raise SystemExit('replaced by a vandal')\n"

VANDAL = at_import(FIND_GRADER + f'''
assert OUT and SUBMIT, ARGV  # the attack must really find the grader's folders
for target in (f"{{OUT}}/grades.csv", f"{{OUT}}/aaa_correct/results.json",
               f"{{OUT}}/aab_vandal/results.json", f"{{OUT}}/.cache/zzz_correct/three_input.json",
               f"{{OUT}}/.cache/aab_vandal/three_input.json"):
    _try(target, lambda: _write(target, {FAKE_RESULT!r}))
for target in glob.glob(f"{{OUT}}/.snapshots/*/three_input.py") + [f"{{SUBMIT}}/aaa_correct/three_input.py"]:
    _try(target, lambda: _write(target, {ZERO_SOURCE!r}))
# A daemon, detached from the student's process, that keeps planting fake results.
script = f"while :; do echo fake > {{OUT}}/grades.csv; echo fake > {{OUT}}/zzz_correct/results.json; sleep 0.05; done"
subprocess.Popen(["sh", "-c", script, "{DAEMON_MARK}"], start_new_session=True)
snapshots = [v for k, v in ATTEMPTS.items() if "/.snapshots/" in k]
print("ATTEMPTS", json.dumps({{"grades.csv": ATTEMPTS[f"{{OUT}}/grades.csv"],
                              "snapshots written": snapshots.count("ok"), "snapshots": len(snapshots),
                              "all": sorted(set(ATTEMPTS.values()))}}))
''')

OWN_FILES = SOLUTION + '''
import os, shutil
with open(__file__, "w") as handle:
    handle.write("garbage")
with open("data.csv", "a") as handle:
    handle.write("more rows")
os.remove("notes.txt")
os.makedirs("junk", exist_ok=True)
open("junk/new.txt", "w").write("x")
'''


def spy_source(spy_dir: Path) -> str:
    """A correct solution that saves every array the grader sends it."""
    return SOLUTION + textwrap.dedent(f'''
        import itertools as _it
        _count = _it.count()
        _fprop, _bprop, _update = fprop, bprop, update

        def _save(*values):
            arrays = {{}}
            def walk(value, name):
                if isinstance(value, dict):
                    for key, item in value.items():
                        walk(item, f"{{name}}.{{key}}")
                elif isinstance(value, (np.ndarray, float, int)):
                    arrays[name] = np.asarray(value, dtype=float)
            for i, value in enumerate(values):
                walk(value, f"arg{{i}}")
            np.savez({str(spy_dir)!r} + f"/{{next(_count)}}.npz", **arrays)

        def fprop(x, y, params):
            _save(x, y, params)
            return _fprop(x, y, params)

        def bprop(cache):
            _save(cache)
            return _bprop(cache)

        def update(params, grads, lr):
            _save(params, grads, lr)
            return _update(params, grads, lr)
        ''')


def no_code_notebook() -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# My answers\n\nI will write them later.")]
    return nbformat.writes(notebook)


# name -> (source, file suffix, expected score out of 10, phrase its feedback must contain)
CASES: dict[str, tuple[str, str, float, str]] = {
    # Named to be graded first: loading has its own, longer limit (Limits.load_timeout), and
    # this job then overlaps with all the others.
    "aa0_loop_import": (at_import("while True:\n    pass\n"), ".py", 0, "loading three_input.py did not finish within"),
    "loop_bprop": (wrap_bprop("while True:\n    pass"), ".py", 4, "bprop did not return within 2 s"),
    "exit_fprop": (wrap_fprop("import sys; sys.exit(0)"), ".py", 2, "fprop called sys.exit(0)"),
    "osexit_bprop": (wrap_bprop("import os; os._exit(0)"), ".py", 4, "process exited with status 0 during bprop"),
    "kill9_bprop": (wrap_bprop("import os; os.kill(os.getpid(), 9)"), ".py", 4, "killed by signal 9 (SIGKILL) during bprop"),
    "membomb_bprop": (wrap_bprop("hog = []\nwhile True:\n    hog.append(np.ones(10**6))"), ".py", 4,
                      "the memory limit is 512 MB"),
    "recursion_bprop": (wrap_bprop("def down(n):\n    return down(n + 1) + 1\nreturn down(0)"), ".py", 4,
                        "RecursionError"),
    "forkstorm_bprop": (wrap_bprop(f"import subprocess\nfor _ in range(48):\n    subprocess.Popen(['sleep', '{STORM_MARK}'])\nreturn g"),
                        ".py", 4, "Resource temporarily unavailable"),
    "lingering_bprop": (wrap_bprop(f"import subprocess\nsubprocess.Popen(['sleep', '{LINGER_MARK}'])\nreturn g"),
                        ".py", 10, "all match"),
    "print200mb_fprop": (wrap_fprop("for _ in range(200):\n    print('x' * 10**6)"), ".py", 10, "more characters cut"),
    "syntax_error": (SOLUTION + "\ndef broken(:\n    pass\n", ".py", 0, f"syntax error on line {SOLUTION.count(chr(10)) + 2}"),
    "import_error": ("import no_such_package_gradcheck_xyz\n" + SOLUTION, ".py", 0,
                     "No module named 'no_such_package_gradcheck_xyz'"),
    "nb_not_json": ("this is { not json", ".ipynb", 0, "not a valid Jupyter notebook"),
    "nb_no_code": (no_code_notebook(), ".ipynb", 0, "three_input.ipynb has no code cells"),
    "empty_file": ("", ".py", 0, "three_input.py is empty"),
    "ret_list": (wrap_bprop("return [g['W1'], g['W2']]"), ".py", 4,
                 "bprop returned a list of 2 items, not a dict of gradients: return {'W1': dW1, "
                 "'W2': dW2}, one entry per parameter"),
    # It read "bprop returned no gradient for W1", for a dict that held it.
    "ret_int_key": (wrap_bprop("return {**g, 1: 2}"), ".py", 4,
                    "bprop returned a dict with a non-str key 1, not a dict of gradients"),
    "ret_missing_key": (wrap_bprop("return {'W1': g['W1']}"), ".py", 7, "bprop returned no key for 'W2'"),
    "ret_extra_key": (wrap_bprop("return {**g, 'b1': np.zeros(2)}"), ".py", 10, "all match"),
    "ret_misnamed_key": (wrap_bprop("return {'W1': g['W1'], 'w2': g['W2']}"), ".py", 7, "under the key 'w2'"),
    "ret_wrong_shape": (wrap_bprop("return {'W1': g['W1'], 'W2': g['W2'].T}"), ".py", 7, "with shape (2, 1) (the transpose)"),
    "ret_nan": (wrap_bprop("w = g['W1'].copy(); w[0, 0] = np.nan\nreturn {'W1': w, 'W2': g['W2']}"), ".py", 7,
                "non-finite value(s) in 'W1', first at index (0, 0): nan"),
    "ret_inf": (wrap_bprop("w = g['W2'].copy(); w[0, 0] = np.inf\nreturn {'W1': g['W1'], 'W2': w}"), ".py", 7,
                "non-finite value(s) in 'W2', first at index (0, 0): inf"),
    "ret_scalars": (wrap_bprop("return {'W1': float(g['W1'].sum()), 'W2': 1}"), ".py", 4,
                    "bprop returned 'W1' with shape (); expected (2, 3)"),
    "ret_float32": (wrap_bprop("return {k: v.astype(np.float32) for k, v in g.items()}"), ".py", 10, "all match"),
    "ret_int": (wrap_bprop("return {'W1': g['W1'].astype(int), 'W2': g['W2']}"), ".py", 7, "dW1[0, 0]: yours 0,"),
    "ret_matrix": (wrap_bprop("return {'W1': np.matrix(g['W1']), 'W2': g['W2']}"), ".py", 10, "all match"),
    "ret_object": (wrap_bprop("return {'W1': g['W1'].astype(object), 'W2': g['W2']}"), ".py", 7,
                   "bprop returned an array of dtype object, shape (2, 3) (gradients must be float arrays) for 'W1'"),
    "monkeypatch": (at_import("""
        import builtins, numpy as np, numpy.testing
        np.allclose = lambda *a, **k: True
        np.isclose = lambda a, b, *r, **k: np.ones(np.shape(a), dtype=bool)
        np.array_equal = lambda *a, **k: True
        np.testing.assert_allclose = lambda *a, **k: None
        builtins.abs = lambda value: 0
        builtins.max = lambda *a, **k: 0
        """) + "\n_correct_bprop = bprop\n\ndef bprop(cache):\n    g = _correct_bprop(cache)\n"
                    "    return {'W1': -g['W1'], 'W2': g['W2']}\n", ".py", 7, "expected -0.013660123"),
    "aab_vandal": (VANDAL, ".py", 10, "ATTEMPTS"),
    "own_files": (OWN_FILES, ".py", 10, "all match"),
}

# -- the sandbox's walls (issue 11): each attack fails, and is told so in one sentence ---------

SOLUTIONS_DIR = str(networks.solutions_dir().resolve())
PROTECTED = (ROOT / "gradcheck", networks.solutions_dir(), ROOT / "tests",
             Path(sys.prefix) / "lib")  # with the site-packages copy of the solutions
DAEMON2_MARK, WALL = "43.125", "the grader's sandbox lets student code use only its own folder"
W1_WRONG = "\n_own_bprop = bprop\n\ndef bprop(cache):\n    g = _own_bprop(cache)\n    return {'W1': -g['W1'], 'W2': g['W2']}\n"

WALKER = SOLUTION + W1_WRONG + """
import os, sys, json
_found, _tried = None, []
for _top in ["/", "/work", "/root", "/home", "/tmp", sys.prefix, *sys.path, *json.load(open("guess.json")).values()]:
    if not isinstance(_top, str) or not os.path.isdir(_top or "."):
        continue
    for _dir, _dirs, _files in os.walk(_top):
        if _dir[len(_top):].count(os.sep) >= 2:
            _dirs[:] = []  # a few levels below each guess: deep enough, and fast
        if "three_input.py" in _files and os.path.abspath(_dir) != os.getcwd():
            _tried.append(_dir)
            try:
                _found = open(os.path.join(_dir, "three_input.py")).read()
                break
            except OSError:
                pass
    if _found:
        break
print("ATTEMPTS", json.dumps({"tried": len(_tried), "stolen": _found is not None}))
if _found:
    exec(_found, globals())
"""

DAEMON = at_import(f"""
    import os
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "{DAEMON2_MARK}"])
        os._exit(0)
    os.wait()
    """)

GC_THIEF = SOLUTION + """
import gc, json, sys
_modules = [n for n in sys.modules if "_reference" in n or "solution" in n]
print("ATTEMPTS", json.dumps({"modules": _modules}))

def bprop(cache):
    # Steal any array shaped like an answer from the process's memory, never compute one.
    found = {"W1": np.zeros((2, 3)), "W2": np.zeros((1, 2))}
    for value in gc.get_objects():
        if isinstance(value, np.ndarray) and value.dtype == float:
            for key, shape in (("W1", (2, 3)), ("W2", (1, 2))):
                if value.shape == shape:
                    found[key] = value.copy()
    return found
"""

NETWORK_FPROP = wrap_fprop("""
    import json, socket
    port = json.load(open("guess.json"))["tcp"]
    socket.create_connection(("127.0.0.1", port), timeout=1).close()""")
NETWORK_BPROP = wrap_bprop("""
    import json, socket
    port = json.load(open("guess.json"))["udp"]
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"stolen", ("127.0.0.1", port))
    return g""")
EDITOR = wrap_fprop(f"for p in {[str(ROOT / 'gradcheck' / 'scoring.py'), SOLUTIONS_DIR + '/three_input.py']!r}:\n"
                    "    open(p, 'ab').close()")

CASES.update({
    "cheat_import_solutions": ("import gradcheck\n_sol = gradcheck.networks.get('three_input').solution()\n"
                               "fprop, bprop, update = _sol.fprop, _sol.bprop, _sol.update\n", ".py", 0, WALL),
    "cheat_walk_for_solutions": (WALKER, ".py", 7, '"stolen": false'),
    "cheat_proc_cmdline": (at_import("import os\nopen(f'/proc/{os.getppid()}/cmdline').read()"), ".py", 0,
                           "Permission denied: '/proc/"),
    "cheat_proc_mem": (wrap_bprop("import os\nopen(f'/proc/{os.getppid()}/mem', 'rb').read(1)"), ".py", 4, WALL),
    "cheat_edit_gradcheck": (EDITOR, ".py", 2, WALL),
    "cheat_kill_parent": (wrap_bprop("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"), ".py", 4,
                          "Operation not permitted"),
    "cheat_stop_parent": (wrap_fprop("import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)"), ".py", 2,
                          "Operation not permitted"),
    "cheat_daemon": (DAEMON, ".py", 10, "all match"),
    "cheat_tcp": (NETWORK_FPROP, ".py", 2, WALL),
    "cheat_udp": (NETWORK_BPROP, ".py", 4, WALL),
    "cheat_shadow_modules": (SOLUTION, ".py", 10, "all match"),
    "cheat_disk_fill": (wrap_bprop("with open('fill.bin', 'wb') as f:\n    while True:\n        f.write(b'0' * 2**20)"),
                        ".py", 4, "File too large"),
    "cheat_fds": (wrap_bprop("import os\nheld = [open(os.devnull) for _ in range(100_000)]"), ".py", 4,
                  "Too many open files"),
    "cheat_gc_scan": (GC_THIEF, ".py", 4, '"modules": []'),
})
# Values and exceptions that broke the grader or the child's request loop (a QA session).
EVIL_TYPE = "class _Meta(type):\n    def __getattribute__(cls, name):\n        raise RuntimeError(name)\n"
# A reply written straight to the message socket, with a 40 MB header of zeros.
FORGE_HEADER = """import os, socket, struct
header = b'["l",[' + b'0,' * 20_000_000 + b'0]]'
for fd in range(3, 64):
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        continue
    if sock.family == socket.AF_UNIX:
        body = struct.pack('>4sQ', b'GCW1', len(header)) + header
        sock.sendall(struct.pack('>Q', len(body)) + body)
        break
return g"""
FLAT_NEAR_SEEN = SOLUTION + """
_true_fprop, _seen = fprop, []

def fprop(x, y, params):
    for seen_x, seen_params, cache in _seen:
        if seen_x.shape == x.shape and np.array_equal(seen_x, x):
            step = max(float(np.max(np.abs(seen_params[k] - params[k]))) for k in params)
            if 0 < step < 1e-3:
                return dict(cache)
    cache = _true_fprop(x, y, params)
    _seen.append((np.array(x), {k: np.array(v) for k, v in params.items()}, cache))
    return cache

def bprop(cache):
    return {"W1": np.zeros((2, 3)), "W2": np.zeros((1, 2))}
"""
CASES.update({
    # The wire carries ints of up to 10,000 bits; float() of one overflowed in the grader
    # (OverflowError: the whole assignment was lost, "the grader could not grade").
    "wire_bigint_bprop": (wrap_bprop("return {'W1': [[10**400] * 3] * 2, 'W2': g['W2']}"), ".py", 7,
                          "non-finite value(s) in 'W1', first at index (0, 0): inf"),
    "wire_bigint_loss": (SOLUTION + "\n_f = fprop\n\ndef fprop(x, y, params):\n    cache = _f(x, y, params)\n"
                         "    cache['loss'] = -10**400\n    return cache\n", ".py", 8, "fprop's loss is -inf"),
    # Describing these killed the child's loop: "process exited with status 0 during bprop".
    "exc_metaclass_bprop": (wrap_bprop(EVIL_TYPE + "class E(Exception, metaclass=_Meta):\n    pass\nraise E('hi')"),
                            ".py", 4, "bprop raised E: hi"),
    "exc_exit_repr_bprop": (wrap_bprop("class R:\n    def __repr__(self):\n        raise ValueError\n"
                                       "import sys\nsys.exit(R())"), ".py", 4, "bprop called sys.exit(...)"),
    # Both processes of a fork without exec replied, and every later reply was read for the
    # wrong call (0 points for correct work); only the child itself replies now.
    "fork_return_bprop": (wrap_bprop("import os\nos.fork()\nreturn g"), ".py", 10, "all match"),
    # A reply's JSON header of tiny nodes costs the grader ~20 times its size to read: 15
    # million floats in a list took 77 s and 2 GB of the grader's memory, and cost W2 too.
    "wire_long_list_bprop": (wrap_bprop("return {'W1': [0.1] * 15_000_000, 'W2': g['W2']}"), ".py", 7,
                             "a list of 15,000,000 items, too long to send back"),
    "wire_forged_header_bprop": (wrap_bprop(FORGE_HEADER), ".py", 4, "over the limit of 16,777,216"),
    # It said "process exited with status 0 during bprop": the student never exited.
    "close_fds_bprop": (wrap_bprop("import os\nos.closerange(0, 1024)\nreturn g"), ".py", 4,
                        "process lost its connection to the grader during bprop"),
    # Right loss at every point the grader asks about, the same loss for every call near one
    # already seen: a bprop of zeros was "consistent with your fprop", half of each share.
    "cheat_flat_fprop": (FLAT_NEAR_SEEN, ".py", 4, "dW1[0, 0]: yours 0, expected -0.013660123"),
    # A System V segment outlived the run: a channel to any student graded at once or later.
    "cheat_sysv_ipc": (wrap_fprop("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                                  "if libc.shmget(0x67630003, 4096, 0o1666) < 0:\n"
                                  "    raise OSError(ctypes.get_errno(), 'shmget failed')"), ".py", 2,
                       "[Errno 1] shmget failed"),
    # prlimit64 on a process of the same user was allowed: looping over the pids, a student set
    # RLIMIT_NOFILE to 4 on every process of the grader's user, and the run died ("Too many
    # open files"). Here only the parent (the monitor) is tried.
    "cheat_prlimit_parent": (wrap_fprop("import os, resource\n"
                                        "resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (4, 4))"),
                             ".py", 2, "Operation not permitted"),
    # A data file sorted before the submission used up the snapshot's 50 MB: "missing".
    "crowded_folder": (SOLUTION, ".py", 10, "all match"),
    "nb_too_large": (SOLUTION, ".ipynb", 0, "three_input.ipynb is 51 MB, more than the 50 MB a submission may hold"),
})
SNAPSHOT_LIMIT = 50 * 2**20


def huge_notebook(source: str, size: int) -> str:
    """A notebook whose saved output makes it ``size`` bytes or more."""
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="z" * size)]
    notebook.cells = [cell]
    return nbformat.writes(notebook)


# Files next to the submission that a fresh interpreter would run: a forked child never does.
SHADOWS = {"numpy.py": "raise SystemExit('the shadow numpy ran')\n",
           "sitecustomize.py": "raise SystemExit('sitecustomize ran')\n",
           "usercustomize.py": "raise SystemExit('usercustomize ran')\n",
           "evil.pth": "import os; os._exit(3)\n"}
# A submission that is a link to somewhere else is not followed: it is missing.
LINKS = {"cheat_link_solution": networks.solutions_dir() / "three_input.py", "cheat_link_passwd": Path("/etc/passwd")}
LINKED_PHRASE = "three_input.py is a symbolic link, which the grader does not follow: submit the file itself"


def tree_digest(folders: tuple[Path, ...]) -> dict[str, str]:
    digests = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
                digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


CORRECT = ("aaa_correct", "zzz_correct")
CHANGED = "zzy_changed"  # its original is rewritten while the grader runs


def write_student(submit: Path, student: str, source: str, suffix: str = ".py") -> Path:
    folder = submit / student
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"three_input{suffix}"
    path.write_text(source)
    return path


@dataclass(frozen=True)
class AsUser:
    """Run the grader itself as this unprivileged user, with a Python it can read."""

    name: str
    python: Path

    def process_options(self, home: Path) -> dict[str, object]:
        entry = pwd.getpwnam(self.name)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [], "cwd": str(home),
                "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}}


def grader_command(submit: Path, out: Path, *args: str, python: Path | str = sys.executable) -> list[str]:
    return [str(python), str(GRADER), str(submit), "--out", str(out), *args]


def grader_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TMPDIR"}
    return env  # snapshots in /tmp, where the vandal looks for them


def run_options(as_user: AsUser | None, home: Path) -> dict[str, object]:
    return as_user.process_options(home) if as_user else {"env": grader_env()}


def grade(submit: Path, out: Path, *args: str, as_user: AsUser | None = None) -> subprocess.CompletedProcess[str]:
    python = as_user.python if as_user else sys.executable
    return subprocess.run(grader_command(submit, out, *args, python=python), capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, **run_options(as_user, submit.parent))


def grades(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "grades.csv", newline="") as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


def results_without_time(out: Path, student: str) -> dict[str, object]:
    data = json.loads((out / student / "results.json").read_text())
    data.pop("execution_time")
    return data


def folder_bytes(folder: Path) -> dict[str, bytes]:
    # A link stands for where it points (its target may change: /etc/passwd gains users).
    return {str(p.relative_to(folder)): os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def processes_with(marker: str) -> list[str]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker in command and state != "Z":
                found.append(f"{entry}: {command}")
    return found


# -- the shared hostile run -------------------------------------------------------------------


class Listener:
    """A TCP and a UDP socket on 127.0.0.1 in the test's process; what reached them."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        for sock in (self.tcp, self.udp):
            sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def ports(self) -> dict[str, int]:
        return {"tcp": self.tcp.getsockname()[1], "udp": self.udp.getsockname()[1]}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                self.tcp.accept()[0].close()
                self.received.append(b"a tcp connection")
            except OSError:
                pass
            try:
                self.received.append(self.udp.recv(100))
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.tcp.close()
        self.udp.close()


class HostileRun:
    """One grading run of many hostile students next to correct ones, with ``isolation``."""

    def __init__(self, base: Path, cases: dict[str, tuple[str, str, float, str]], isolation: str,
                 spy: bool = False, links: bool = True, as_user: AsUser | None = None) -> None:
        self.as_user = as_user
        self.submit, self.out, self.alone_out = base / "submit", base / "out", base / "alone-out"
        self.spy_dir = base / "spy"
        self.spy_dir.mkdir()
        self.listener = Listener()
        guess = json.dumps({"out": str(self.out), "submit": str(self.submit), "root": str(ROOT),
                            "solutions": SOLUTIONS_DIR, **self.listener.ports()})
        for name, (source, suffix, _, _) in cases.items():
            write_student(self.submit, name, source, suffix)
            (self.submit / name / "guess.json").write_text(guess)
        if "own_files" in cases:
            (self.submit / "own_files" / "data.csv").write_text("a,b\n1,2\n")
            (self.submit / "own_files" / "notes.txt").write_text("my notes")
        if "crowded_folder" in cases:  # sorted before the submission, it fills the limit
            (self.submit / "crowded_folder" / "a_data.bin").write_bytes(b"0" * (SNAPSHOT_LIMIT - 1024))
        if "nb_too_large" in cases:
            write_student(self.submit, "nb_too_large", huge_notebook(SOLUTION, SNAPSHOT_LIMIT + 2**20), ".ipynb")
        if "cheat_shadow_modules" in cases:
            for file, text in SHADOWS.items():
                (self.submit / "cheat_shadow_modules" / file).write_text(text)
        for name, target in (LINKS.items() if links else ()):
            (self.submit / name).mkdir(parents=True)
            (self.submit / name / "three_input.py").symlink_to(target)
        if spy:
            write_student(self.submit, "spy", spy_source(self.spy_dir))
        for name in CORRECT:
            write_student(self.submit, name, SOLUTION)
        self.changed_original = SOLUTION
        self.changed_path = write_student(self.submit, CHANGED, self.changed_original)
        self.originals = {p.name: folder_bytes(p) for p in self.submit.iterdir()}
        alone = base / "alone"
        for name in CORRECT:
            write_student(alone, name, SOLUTION)
        if as_user is not None:  # the grader's own user owns its folders
            entry = pwd.getpwnam(as_user.name)
            for folder in (base, *base.rglob("*")):
                os.chown(folder, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        self.protected = tree_digest(PROTECTED)
        try:
            self.result = self._run_while_changing_one_student(isolation)
        finally:
            self.listener.close()
        self.protected_after = tree_digest(PROTECTED)
        self.alone = grade(alone, self.alone_out, *LIMITS, as_user=as_user)

    def _run_while_changing_one_student(self, isolation: str) -> subprocess.CompletedProcess[str]:
        python = self.as_user.python if self.as_user else sys.executable
        command = grader_command(self.submit, self.out, *LIMITS, "--isolation", isolation, python=python)
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL, **run_options(self.as_user, self.submit.parent))
        # Once grading has begun (a first result is cached), the student "uploads" a broken
        # version: the run must grade the version of the snapshot taken at the start.
        cache = self.out / ".cache"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if cache.is_dir() and any(cache.rglob("*.json")):
                break
            time.sleep(0.05)
        self.changed_path.write_text(wrap_bprop("return {'W1': -g['W1'], 'W2': -g['W2']}"))
        stdout, stderr = process.communicate(timeout=300)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def feedback(self, student: str) -> str:
        return (self.out / student / "feedback.md").read_text()


# The run without the sandbox (--isolation off, debugging only): what the grader still
# guarantees when student code can write everywhere its user can.
OPEN_CASES = {name: CASES[name] for name in ("aab_vandal", "own_files")}


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[AsUser]:
    """A throwaway user (deleted afterwards) and a Python it can run the grader with."""
    if os.geteuid() != 0:
        pytest.skip("the suite runs as an unprivileged user already: the other runs are that run")
    try:
        with throwaway_user() as name, readable_python(name) as python:
            yield AsUser(name, python)
    except LookupError as error:
        pytest.skip(f"no unprivileged run here: {error}")


@pytest.fixture(scope="module", params=["as the grader's user", "as an unprivileged user"])
def run(request: pytest.FixtureRequest) -> Iterator[HostileRun]:
    as_user = request.getfixturevalue("unprivileged") if request.param == "as an unprivileged user" else None
    # World-traversable, so that an unprivileged grader can own its folders in it.
    base = Path(tempfile.mkdtemp(prefix="gradcheck-hostile-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield HostileRun(base, CASES, "best", as_user=as_user)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def open_run(tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    return HostileRun(tmp_path_factory.mktemp("hostile-open"), OPEN_CASES, "off", spy=True, links=False)


def test_the_run_completes_and_writes_every_output(run: HostileRun) -> None:
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    line = run.result.stdout.split("\n", 1)[0]
    assert line.startswith("isolation: "), run.result.stdout[:200]
    # Said once, kept for the instructor (run.json, Gradescope's extra_data), never shown to students.
    assert json.loads((run.out / "run.json").read_text())["run"]["isolation"] == line
    for student in CORRECT:
        assert json.loads((run.out / student / "results.json").read_text())["extra_data"] == {"isolation": line}
        assert "isolation" not in run.feedback(student)
    table = grades(run.out)
    assert set(table) == set(CASES) | set(CORRECT) | set(LINKS) | {CHANGED}
    for student in table:
        json.loads((run.out / student / "results.json").read_text())
    ET.parse(run.out / "junit.xml")


@pytest.mark.parametrize("student", sorted(CASES))
def test_each_hostile_student_loses_only_what_it_did_not_answer_and_is_told_why(run: HostileRun, student: str) -> None:
    _, _, score, phrase = CASES[student]
    row = grades(run.out)[student]
    assert float(row["three_input"]) == pytest.approx(score), run.feedback(student)
    assert phrase in run.feedback(student)


@pytest.mark.parametrize("student", sorted(LINKS))
def test_a_submission_that_links_elsewhere_is_not_followed(run: HostileRun, student: str) -> None:
    assert grades(run.out)[student]["three_input"] == "0"
    assert LINKED_PHRASE in run.feedback(student)


def test_no_file_outside_the_scratch_copies_changes(run: HostileRun) -> None:
    # gradcheck's source, the solutions (both copies), the tests, the Python installation.
    before, after = run.protected, run.protected_after
    assert sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p)) == []
    for student, files in run.originals.items():
        if student != CHANGED:
            assert folder_bytes(run.submit / student) == files, student


def test_the_sandboxed_vandal_could_write_nothing(run: HostileRun) -> None:
    attempts = json.loads(run.feedback("aab_vandal").split("ATTEMPTS ", 1)[1].split("\n", 1)[0])
    assert attempts["all"] == ["PermissionError"], attempts
    assert attempts["snapshots written"] == 0
    for path in run.out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv"):
            assert '"score": 1000' not in path.read_text(), path
    assert "fake" not in (run.out / "grades.csv").read_text()
    assert not processes_with(DAEMON_MARK)


def test_nothing_reached_the_network(run: HostileRun) -> None:
    assert run.listener.received == []


def test_no_daemon_outlives_the_run(run: HostileRun) -> None:
    assert not processes_with(f"sleep {DAEMON2_MARK}")


def test_the_correct_students_score_exactly_as_when_graded_alone(run: HostileRun) -> None:
    assert run.alone.returncode == 0, run.alone.stderr
    table, alone = grades(run.out), grades(run.alone_out)
    for student in CORRECT:
        assert table[student]["three_input"] == alone[student]["three_input"] == "10"
        assert results_without_time(run.out, student) == results_without_time(run.alone_out, student)


def test_fake_results_planted_by_student_code_do_not_survive(open_run: HostileRun) -> None:
    # Without the sandbox the vandal runs as the grader's user: its writes succeed (it says
    # so), yet every output is the grader's own, and the snapshots it overwrote were graded
    # as submitted.
    run = open_run
    assert run.result.returncode == 0, run.result.stderr[-3000:]
    assert "WARNING: --isolation off" in run.result.stderr
    attempts = json.loads(run.feedback("aab_vandal").split("ATTEMPTS ", 1)[1].split("\n", 1)[0])
    assert attempts["grades.csv"] == "ok"
    modules = len(list(run.submit.glob("*/three_input.py")))
    assert attempts["snapshots written"] == attempts["snapshots"] >= modules
    assert grades(run.out)["zzz_correct"]["three_input"] == "10"
    assert json.loads((run.out / "aaa_correct" / "results.json").read_text())["score"] == 10
    assert "fake" not in (run.out / "grades.csv").read_text()
    assert not processes_with(DAEMON_MARK)


def test_no_process_started_by_a_student_outlives_the_run(run: HostileRun) -> None:
    assert not processes_with(f"sleep {STORM_MARK}")
    assert not processes_with(f"sleep {LINGER_MARK}")


def test_200_mb_of_output_is_capped_in_the_feedback(run: HostileRun) -> None:
    assert (run.out / "print200mb_fprop" / "feedback.md").stat().st_size < 1_000_000


@pytest.mark.parametrize("which", ["sandboxed", "open"])
def test_the_students_own_files_are_never_modified(run: HostileRun, open_run: HostileRun, which: str) -> None:
    chosen = run if which == "sandboxed" else open_run
    for student, files in chosen.originals.items():
        if student == CHANGED or (which == "open" and student == "aaa_correct"):
            continue  # the test itself rewrote it; without the sandbox the vandal can (a known gap)
        assert folder_bytes(chosen.submit / student) == files, student


def test_a_folder_changed_during_grading_is_graded_from_the_snapshot(run: HostileRun) -> None:
    assert grades(run.out)[CHANGED]["three_input"] == "10"  # the rewritten version scores 4
    data = json.loads((run.out / "run.json").read_text())
    [student] = [s for s in data["students"] if s["student"] == CHANGED]
    [assignment] = student["assignments"]
    assert assignment["content_hash"] == hashlib.sha256(run.changed_original.encode()).hexdigest()
    assert assignment["content_hash"] != hashlib.sha256(run.changed_path.read_bytes()).hexdigest()


def test_reference_gradients_are_never_sent_to_student_code(open_run: HostileRun) -> None:
    run = open_run
    network = networks.get("three_input")
    solution = network.solution()
    references = []
    for _, example in network.grading_examples(0, 3):
        ex = example.fresh()
        references += list(solution.bprop(solution.fprop(ex.x, ex.y, dict(ex.params))).values())
    received = [array for path in run.spy_dir.glob("*.npz") for array in np.load(path).values()]
    assert len(received) >= 4 * 3  # fprop, bprop and update were called on every example
    leaks = [r for r in references for a in received if a.shape == r.shape and np.allclose(a, r)]
    assert not leaks


def test_an_extra_gradient_key_is_mentioned(run: HostileRun) -> None:
    assert "b1" in run.feedback("ret_extra_key")


# -- snapshot consistency (unit level) ----------------------------------------------------------


def test_a_folder_that_changes_while_it_is_copied_is_copied_again(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "submit" / "alice"
    write_student(tmp_path / "submit", "alice", "version = 1\n")
    (folder / "helper.py").write_text("helper = 1\n")
    [submission] = discover(tmp_path / "submit", ["three_input"])
    original_read = Path.read_bytes
    changed = []

    def read_and_change(path: Path) -> bytes:
        data = original_read(path)
        if path.name == "helper.py" and not changed:  # the student saves both files mid-copy
            (folder / "three_input.py").write_text("version = 2\n")
            (folder / "helper.py").write_text("helper = 2\n")
            changed.append(path)
        return data

    monkeypatch.setattr(Path, "read_bytes", read_and_change)
    copy = snapshot(submission, tmp_path / "snap")
    monkeypatch.undo()
    assert changed
    assert (copy.folder / "three_input.py").read_text() == "version = 2\n"
    assert (copy.folder / "helper.py").read_text() == "helper = 2\n"
    assert copy.digests["three_input"] == hashlib.sha256(b"version = 2\n").hexdigest()


# -- kill and resume --------------------------------------------------------------------------


def resume_students(submit: Path) -> None:
    keys = list(networks.get("three_input").param_shapes())
    for i in range(12):
        # A short sleep at import gives the test time to kill the run part-way.
        bug = f"return {{**g, {keys[i % 2]!r}: -g[{keys[i % 2]!r}]}}" if i % 3 == 0 else "return g"
        write_student(submit, f"s{i:02d}", "import time; time.sleep(0.4)\n" + wrap_bprop(bug))


def assert_outputs_valid(out: Path) -> None:
    for path in out.rglob("*"):
        if not path.is_file() or (path.name.startswith(".") and path.name.endswith(".tmp")):
            continue  # atomic_write's temporary files are not outputs
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(path.open(newline="")))
            assert rows and all(row["total"] for row in rows)
        elif path.suffix == ".xml":
            ET.parse(path)


def test_kill_and_resume_gives_the_uninterrupted_results_grading_nothing_twice(tmp_path: Path) -> None:
    submit, full, out = tmp_path / "submit", tmp_path / "full", tmp_path / "out"
    resume_students(submit)
    args = ("--timeout", "5", "--workers", "2")
    marker = f"GRADCHECK_TEST_RUN={tmp_path.name}"
    process = subprocess.Popen(grader_command(submit, out, *args), env={**grader_env(), "GRADCHECK_TEST_RUN": tmp_path.name},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    cache = out / ".cache"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache.rglob("*.json"))) < 3:
        assert process.poll() is None, "the run finished before it could be killed"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    # Nothing of the killed run goes on: no worker, fork server, monitor or student child.
    assert survivors(marker) == []
    # A SIGKILL gives no chance to delete the snapshot copies: they stay inside OUT, private,
    # and the resumed run removes them.
    assert (out / ".snapshots").is_dir()
    assert_outputs_valid(out)
    done = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in cache.rglob("*.json")}
    assert 3 <= len(done) < 12 and not (out / "grades.csv").exists()

    resumed = grade(submit, out, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done} == done  # reused, not regraded
    assert len(list(cache.rglob("*.json"))) == 12
    assert not [p for p in out.rglob(".*.tmp")]
    assert not (out / ".snapshots").exists()

    assert grade(submit, full, *args).returncode == 0
    assert (out / "grades.csv").read_text() == (full / "grades.csv").read_text()
    for i in range(12):
        assert results_without_time(out, f"s{i:02d}") == results_without_time(full, f"s{i:02d}")
    assert_outputs_valid(out)


def test_resume_regrades_a_changed_submission_or_other_settings(tmp_path: Path) -> None:
    submit, out = tmp_path / "submit", tmp_path / "out"
    write_student(submit, "alice", SOLUTION)
    write_student(submit, "bob", SOLUTION)
    assert grade(submit, out, "--workers", "1").returncode == 0
    entry = {p.parent.name: p for p in (out / ".cache").rglob("*.json")}
    stamps = {name: p.stat().st_mtime_ns for name, p in entry.items()}
    write_student(submit, "bob", wrap_bprop("return {'W1': g['W1'], 'W2': -g['W2']}"))
    assert grade(submit, out, "--workers", "1", "--resume").returncode == 0
    assert entry["alice"].stat().st_mtime_ns == stamps["alice"]
    assert entry["bob"].stat().st_mtime_ns != stamps["bob"]
    assert grades(out)["bob"]["three_input"] == "7"
    assert grade(submit, out, "--workers", "1", "--resume", "--seed", "1").returncode == 0
    assert entry["alice"].stat().st_mtime_ns != stamps["alice"]  # another seed: graded again


# -- --user -----------------------------------------------------------------------------------

THIEF = at_import(FIND_GRADER + '''
import pathlib
SOLUTIONS = os.environ.get("GRADCHECK_SOLUTIONS", "")
_try("read solutions", lambda: open(f"{SOLUTIONS}/three_input.py").read())
_try("list out", lambda: os.listdir(OUT))
_try("write out", lambda: _write(f"{OUT}/grades.csv", "fake"))
_try("read cache", lambda: os.listdir(f"{OUT}/.cache"))
_try("write victim", lambda: _write(f"{SUBMIT}/victim/three_input.py", "raise SystemExit"))
_try("plant in victim", lambda: _write(f"{SUBMIT}/victim/planted.py", "x = 1"))
_try("read snapshots", lambda: [open(p).read() for p in glob.glob(f"{OUT}/.snapshots/*/*")]
     or os.listdir(f"{OUT}/.snapshots"))
_try("whoami", lambda: os.getuid() != 0 or 1 / 0)
print("ATTEMPTS", json.dumps(ATTEMPTS))
''')


def test_a_user_who_cannot_run_this_python_is_a_usage_error(tmp_path: Path, unprivileged: AsUser) -> None:
    user = unprivileged.name
    if user_problem(user) is None:
        pytest.skip(f"{user} can read this Python ({sys.executable}): nothing to refuse")
    write_student(tmp_path / "submit", "alice", SOLUTION)
    result = grade(tmp_path / "submit", tmp_path / "out", "--user", user)
    assert result.returncode == 2
    assert f"--user {user}: that user cannot run this Python" in result.stderr


@pytest.mark.parametrize("isolation", ["best", "off"])
def test_user_keeps_student_code_away_from_solutions_outputs_and_other_students(
        unprivileged: AsUser, isolation: str) -> None:
    # As root, with a Python the user can read; with the sandbox, and with file permissions alone.
    user = unprivileged.name
    # A world-traversable root (pytest's tmp_path is 0700): only the grader's own permission
    # choices, not a private parent folder, keep the student out.
    base = Path(tempfile.mkdtemp(prefix="gradcheck-user-test-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        solutions = base / "solutions"
        shutil.copytree(networks.solutions_dir(), solutions)
        os.chmod(solutions, 0o700)
        submit, out = base / "submit", base / "out"
        write_student(submit, "thief", THIEF)
        (submit / "thief" / "guess.json").write_text(json.dumps({"out": str(out), "submit": str(submit)}))
        write_student(submit, "victim", SOLUTION)
        victim = folder_bytes(submit / "victim")
        (out / ".cache").mkdir(parents=True)
        env = dict(grader_env(), GRADCHECK_SOLUTIONS=str(solutions))
        command = grader_command(submit, out, *LIMITS, "--user", user, "--isolation", isolation,
                                 python=unprivileged.python)
        result = subprocess.run(command, env=env,
                                capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert grades(out)["victim"]["three_input"] == grades(out)["thief"]["three_input"] == "10"
        feedback = (out / "thief" / "feedback.md").read_text()
        attempts = json.loads(feedback.split("ATTEMPTS ", 1)[1].split("\n", 1)[0])
        assert attempts.pop("whoami") == "ok"  # the child did run as the unprivileged user
        assert set(attempts.values()) == {"PermissionError"}, attempts
        assert folder_bytes(submit / "victim") == victim
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_folder_nested_thousands_of_levels_deep_stops_nothing(tmp_path: Path) -> None:
    # os.walk and Path.rglob recurse: a student folder 1,500 levels deep stopped the whole
    # run with RecursionError before anyone was graded (in the discovery of the assignments
    # and in the snapshot). Only the first levels of a folder are copied now.
    submit, out = tmp_path / "submit", tmp_path / "out"
    for student in ("aaa_correct", "deep"):
        write_student(submit, student, SOLUTION)
    nest(submit / "deep", 1500)
    try:
        result = grade(submit, out, *LIMITS)  # no --assignment: the assignments are discovered
        assert result.returncode == 0, result.stderr[-3000:]
        assert {s: row["three_input"] for s, row in grades(out).items()} == {"aaa_correct": "10", "deep": "10"}
    finally:
        remove(submit)
