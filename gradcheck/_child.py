"""Process side of :mod:`gradcheck.isolation`: fork server, monitors, student child.

Three roles, all started with ``python -m gradcheck._child ROLE ...``:

* ``server FD``: long-lived and trusted. Imports numpy, nbformat and the loader once, then for
  every request received on socket FD (one file descriptor passed with SCM_RIGHTS: the
  monitor's control socket) forks a monitor. It never runs student code.
* monitor (forked by the server, or ``monitor CONFIG`` when there is no server): trusted. It
  becomes a child subreaper, then for each sandbox sent on its control socket (a JSON config
  and three file descriptors) forks the student child, reports the child's pid and exit
  status on the status socket, enforces the process limit when no cgroup is available, and
  kills the whole process tree when asked, when the child dies, or when the grader goes away.
  It takes the next sandbox only when no process of the last one is left.
* student child: applies the limits (new session, cgroup, RLIMIT_AS, RLIMIT_FSIZE,
  RLIMIT_NOFILE, stdin from /dev/null, stdout/stderr into the capped output pipe), then
  serves load and call requests, framed and encoded with :mod:`gradcheck.wire`. It may be
  started ahead of its job: it learns its scratch folder (the loaded file's folder) from the
  load request, and only then, right before loading, scrubs its environment and confines
  itself for good (:mod:`gradcheck.confinement`: network namespace, ``--user``'s uid,
  Landlock, seccomp), while it is still single-threaded.
"""

from __future__ import annotations

import ctypes
import gc
import io
import json
import os
import re
import resource
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "monitor_kind"]

FRAME = struct.Struct(">Q")
# The child's exit status when its socket to the grader failed under it: student code closed
# (or replaced) a file descriptor it did not open, e.g. os.closerange(0, 1024).
CONNECTION_LOST = 86
# The exit status of a child whose own code (receiving a request, copying inputs, encoding
# a reply), not the student's, ran out of the memory limit.
OUT_OF_MEMORY = 87
_PR_SET_CHILD_SUBREAPER = 36
_POLL_SECONDS = 0.05
_CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/pids")
_MAX_OPEN_FILES = 1024


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``server FD`` or ``monitor CONFIG_JSON`` (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["server"]:
        _serve(int(argv[1]), argv[2] if len(argv) > 2 else None)
    elif argv[:1] == ["monitor"]:
        config = json.loads(argv[1])
        _monitor(config, config["msg_fd"], config["out_fd"], config["status_fd"])
    else:
        sys.exit("usage: python -m gradcheck._child server FD [SCRATCH_BASE] | monitor CONFIG_JSON")


# --- fork server ----------------------------------------------------------------------------


def _serve(control_fd: int, scratch_base: str | None = None) -> None:
    _preload(scratch_base)
    # Monitors are reaped automatically; the grader learns their fate from the status socket.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Keep the preloaded objects out of the collector: a collection in a forked child would
    # otherwise write to (copy) every page they live on.
    gc.freeze()
    control = socket.socket(fileno=control_fd)
    while True:
        received = _receive_with_fds(control, 1)
        if received is None:
            os._exit(0)  # the grader went away
        data, fds = received
        kind = _monitor_kind(data)
        if os.fork() == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _monitor_loop(fds[0], kind)
        _close_all(fds)


def monitor_kind(config: dict[str, Any]) -> dict[str, bool]:
    """The confinement a monitor takes on for all its children, from a sandbox's config.

    Sandboxes are handed only to monitors of their own kind (see ``isolation._MonitorPool``).
    """
    layers = config.get("isolation") or {}
    return {"netns": bool(layers.get("netns", True)), "seccomp": bool(layers.get("seccomp", True)),
            "kernel": bool(config.get("kernel"))}


def _monitor_kind(data: bytes) -> dict[str, bool]:
    """The kind in the server's request ``b"monitor {json}"``."""
    try:
        kind = json.loads(data.split(b" ", 1)[1]) if b" " in data else {}
    except ValueError:
        kind = {}
    kind = kind if isinstance(kind, dict) else {}
    return monitor_kind({"isolation": kind, "kernel": kind.get("kernel")})


def _confine_monitor(kind: dict[str, bool]) -> dict[str, Any]:
    from gradcheck import confinement

    layers = confinement.Layers(landlock=False, netns=kind["netns"], seccomp=kind["seccomp"])
    return confinement.confine_monitor(layers, kernel=kind["kernel"])


def _preload(scratch_base: str | None = None) -> None:
    # Everything a child needs is imported once here, so that each fork starts warm.
    import nbformat  # noqa: F401
    import numpy  # noqa: F401
    import numpy.ma  # noqa: F401  (numpy imports it lazily: 10 ms in every child otherwise)
    import numpy.random  # noqa: F401  (idem, 11 ms; reseeded in each child, see _reseed)

    import gradcheck.loading  # noqa: F401
    import gradcheck.wire  # noqa: F401
    from gradcheck import confinement

    confinement.prepare(scratch_base)  # rules and filters are made once, not in every child

    try:
        _libc()
    except OSError:
        pass

    try:
        import IPython.core.inputtransformer2  # noqa: F401
    except ImportError:
        pass
    _preload_pyplot(scratch_base)


def _preload_pyplot(scratch_base: str | None) -> None:
    # Nearly every notebook imports pyplot: in a child that costs 0.3 to 0.6 s (the import,
    # and a font cache built afresh, since the child's home is its empty scratch copy), most
    # of a notebook's grading time in a large class. Imported once here (the Agg backend of
    # the environment), its font cache in the private scratch base, never the grader's home.
    # About 45 MB of address space, counted in every child's memory limit.
    if scratch_base:
        os.environ.setdefault("MPLCONFIGDIR", os.path.join(scratch_base, ".matplotlib"))
    try:
        import matplotlib.pyplot  # noqa: F401
    except Exception:  # noqa: BLE001 - not installed or broken: each notebook imports its own
        pass


def _receive_with_fds(control: socket.socket, count: int) -> tuple[bytes, list[int]] | None:
    """The next message that carries exactly ``count`` file descriptors; None at EOF."""
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, 1 << 16, count)
        except InterruptedError:
            continue
        if not data:
            return None
        if len(fds) == count:
            return data, fds
        _close_all(fds)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# --- monitor --------------------------------------------------------------------------------


def _monitor(config: dict[str, Any], msg_fd: int, out_fd: int, status_fd: int) -> None:
    """Run one sandbox (``monitor CONFIG``, when there is no fork server), then exit."""
    try:
        _set_subreaper()
        config["inherited"] = _confine_monitor(monitor_kind(config))
        _sandbox(config, msg_fd, out_fd, status_fd, control=None)
    finally:
        os._exit(0)


def _monitor_loop(control_fd: int, kind: dict[str, bool]) -> None:
    """Run sandboxes one after another, each sent on ``control_fd`` as a config and 3 fds.

    A monitor serves many sandboxes in turn so that each costs one fork, not two: the
    monitor's own fork, and the pages its first run copies, are paid once; so are its
    network namespace and seccomp filter (``kind``), which every child inherits. It never
    runs student code, and takes the next sandbox only once the last one's processes are
    all gone.
    """
    try:
        _set_subreaper()
        inherited = _confine_monitor(kind)
        control = socket.socket(fileno=control_fd)
        while True:
            received = _receive_with_fds(control, 3)
            if received is None:
                return  # the grader went away
            data, fds = received
            config = dict(json.loads(data), inherited=inherited)
            if not _sandbox(config, *fds, control=control) or _descendants():
                return  # the grader is gone, or something could not be killed: start afresh
    finally:
        os._exit(0)


def _sandbox(config: dict[str, Any], msg_fd: int, out_fd: int, status_fd: int,
             control: socket.socket | None) -> bool:
    """Fork the student child, watch it until it ends; False when the grader went away."""
    _CHILD_STATUS.clear()
    cgroup = _make_cgroup(int(config["max_processes"]))
    pid = os.fork()
    if pid == 0:
        os.close(status_fd)
        if control is not None:
            control.close()
        _student_child(config, msg_fd, out_fd, cgroup)
    os.close(msg_fd)
    os.close(out_fd)
    status = socket.socket(fileno=status_fd)
    try:
        _send_line(status, {"child": pid})
        return _watch(status, pid, cgroup, int(config["max_processes"]), control)
    finally:
        status.close()


def _watch(status: socket.socket, child: int, cgroup: str | None, max_processes: int,
           control: socket.socket | None = None) -> bool:
    note, ticks = None, 0
    watched = [status] if control is None else [status, control]
    while True:
        killed = False  # the tree was just killed and checked empty: no second /proc scan
        readable, _, _ = select.select(watched, [], [], _POLL_SECONDS)
        if control is not None and control in readable:
            # Only the grader closing it makes it readable here: it sends a sandbox only
            # after this one has ended.
            _kill_tree(child, cgroup)
            return False
        if readable:
            request = status.recv(64)
            if not request:  # the grader is gone: nobody may keep running
                _kill_tree(child, cgroup)
                return control is None or _still_open(control)
            if b"k" in request:
                _kill_tree(child, cgroup)
                killed = True
            elif b"c" in request:
                others = (_descendants() | _cgroup_pids(cgroup)) - {child}
                _send_line(status, {"others": len(others)})
        exited = _reap(child)
        if exited is not None:
            if not killed:
                _kill_tree(child, cgroup)
            _send_line(status, {"exit": exited, "note": note})
            return True
        ticks += 1
        if cgroup is None and ticks % 2 == 0 and len(_descendants()) > max_processes:
            note = "processes"
            _kill_tree(child, cgroup)


def _still_open(control: socket.socket) -> bool:
    """Whether the grader still holds the other end of ``control`` (it sent nothing)."""
    return not select.select([control], [], [], 0)[0]


_CHILD_STATUS: dict[str, int] = {}  # of the sandbox being watched; cleared for each one


def _reap(child: int) -> dict[str, int] | None:
    """Reap every finished descendant; return the child's status once it has exited."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid == child and os.WIFSIGNALED(status):
            _CHILD_STATUS["signal"] = os.WTERMSIG(status)
        elif pid == child:
            _CHILD_STATUS["code"] = os.waitstatus_to_exitcode(status)
    return dict(_CHILD_STATUS) or None


def _kill_tree(child: int, cgroup: str | None) -> None:
    """Kill the child, its process group, and every descendant, until none is left."""
    deadline, pause = time.monotonic() + 5.0, 0.0005
    # The child and its group first, and wait (briefly) for the child to be reaped: usually
    # that is all there is, and the /proc scan below (milliseconds) then runs only once.
    # Only while the child is unreaped: its pid (and group id) cannot have been reused.
    if not _CHILD_STATUS:
        for kill in (os.killpg, os.kill):
            try:
                kill(child, signal.SIGKILL)
            except OSError:
                pass
        reaped_by = time.monotonic() + 0.05
        while _reap(child) is None and time.monotonic() < reaped_by:
            time.sleep(0.0002)
    while time.monotonic() < deadline:
        pids = _descendants() | _cgroup_pids(cgroup)
        if not pids:
            break
        try:
            os.killpg(child, signal.SIGKILL)  # one atomic blow for a fork storm in the group
        except OSError:
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        # A killed process is gone within a millisecond or so; poll fast, then back off.
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
        _reap(child)
    _remove_cgroup(cgroup)


def _descendants() -> set[int]:
    """Living descendants of this process (orphans come back to it: it is a subreaper)."""
    if _HAS_CHILDREN_FILES:
        return _descendants_from_children_files()
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z":
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = set(), [os.getpid()]
    while todo:
        for pid in parents.get(todo.pop(), ()):
            if pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def _descendants_from_children_files() -> set[int]:
    # /proc/PID/task/TID/children lists what each thread forked: reading the tree costs a
    # read per descendant instead of a read per process on the machine.
    found: set[int] = set()
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone meanwhile
        for tid in threads:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                    children = [int(c) for c in handle.read().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in found and _living(child):
                    found.add(child)
                    todo.append(child)
    return found


def _living(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


_HAS_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _set_subreaper() -> None:
    try:
        _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: orphans escape to init, the process group kill still applies


_LIBC: list[Any] = []


def _libc() -> Any:
    # Loaded once by the fork server (see _preload): every monitor inherits the handle.
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _make_cgroup(max_processes: int) -> str | None:
    """Create a pids cgroup (v2 or v1) when running as root with a writable hierarchy."""
    if os.geteuid() != 0 or os.environ.get("GRADCHECK_CGROUP") == "0":
        return None
    for root in _CGROUP_ROOTS:
        path = f"{root}/gradcheck-{os.getpid()}"
        if not os.path.exists(f"{root}/cgroup.procs"):
            continue  # not a cgroup hierarchy (e.g. the tmpfs that holds v1 mounts)
        try:
            os.mkdir(path)
        except OSError:
            continue
        try:
            if os.path.exists(f"{path}/pids.max"):  # the pids controller is enabled here
                Path(path, "pids.max").write_text(str(max_processes))
                return path
        except OSError:
            pass
        _remove_cgroup(path)
    return None


def _cgroup_pids(cgroup: str | None) -> set[int]:
    if cgroup is None:
        return set()
    try:
        return {int(line) for line in Path(cgroup, "cgroup.procs").read_text().split()}
    except OSError:
        return set()


def _remove_cgroup(cgroup: str | None) -> None:
    if cgroup is not None:
        try:
            os.rmdir(cgroup)
        except OSError:
            pass


def _send_line(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass


# --- student child --------------------------------------------------------------------------


def _student_child(config: dict[str, Any], msg_fd: int, out_fd: int, cgroup: str | None) -> None:
    try:
        os.setsid()
        _reseed()
        if cgroup is not None:
            Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))
        _redirect_fds(out_fd)
        _set_limits(config)
        budget = _Budget(int(config["output_bytes"]))
        sys.stdin = open(os.devnull, encoding="utf-8")  # input() fails fast with EOFError
        writers = (_CappedWriter(1, budget), _CappedWriter(2, budget))
        sys.stdout, sys.stderr = writers
        try:
            _Server(socket.socket(fileno=msg_fd), config, budget, writers).serve()
        except OSError:
            os._exit(CONNECTION_LOST)
    except MemoryError:
        os._exit(OUT_OF_MEMORY)
    finally:
        os._exit(0)


def _reseed() -> None:
    # numpy.random is preloaded in the fork server: without this every child would start
    # from the server's global random state instead of fresh entropy, as a new process does.
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _redirect_fds(out_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(devnull)
    os.close(out_fd)


def _set_limits(config: dict[str, Any]) -> None:
    memory = int(config["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # A file written past the limit fails with EFBIG (OSError) instead of killing the child.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    file_bytes = int(config["file_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = min(_MAX_OPEN_FILES, hard) if hard != resource.RLIM_INFINITY else _MAX_OPEN_FILES
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
    # RLIMIT_NPROC counts the processes of the (real) user, so it is set above what the user
    # already runs. Inside the monitor's own user namespace (Linux >= 5.14) that count is the
    # namespace's alone: the monitor and this child, so the limit is exact however many other
    # students the same user grades at once. Elsewhere it is system-wide and only a ceiling:
    # the cgroup (root) or the monitor's polling enforces the exact per-sandbox limit. The
    # count holds this child already when it runs as that user: max_processes includes it,
    # so a storm fails with EAGAIN at the limit, before the monitor's count can stop the child.
    uid = os.getuid() if config.get("uid") is None else config["uid"]
    itself = os.getuid() == uid
    nproc = _count_user_processes(uid) + config["max_processes"] - itself
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


_INITIAL_USER_NAMESPACE = 0xEFFFFFFD  # PROC_USER_INIT_INO: the inode of the first user namespace


def _count_user_processes(uid: int) -> int:
    """The processes that RLIMIT_NPROC charges to ``uid`` when this process forks."""
    own = os.stat("/proc/self/ns/user").st_ino
    per_namespace = own != _INITIAL_USER_NAMESPACE and _kernel_at_least(5, 14)
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                count += not per_namespace or os.stat(f"/proc/{entry}/ns/user").st_ino == own
            except OSError:
                pass  # gone, or in a namespace we may not look at: not ours
    return count


def _kernel_at_least(major: int, minor: int) -> bool:
    numbers = re.findall(r"\d+", os.uname().release)[:2]
    return len(numbers) == 2 and (int(numbers[0]), int(numbers[1])) >= (major, minor)


def _enter_folder(folder: str, kernel: bool) -> None:
    """Work in the scratch folder: the current directory, temporary files, home, Jupyter's.

    It comes with the load request, not at start: a child can be started before its job's
    folder is copied, and no scratch copy then exists before it is needed. The environment
    keeps only what Python needs (no token or path of the grader's survives).
    """
    from gradcheck.confinement import scrubbed_environment

    os.chdir(folder)
    kept = scrubbed_environment(os.environ)
    os.environ.clear()
    os.environ.update(kept, TMPDIR=folder, HOME=folder,
                      JUPYTER_RUNTIME_DIR=str(Path(folder, ".jupyter-runtime")))
    if kernel:
        # The kernel is a new interpreter that imports gradcheck's helper; under Landlock it
        # cannot list the checkout that holds the package, so it finds it through a link.
        lib = Path(folder, ".gradcheck-lib")
        lib.mkdir(exist_ok=True)
        link = lib / "gradcheck"
        if not link.exists():
            link.symlink_to(Path(__file__).resolve().parent, target_is_directory=True)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(lib), kept.get("PYTHONPATH")]))
    import tempfile

    tempfile.tempdir = None


def _confine(folder: str, config: dict[str, Any]) -> dict[str, Any]:
    """Apply the sandbox's layers (see :mod:`gradcheck.confinement`) right before loading."""
    from gradcheck import confinement

    wanted = config.get("isolation") or {}
    layers = confinement.Layers(**{k: bool(wanted.get(k, True))
                                   for k in ("landlock", "netns", "seccomp", "required")})
    ids = None if config.get("uid") is None else (int(config["uid"]), int(config["gid"]))
    return confinement.confine(folder, layers, kernel=bool(config.get("kernel")), ids=ids,
                               inherited=config.get("inherited")).to_dict()


_WALL_HINT = (" (the grader's sandbox lets student code use only its own folder: no other "
              "files, no network, no other processes)")


def _with_hint(error: Any, confined: bool = True) -> Any:
    """A sandbox wall reads as one: its PermissionError comes with a sentence on why."""
    if confined and isinstance(error, str) and "PermissionError" in error and _WALL_HINT not in error:
        return error + _WALL_HINT
    return error


class _Budget:
    """Bytes of Python-level output still allowed through, and how many were dropped."""

    def __init__(self, limit: int) -> None:
        self.remaining = limit
        self.dropped = 0


class _CappedWriter(io.TextIOBase):
    """Line-buffered text stream that writes the first bytes to an fd and only counts the rest.

    Printing 200 MB must neither fill memory or disk nor fail the student's call. Whole lines
    go out in one write, so a line cannot be split by another process sharing the pipe (a
    subprocess the student started, say) the way ``print("a", "b")``'s three writes can.
    """

    def __init__(self, fd: int, budget: _Budget) -> None:
        super().__init__()
        self._fd = fd
        self._budget = budget
        self._pending = bytearray()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, text: str) -> int:
        data = str(text).encode("utf-8", "replace")
        keep = data[: max(self._budget.remaining, 0)]
        self._budget.remaining -= len(keep)
        self._budget.dropped += len(data) - len(keep)
        self._pending += keep
        end = self._pending.rfind(b"\n") + 1
        if len(self._pending) >= select.PIPE_BUF:
            end = len(self._pending)  # no line ends in sight: do not hold output back
        if end:
            self._write_out(end)
        return len(text)

    def flush(self) -> None:
        self._write_out(len(self._pending))

    def _write_out(self, end: int) -> None:
        view = memoryview(bytes(self._pending[:end]))
        del self._pending[:end]
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            self._budget.dropped += len(view)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd


class _Server:
    """The child's request loop: load the submission once, then call its functions."""

    def __init__(
        self, sock: socket.socket, config: dict[str, Any], budget: _Budget,
        writers: tuple[_CappedWriter, ...],
    ) -> None:
        from gradcheck import loading, wire

        self._loading = loading
        self._wire = wire
        self._sock = sock
        self._config = config
        self._budget = budget
        self._writers = writers  # the student may rebind sys.stdout; these are still flushed
        self._namespace: dict[str, Any] = {}
        self._cell_timeout: float | None = None
        self._load_budget: float | None = None
        self._store: dict[str, Any] = {}
        self._kernel: Any = None
        self._confined = False  # some layer is in force: a PermissionError is a sandbox wall
        self._pid = os.getpid()

    def serve(self) -> None:
        while True:
            request = self._receive()
            if request is None or request.get("op") == "close":
                if self._kernel is not None:
                    self._kernel.close()
                for writer in self._writers:
                    writer.flush()
                return
            op = request.get("op")
            if op == "load":
                self._cell_timeout = request.get("cell_timeout")
                self._load_budget = request.get("load_budget")
                self._send(self._load(Path(request["path"])))
            elif op == "call":
                self._send(self._call(request, request["args"], request["kwargs"]))
            elif op == "call_many":
                for args in request["arg_sets"]:
                    self._send(self._call(request, args, request.get("kwargs") or {}))
            elif op == "call_nudged":
                for nudge in request["nudges"]:
                    self._send(self._nudged_call(request, nudge))

    def _load(self, path: Path) -> dict[str, Any]:
        loading = self._loading
        kernel = bool(self._config.get("kernel"))
        try:
            _enter_folder(str(path.parent), kernel)
            isolation = _confine(str(path.parent), self._config)
            self._confined = bool(isolation["landlock"] or isolation["netns"] or isolation["seccomp"])
        except Exception as exc:  # noqa: BLE001 - the submission must not run unconfined
            return {"ok": False, "error": f"the sandbox could not be set up: {exc}"}
        try:
            if kernel:
                self._kernel = loading.load_in_kernel(path, timeout=self._cell_timeout,
                                                      budget=self._load_budget)
                return {"ok": True, "names": list(self._kernel.names), "isolation": isolation,
                        "problems": [self._hint(p) for p in self._kernel.problems]}
            loaded = loading.load_submission(path, cell_timeout=self._cell_timeout,
                                             budget=self._load_budget)
        except loading.LoadError as exc:
            return {"ok": False, "error": self._hint(str(exc)), "isolation": isolation}
        except BaseException as exc:  # noqa: BLE001 - whatever happens is reported
            error = f"loading {path.name} {loading.describe_exception(exc)}"
            return {"ok": False, "error": self._hint(error), "isolation": isolation}
        self._namespace = loaded.namespace
        names = loading.defined_callables(loaded.namespace)
        return {"ok": True, "names": list(names), "isolation": isolation,
                "problems": [self._hint(p) for p in loaded.problems]}

    def _nudged_call(self, request: dict[str, Any], nudge: list[Any]) -> dict[str, Any]:
        try:
            args = self._loading.nudged(request["args"], nudge)
        except MemoryError:  # the copy is ours, not the student's: say so, keep serving
            error = (f"{request['function']} could not be called on a perturbed copy of its "
                     f"inputs: the copy did not fit in the memory limit of "
                     f"{self._config['memory_mb']} MB")
            return {"ok": False, "value": None, "error": error, "seconds": 0.0,
                    "function": request["function"]}
        return self._call(request, args, request.get("kwargs") or {})

    def _hint(self, error: Any) -> Any:
        return _with_hint(error, self._confined)

    def _call(self, request: dict[str, Any], args: Any, kwargs: Any) -> dict[str, Any]:
        function, keep, pick = request["function"], request.get("keep"), request.get("pick")
        try:
            if self._kernel is not None:
                outcome = self._kernel.call(function, tuple(args), kwargs, keep=keep, pick=pick)
            else:
                outcome = self._loading.invoke(
                    self._namespace, self._store, function, tuple(args), kwargs, keep=keep,
                    pick=pick
                )
        except BaseException as exc:  # noqa: BLE001 - a hostile object must not end the loop
            # What the student returned or raised misbehaved when it was looked at (a
            # metaclass, a __class__ property...): the call failed, the child goes on.
            error = (f"{function} returned or raised an object that raised "
                     f"{self._loading._type_name(exc)} when the grader looked at it")
            return {"ok": False, "value": None, "error": error, "seconds": 0.0,
                    "function": function}
        return {"ok": outcome.ok, "value": outcome.value, "error": self._hint(outcome.error),
                "seconds": outcome.seconds, "function": function}

    def _receive(self) -> dict[str, Any] | None:
        header = _read_exactly(self._sock, FRAME.size)
        if header is None:
            return None
        body = _read_exactly(self._sock, FRAME.unpack(header)[0])
        return None if body is None else self._wire.decode(body)

    def _send(self, reply: dict[str, Any]) -> None:
        if os.getpid() != self._pid:
            # A student's os.fork() without exec, returning from its call in both processes:
            # only the child itself replies, or the replies would be read for the wrong calls.
            os._exit(0)
        for writer in self._writers:  # what was printed reaches the pipe before the reply
            writer.flush()
        wire, limit = self._wire, int(self._config["value_bytes"])
        reply["dropped"] = self._budget.dropped
        try:
            data = wire.encode(reply, max_bytes=limit, max_header=wire.DEFAULT_MAX_HEADER)
        except BaseException as exc:  # noqa: BLE001 - a hostile value must not kill the loop
            what = reply.get("function", "the submission")
            why = f": {exc}" if isinstance(exc, wire.WireError) else f" ({type(exc).__name__})"
            error = f"{what} returned a value that could not be sent back{why}"
            if isinstance(exc, MemoryError):
                error += f": its encoding did not fit in the memory limit of {self._config['memory_mb']} MB"
            data = wire.encode({"ok": False, "error": error, "dropped": self._budget.dropped})
        # Header and body apart: joining them copies the body, and a large gradient's copy
        # could cross the memory limit after the student's code had returned.
        self._sock.sendall(FRAME.pack(len(data)))
        self._sock.sendall(data)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


if __name__ == "__main__":
    main()
