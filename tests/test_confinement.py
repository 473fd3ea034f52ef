"""The kernel sandbox of gradcheck.confinement, layer by layer, through real Sandbox children.

Each test confines a child with one layer (or all), runs student functions that try to get
out, and checks the wall holds. A layer the kernel does not offer is skipped with the reason
the probe gave.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradcheck import confinement, isolation, networks
from gradcheck.confinement import Isolation, Layers, probe
from gradcheck.isolation import Limits, Sandbox

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel sandbox")

FOUND = probe()
ROOT = Path(__file__).resolve().parent.parent
SOLUTION_FILE = networks.solutions_dir() / "three_node.py"
ONLY_LANDLOCK = Layers(landlock=True, netns=False, seccomp=False, required=True)
ONLY_NETNS = Layers(landlock=False, netns=True, seccomp=False, required=True)
ONLY_SECCOMP = Layers(landlock=False, netns=False, seccomp=True, required=True)
NOTHING = Layers(landlock=False, netns=False, seccomp=False)

PROBES = '''\
import ctypes, gc, os, signal, socket, sys
libc = ctypes.CDLL(None, use_errno=True)

def read(path):
    with open(path, "rb") as handle:
        return len(handle.read(100))

def listing(path):
    return sorted(os.listdir(path))[:5]

def write(path, text="x"):
    with open(path, "w") as handle:
        handle.write(text)
    return True

def signal_parent(number):
    os.kill(os.getppid(), number)

def tcp(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True

def udp(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"leak", ("127.0.0.1", port))
    return True

def unix_pair():
    a, b = socket.socketpair()
    a.close(), b.close()
    return True

def interfaces():
    return sorted(name for _, name in socket.if_nameindex())

def ptrace_parent():
    PTRACE_ATTACH = 16
    if libc.ptrace(PTRACE_ATTACH, os.getppid(), None, None) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return True

def read_parent_memory():
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    buffer = ctypes.create_string_buffer(8)
    local, remote = iovec(ctypes.addressof(buffer), 8), iovec(0x400000, 8)
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    if libc.process_vm_readv(os.getppid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return True

def new_namespace():
    if libc.unshare(0x10000000) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return True

def shared_memory():
    # A System V segment outlives its process and is seen by every other: a channel between
    # students, and something left behind.
    segment = libc.shmget(0x67630001, 4096, 0o1600)
    if segment < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    libc.shmctl(segment, 0, None)  # IPC_RMID: the test leaves nothing behind either
    return True

def limit_parent():
    # Same user, so the kernel allows it: RLIMIT_NOFILE 4 on the monitor (on every process of
    # the user, when a student loops over the pids). Only the parent here: nothing else.
    import resource
    resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (4, 4))
    return True

def nice_parent():
    os.setpriority(os.PRIO_PROCESS, os.getppid(), 19)
    return True

def own_limits_and_niceness():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))
    os.nice(1)
    os.sched_setaffinity(0, os.sched_getaffinity(0))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] == soft - 1

def environment():
    return dict(os.environ)

def where():
    return os.getcwd()

def fill(megabytes):
    with open("big.bin", "wb") as handle:
        for _ in range(megabytes):
            handle.write(b"0" * 2**20)
    return True

def descriptors(count):
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(count)]
    return len(held)

def widen_inherited_rulesets():
    # A Landlock ruleset left open by the fork server would take rules for the next children.
    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]
    root = os.open("/", os.O_PATH)
    widened = []
    for fd in range(3, 1024):
        rule = PathBeneath(1 << 2, root)  # READ_FILE on everything
        if libc.syscall(445, fd, 1, ctypes.byref(rule), 0) == 0:
            widened.append(fd)
    return widened

def reference_in_memory(solutions):
    modules = [name for name, module in list(sys.modules.items())
               if "_reference" in name or "solution" in name
               or str(getattr(module, "__file__", "") or "").startswith(solutions)]
    functions = [repr(o) for o in gc.get_objects()
                 if hasattr(o, "__code__") and o.__code__.co_filename.startswith(solutions)]
    return modules + functions
'''


@pytest.fixture
def student(tmp_path: Path) -> Path:
    path = tmp_path / "student" / "probes.py"
    path.parent.mkdir()
    path.write_text(PROBES)
    return path


@pytest.fixture
def listener() -> Iterator[tuple[int, int, list[bytes]]]:
    """A TCP and a UDP socket on 127.0.0.1 in this (unconfined) process; what reached them."""
    received: list[bytes] = []
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp.settimeout(0.2)
    udp.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            for sock in (tcp, udp):
                try:
                    if sock is tcp:
                        connection, _ = tcp.accept()
                        received.append(b"tcp connection")
                        connection.close()
                    else:
                        received.append(udp.recv(100))
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield tcp.getsockname()[1], udp.getsockname()[1], received
    stop.set()
    thread.join()
    tcp.close()
    udp.close()


def needs(layer: str) -> None:
    available = {"landlock": FOUND.landlock > 0, "netns": FOUND.netns, "seccomp": FOUND.seccomp,
                 "scoping": FOUND.landlock >= 6, "tcp": FOUND.landlock >= 4}[layer]
    if not available:
        pytest.skip(f"this kernel does not offer {layer}: {', '.join(FOUND.gaps())}")


def fresh_fork_server() -> None:
    """The next sandbox starts a new fork server (no pooled monitor of the old one)."""
    isolation._MONITORS.close()
    isolation._SERVER.restart()


def call(box: Sandbox, function: str, *args: object) -> tuple[bool, str]:
    result = box.call(function, *args)
    return result.ok, str(result.value if result.ok else result.error)


# -- the probe and the levels -----------------------------------------------------------------


def test_the_probe_describes_what_a_child_gets(student: Path) -> None:
    assert FOUND.describe().startswith("isolation: ")
    with Sandbox(student) as box:
        loaded = box.load()
    assert loaded.ok and loaded.isolation is not None
    assert loaded.isolation.describe() == FOUND.describe()
    assert loaded.isolation.gaps() == FOUND.gaps()


def test_describe_and_gaps_name_each_layer() -> None:
    assert Isolation(landlock=7, netns=True, seccomp=True).describe() == "isolation: landlock 7, netns, seccomp"
    assert Isolation(landlock=7, netns=True, seccomp=True, kernel=True).describe() == \
        "isolation: landlock 7 (no TCP rules: --kernel), netns, seccomp"
    weak = Isolation(landlock=0, netns=False, seccomp=True, missing=("netns: unshare: Operation not permitted",))
    assert weak.gaps() == ("landlock (filesystem rules)", "netns (network namespace): unshare: Operation not permitted")
    assert not weak.complete and Isolation(6, True, True).complete


def test_off_confines_nothing(student: Path) -> None:
    # The walls below are the sandbox's: without it, the same calls get through.
    with Sandbox(student, isolation=NOTHING) as box:
        assert box.load().isolation == Isolation()
        assert call(box, "read", str(SOLUTION_FILE)) == (True, "100")
        assert call(box, "read", f"/proc/{os.getpid()}/cmdline")[0]


def test_a_required_layer_that_fails_stops_the_child_before_any_student_code(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        from gradcheck import confinement
        try:
            confinement.confine({str(tmp_path / "no-such-folder")!r}, confinement.Layers(netns=False,
                                seccomp=False, required=True))
        except confinement.IsolationError as error:
            print(error)
    """)
    needs("landlock")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("the landlock layer could not be applied: ")


# -- landlock ---------------------------------------------------------------------------------


def test_landlock_reads_only_python_and_gradcheck_and_writes_only_the_scratch_copy(student: Path,
                                                                                 tmp_path: Path) -> None:
    needs("landlock")
    outside = tmp_path / "outside.txt"
    outside.write_text("the grader's")
    with Sandbox(student, isolation=ONLY_LANDLOCK) as box:
        assert box.load().ok
        for path in (SOLUTION_FILE, ROOT / "tests" / "test_confinement.py", f"/proc/{os.getpid()}/cmdline",
                     f"/proc/{os.getpid()}/mem", "/etc/passwd", outside, Path.home() / ".bashrc"):
            ok, error = call(box, "read", str(path))
            assert not ok and ("PermissionError" in error or "FileNotFoundError" in error), (path, error)
        for folder in ("/tmp", str(tmp_path), str(ROOT), "/proc", str(Path.home())):
            assert not call(box, "listing", folder)[0], folder
        assert not call(box, "write", str(outside))[0]
        assert not call(box, "write", str(ROOT / "gradcheck" / "planted.py"))[0]
        assert not call(box, "write", str(SOLUTION_FILE))[0]
        assert call(box, "read", str(ROOT / "gradcheck" / "scoring.py")) == (True, "100")
        assert call(box, "read", os.__file__) == (True, "100")
        assert call(box, "write", "mine.txt") == (True, "True")
        assert call(box, "listing", ".")[0]
    assert outside.read_text() == "the grader's"
    assert not (ROOT / "gradcheck" / "planted.py").exists()


def test_landlock_hides_every_copy_of_the_solutions(student: Path) -> None:
    needs("landlock")
    copies = [path for path in confinement._hidden_paths() if Path(path).is_dir()]
    assert str(networks.solutions_dir().resolve()) in copies
    with Sandbox(student, isolation=ONLY_LANDLOCK) as box:
        for folder in copies:
            for file in sorted(Path(folder).glob("*.py"))[:3]:
                ok, error = call(box, "read", str(file))
                assert not ok and "PermissionError" in error, file
        ok, error = call(box, "reference_in_memory", str(networks.solutions_dir()))
        assert ok and error == "[]"


def test_landlock_scoping_stops_signals_to_the_grader_s_processes(student: Path) -> None:
    needs("scoping")
    with Sandbox(student, isolation=ONLY_LANDLOCK) as box:
        for number in (9, 19):  # SIGKILL, SIGSTOP to the monitor
            ok, error = call(box, "signal_parent", number)
            assert not ok and "Operation not permitted" in error
            assert "the grader's sandbox lets student code use only its own folder" in error
        assert call(box, "where")[0]  # the child and its monitor are still there


def test_landlock_tcp_rules_stop_connections_even_without_a_namespace(student: Path, listener) -> None:
    needs("tcp")
    tcp_port, _, received = listener
    with Sandbox(student, isolation=ONLY_LANDLOCK) as box:
        ok, error = call(box, "tcp", tcp_port)
    assert not ok and "PermissionError" in error
    assert received == []


# -- network namespace --------------------------------------------------------------------------


def test_the_network_namespace_has_no_network(student: Path, listener) -> None:
    needs("netns")
    tcp_port, udp_port, received = listener
    with Sandbox(student, isolation=ONLY_NETNS) as box:
        assert call(box, "interfaces") == (True, "['lo']")
        ok, error = call(box, "tcp", tcp_port)
        assert not ok and "Network is unreachable" in error
        ok, error = call(box, "udp", udp_port)
        assert not ok and "Network is unreachable" in error
    assert received == []


# -- seccomp ------------------------------------------------------------------------------------


def test_seccomp_stops_ptrace_memory_reads_namespaces_ipc_other_processes_limits_and_ip_sockets(student: Path, listener) -> None:
    needs("seccomp")
    tcp_port, udp_port, received = listener
    with Sandbox(student, isolation=ONLY_SECCOMP) as box:
        for function in ("ptrace_parent", "read_parent_memory", "new_namespace", "shared_memory",
                         "limit_parent", "nice_parent"):
            ok, error = call(box, function)
            assert not ok and "Operation not permitted" in error, function
        assert call(box, "own_limits_and_niceness") == (True, "True")  # its own: still allowed
        for function, port in (("tcp", tcp_port), ("udp", udp_port)):
            ok, error = call(box, function, port)
            assert not ok and "Permission denied" in error, function
        assert call(box, "unix_pair") == (True, "True")
    assert received == []


# -- all layers together, environment, limits ---------------------------------------------------


def test_every_layer_together_still_grades_and_keeps_its_own_pipes(student: Path) -> None:
    with Sandbox(student) as box:
        loaded = box.load()
        assert loaded.isolation == FOUND
        assert call(box, "write", "out.txt") == (True, "True")
        assert call(box, "where") == (True, str(box._scratch))


def test_the_environment_is_scrubbed_and_home_is_the_scratch_copy(student: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SECRET_TOKEN", "hunter2")
    fresh_fork_server()  # started now, it would inherit the token, if anything did
    try:
        with Sandbox(student) as box:
            ok, env = call(box, "environment")
            _, cwd = call(box, "where")
    finally:
        fresh_fork_server()
    assert ok and "hunter2" not in env and "MY_SECRET_TOKEN" not in env
    values = eval(env)  # noqa: S307 - our own child's dict of strings
    assert values["HOME"] == values["TMPDIR"] == cwd
    assert str(ROOT) not in values.get("PATH", "")


def test_the_fork_server_holds_no_reference_solution(student: Path) -> None:
    networks.get("three_node").solution()  # loaded here, in the grader: never in a child
    with Sandbox(student, isolation=NOTHING) as box:
        ok, found = call(box, "reference_in_memory", str(networks.solutions_dir()))
    assert ok and found == "[]"


def test_a_file_larger_than_the_limit_fails_with_a_clear_error(student: Path) -> None:
    with Sandbox(student, limits=Limits(file_mb=2)) as box:
        ok, error = call(box, "fill", 5)
    assert not ok and "File too large" in error


def test_a_hundred_thousand_descriptors_are_refused(student: Path) -> None:
    with Sandbox(student) as box:
        ok, error = call(box, "descriptors", 100_000)
        assert not ok and "Too many open files" in error
        assert call(box, "where")[0]


def test_strict_refuses_to_grade_without_a_layer_and_best_warns(tmp_path: Path) -> None:
    needs("seccomp")
    submit = tmp_path / "submit"
    submit.mkdir()
    (submit / "three_node.py").write_text((networks.solutions_dir() / "three_node.py").read_text())
    # The grader runs under our own seccomp filter, which forbids unshare: no network namespace.
    wrapper = textwrap.dedent("""
        import os, sys
        from gradcheck import confinement
        confinement._seccomp(False)
        os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
    """)
    outcomes = {}
    for level in ("strict", "best"):
        command = [sys.executable, "-c", wrapper, str(ROOT / "grader.py"), str(submit),
                   "--out", str(tmp_path / level), "--isolation", level, "--workers", "1"]
        outcomes[level] = subprocess.run(command, capture_output=True, text=True, timeout=300,
                                         stdin=subprocess.DEVNULL)
    strict, best = outcomes["strict"], outcomes["best"]
    assert strict.returncode == 2
    assert strict.stderr.strip().splitlines() == [
        "--isolation strict: missing netns (network namespace): "
        "unshare: Operation not permitted"], strict.stderr
    assert not (tmp_path / "strict").exists()
    assert best.returncode == 0, best.stderr
    assert best.stdout.startswith(f"isolation: landlock {FOUND.landlock}, seccomp\n")
    assert "WARNING: weaker isolation than the default: missing netns" in best.stderr
    assert (tmp_path / "best" / "grades.csv").read_text().splitlines()[1].endswith(",10,10,10")


def test_no_child_can_widen_the_rules_of_the_next(student: Path) -> None:
    needs("landlock")
    with Sandbox(student) as box:
        assert call(box, "widen_inherited_rulesets") == (True, "[]")
    with Sandbox(student) as box:
        ok, error = call(box, "read", str(SOLUTION_FILE))
    assert not ok and "PermissionError" in error
