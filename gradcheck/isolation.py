"""Run untrusted submissions in child processes with limits (the grader's side).

Student code never runs in the grader's process. A :class:`Sandbox` (one per student and
assignment) loads the submission in a child process forked from a trusted fork server, in a
scratch copy of the student's folder, with a wall-clock limit per call, a memory limit, a
limit on processes, stdin from /dev/null and capped output. Values come back encoded with
:mod:`gradcheck.wire` (never pickle). A call that times out, crashes or exits costs only that
call; the next call starts a fresh child and reloads the file.

Example:
    >>> with Sandbox(Path("submissions/alice/two_hidden.py")) as box:  # doctest: +SKIP
    ...     loss = box.call("fprop", x, y, params, store="cache", pick="loss")
    ...     grads = box.call("bprop", Ref("cache"))
    ...     new = box.call("update", params, grads.value, 0.5)
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck import wire
from gradcheck._child import CONNECTION_LOST, FRAME, OUT_OF_MEMORY, monitor_kind
from gradcheck.confinement import Isolation, Layers, scrubbed_environment
from gradcheck.wire import Ref

__all__ = ["CallResult", "Isolation", "Limits", "LoadResult", "Ref", "Sandbox", "link_refusal"]

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_START_SECONDS = 30.0  # the first fork server start imports numpy and friends
_SKIPPED_DIRS = frozenset({".git", "__pycache__", ".ipynb_checkpoints", ".venv", "node_modules"})
_MAX_FILES = 5_000
_KERNEL_START_SECONDS = 60.0
_LOAD_BUDGET = 0.8  # of Limits.load_timeout: the notebook's cells, then the reply


@dataclass(frozen=True)
class Limits:
    """Resource limits of a sandbox.

    Attributes:
        call_timeout: Wall-clock seconds per call, and per notebook cell while loading (a
            slower cell, such as a training demo, is stopped and reported; the other cells
            still run).
        load_timeout: Wall-clock seconds for loading the whole module or notebook.
        memory_mb: Address-space limit of the child (RLIMIT_AS), in MB.
        max_processes: Processes the child may run at once, itself included.
        output_bytes: Head of the captured stdout+stderr that is kept.
        copy_bytes: Most bytes of the student's folder copied into the scratch folder.
        value_bytes: Largest reply accepted from the child.
        file_mb: Largest file the child may write (RLIMIT_FSIZE), in MB: writing more fails
            with ``OSError: [Errno 27] File too large``.
    """

    call_timeout: float = 10.0
    load_timeout: float = 60.0
    memory_mb: int = 1024
    max_processes: int = 32
    output_bytes: int = 64_000
    copy_bytes: int = 100_000_000
    value_bytes: int = wire.DEFAULT_MAX_BYTES
    file_mb: int = 100


@dataclass(frozen=True)
class CallResult:
    """Result of one call of a student function.

    Attributes:
        ok: The function returned.
        value: The returned value decoded by :mod:`gradcheck.wire` (may contain
            ``wire.Unsupported`` or ``wire.ArraySubclass`` markers); None when not ok or
            when stored with ``store=``.
        error: One plain sentence for the student when not ok, e.g. ``"bprop did not return
            within 10 s"``.
        seconds: Time spent in the call.
    """

    ok: bool
    value: object | None
    error: str | None
    seconds: float


@dataclass(frozen=True)
class LoadResult:
    """Result of loading a submission in the child.

    Attributes:
        ok: The file loaded (a notebook loads even when some cells failed).
        names: The callables the submission defined, sorted.
        problems: Notes on what went wrong without stopping the load.
        error: One sentence for the student when not ok.
        seconds: Time spent loading.
        isolation: The confinement the child applied before loading (None when it did not
            get that far).
    """

    ok: bool
    names: tuple[str, ...]
    problems: tuple[str, ...]
    error: str | None
    seconds: float
    isolation: Isolation | None = None


class Sandbox:
    """A child process running one student's submission for one assignment.

    Use it as a context manager (or call :meth:`close`). The child is started, and the file
    loaded, on the first :meth:`load` or :meth:`call`.

    Args:
        path: The student's ``.py`` or ``.ipynb`` file; its folder is copied to a scratch
            folder (up to ``limits.copy_bytes``), which is all the child sees and may change.
        limits: Resource limits.
        kernel: Run a notebook in a real Jupyter kernel (needs ipykernel and nbclient).
        user: When the grader runs as root, the child runs as this user.
        isolation: How the child is confined before the submission's first line runs (see
            :mod:`gradcheck.confinement`): ``"best"`` every layer the kernel offers,
            ``"strict"`` every layer or the load fails, ``"off"`` none (debugging), or
            :class:`~gradcheck.confinement.Layers` for exactly those layers.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``user`` is unknown, or given while the grader is not root, or
            ``isolation`` is not a level.
    """

    def __init__(
        self,
        path: Path,
        *,
        limits: Limits = Limits(),
        kernel: bool = False,
        user: str | None = None,
        support: Path | None = None,
        isolation: str | Layers = "best",
    ) -> None:
        # Absolute, not resolved: a file that is a symbolic link stays one, and is refused.
        self.path = Path(os.path.abspath(path))
        self.support = None if support is None else Path(support).resolve()
        if not self.path.is_file():
            raise FileNotFoundError(f"no submission at {self.path}")
        self.limits = limits
        self.kernel = kernel
        self.user = user
        self.layers = isolation if isinstance(isolation, Layers) else Layers.for_level(isolation)
        self._ids = _user_ids(user)
        self._output = _OutputSink(limits.output_bytes)
        self._scratch: Path | None = None
        self._copy_notes: tuple[str, ...] = ()
        self._child: _Child | None = None
        self._loaded: LoadResult | None = None
        self._stored: set[str] = set()
        self._lost: str | None = None  # why stored values are gone

    def __del__(self) -> None:
        # A sandbox that was never closed must not leave processes or scratch folders behind.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing sensible to do during garbage collection
            pass

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def with_isolation(self, isolation: str | Layers) -> Sandbox:
        """The same sandbox, not started yet, confined as ``isolation`` says."""
        return Sandbox(self.path, limits=self.limits, kernel=self.kernel, user=self.user,
                       support=self.support, isolation=isolation)

    @property
    def output(self) -> str:
        """Head of everything the child printed (stdout and stderr), with a note of the rest."""
        if self._child is not None:
            # The child flushes before each reply: what it printed is in the pipe, but the
            # drain thread may not have read it yet (a busy machine lost a student's prints).
            self._child.drain.catch_up()
        return self._output.text()

    def load(self) -> LoadResult:
        """Load the submission in a (fresh) child; repeated calls return the first result."""
        if self._loaded is None:
            self._loaded = self._start_and_load()
        return self._loaded

    def call(
        self, function: str, *args: Any, store: str | None = None, pick: str | int | None = None,
        **kwargs: Any,
    ) -> CallResult:
        """Call a function defined by the submission, in the child.

        Args:
            function: Name of the function, e.g. ``"fprop"``.
            *args: Arguments (copied to the child). ``Ref("cache")`` stands for a value stored
                earlier in the child with ``store="cache"``.
            store: Keep the return value in the child under this name (value is None then,
                unless ``pick`` is given).
            pick: Send back only ``value[pick]``, e.g. the ``"loss"`` of an fprop cache that
                must stay in the child because it may hold anything.
            **kwargs: Keyword arguments, like ``args``.

        Returns:
            The result; a failure of any kind is an ``ok=False`` result with a message.
        """
        missing = self._missing_refs((args, kwargs))
        if missing:
            return CallResult(False, None, missing, 0.0)
        request = {"op": "call", "function": function, "args": list(args), "kwargs": kwargs,
                   "keep": store, "pick": pick}
        results = self._run(function, request, 1, self.limits.call_timeout)
        if store is not None and results[0].ok:
            self._stored.add(store)
        return results[0]

    def call_many(
        self, function: str, arg_sets: list[tuple[Any, ...]], *, pick: str | int | None = None,
        timeout: float | None = None, kwargs: dict[str, Any] | None = None,
        each: bool = False,
    ) -> list[CallResult]:
        """Call a function once per argument tuple, in one round trip.

        Meant for many cheap calls, e.g. the 2P fprop evaluations of a numerical gradient.

        Args:
            function: Name of the function.
            arg_sets: One tuple of positional arguments per call (may contain ``Ref``).
            pick: As in :meth:`call`.
            timeout: Time limit for all the calls together (default ``limits.call_timeout``).
            kwargs: Keyword arguments passed to every call (e.g. mlp's configuration).
            each: The time limit applies to each call on its own, as if made one by one.

        Returns:
            One result per argument tuple; after a timeout or crash, the calls that had not
            finished fail with the same message.
        """
        missing = self._missing_refs(arg_sets)
        if missing:
            return [CallResult(False, None, missing, 0.0) for _ in arg_sets]
        if not arg_sets:
            return []
        request = {"op": "call_many", "function": function,
                   "arg_sets": [list(args) for args in arg_sets], "pick": pick,
                   "kwargs": dict(kwargs or {})}
        total = self.limits.call_timeout if timeout is None else timeout
        return self._run(function, request, len(arg_sets), total, each=each)

    def call_nudged(
        self, function: str, args: tuple[Any, ...], nudges: list[tuple[int, str | None, int, float]],
        *, pick: str | int | None = None, kwargs: dict[str, Any] | None = None,
    ) -> list[CallResult]:
        """Call a function once per nudge, on a fresh copy of ``args`` with one entry changed.

        The finite differences of a large input: ``args`` cross the boundary once, not once
        per call (2P copies of a million-entry network would not fit in any memory). A nudge
        ``(position, key, flat_index, value)`` sets ``args[position][key].flat[flat_index]``
        (``args[position]`` when key is None) to ``value``.
        """
        if not nudges:
            return []
        request = {"op": "call_nudged", "function": function, "args": list(args),
                   "nudges": [list(n) for n in nudges], "pick": pick, "kwargs": dict(kwargs or {})}
        return self._run(function, request, len(nudges), self.limits.call_timeout)

    def start(self) -> None:
        """Start the child without loading anything, so that its start-up overlaps other work.

        Forking, entering the cgroup and applying the limits take tens of milliseconds,
        mostly waiting. A started child runs no student code and has no scratch folder
        until :meth:`load` (or the first :meth:`call`) copies the folder and loads the file.
        Failures are not raised: the load reports them.
        """
        if self._child is None:
            try:
                self._child = self._start_child()
            except OSError:
                pass  # the load starts one again and says why if it fails too

    def close(self) -> None:
        """Stop the child and every process it started, and delete the scratch folder."""
        if self._child is not None:
            self._child.stop()
            self._child = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch.parent, ignore_errors=True)
            self._scratch = None

    # --- internals --------------------------------------------------------------------------

    def _run(self, function: str, request: dict[str, Any], count: int, timeout: float,
             each: bool = False) -> list[CallResult]:
        loaded = self.load() if self._child is None or self._loaded is None else self._loaded
        if self._child is None or not loaded.ok:
            error = f"{function} could not be called: {loaded.error}"
            return [CallResult(False, None, error, 0.0) for _ in range(count)]
        started = time.monotonic()
        replies, failure = self._child.exchange(request, count, timeout, f"during {function}",
                                                each=each)
        results = [self._explain(_call_result(reply)) for reply in replies]
        if failure is not None:
            message = failure.message(function, timeout, self.limits)
            seconds = time.monotonic() - started
            results += [CallResult(False, None, message, seconds)] * (count - len(results))
            self._forget_child(message)
        elif not all(result.ok for result in results) and self._child.has_other_processes():
            # A failed call that left processes behind (a fork storm stopped by the process
            # limit...) ended badly: they die with this child, and the next call starts afresh.
            self._forget_child(next(r.error for r in results if not r.ok) or function)
        return results

    def _explain(self, result: CallResult) -> CallResult:
        if result.error is not None and " raised MemoryError" in result.error:
            note = f" (the memory limit is {self.limits.memory_mb} MB)"
            return CallResult(False, None, result.error + note, result.seconds)
        return result

    def _start_and_load(self) -> LoadResult:
        started = time.monotonic()
        if self.path.is_symlink():
            return LoadResult(False, (), (), link_refusal(self.path.name), 0.0)
        try:
            if self._child is not None and not self._child.alive():
                self._forget_child("the waiting process ended")  # started ahead, then killed
            if self._child is None:
                self._child = self._start_child()
            if self._scratch is None:
                self._scratch, self._copy_notes = _make_scratch(self.path, self.limits, self._ids,
                                                             self.support)
        except OSError as exc:
            return LoadResult(False, (), (), f"the sandbox could not start: {exc}", 0.0)
        timeout = self.limits.load_timeout + (_KERNEL_START_SECONDS if self.kernel else 0.0)
        # A notebook's cells stop short of the load's limit, so that a notebook of many slow
        # demos keeps the functions its first cells defined (the limit kills the child).
        request = {"op": "load", "path": str(self._scratch_file()),
                   "cell_timeout": self.limits.call_timeout,
                   "load_budget": _LOAD_BUDGET * self.limits.load_timeout}
        replies, failure = self._child.exchange(
            request, 1, timeout, f"while loading {self.path.name}"
        )
        seconds = time.monotonic() - started
        if failure is not None:
            message = failure.message(f"loading {self.path.name}", timeout, self.limits)
            self._forget_child(message)
            return LoadResult(False, (), self._copy_notes, message, seconds)
        reply = replies[0]
        if not reply.get("ok"):
            return LoadResult(False, (), self._copy_notes, _text(reply.get("error")), seconds,
                              _isolation(reply))
        names = tuple(str(name) for name in _list(reply.get("names")))
        problems = self._copy_notes + tuple(str(p) for p in _list(reply.get("problems")))
        return LoadResult(True, names, problems, None, seconds, _isolation(reply))

    def _start_child(self) -> _Child:
        config = {
            "memory_mb": self.limits.memory_mb,
            "max_processes": self.limits.max_processes,
            "output_bytes": self.limits.output_bytes, "value_bytes": self.limits.value_bytes,
            "kernel": self.kernel, "uid": self._ids[0] if self._ids else None,
            "gid": self._ids[1] if self._ids else None, "file_mb": self.limits.file_mb,
            "isolation": self.layers.to_dict(),
        }
        return _Child.start(config, self._output, self.limits)

    def _scratch_file(self) -> Path:
        assert self._scratch is not None
        return self._scratch / self.path.name

    def _forget_child(self, reason: str) -> None:
        if self._child is not None:
            self._child.stop()
            self._child = None
        self._loaded = None  # the next call starts a fresh child and reloads the file
        if self._stored:
            self._lost = reason
        self._stored.clear()

    def _missing_refs(self, value: Any) -> str | None:
        for ref in _refs(value):
            if ref.name not in self._stored:
                if self._lost is not None:
                    return (f"the stored value {ref.name!r} is gone: the process was restarted "
                            f"after: {self._lost}")
                return f"no value was stored under {ref.name!r}"
        return None


def link_refusal(file_name: str) -> str:
    """Why a submitted file that is a symbolic link is not graded, in one sentence.

    A link could point anywhere on the grader's disk (the answer key, another student's
    work), and it is copied by the grader, outside the sandbox: it is never followed.
    """
    return f"{file_name} is a symbolic link, which the grader does not follow: submit the file itself"


# --- one child process ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """Why an exchange with the child ended without all its replies."""

    kind: str  # "timeout", "exit", "signal", "processes", "garbage", "gone"
    detail: Any = None
    during: str = ""

    def message(self, what: str, timeout: float, limits: Limits) -> str:
        """One sentence for the student; ``what`` is e.g. ``"bprop"`` or ``"loading x.py"``."""
        if self.kind == "timeout":
            verb = "finish" if what.startswith("loading") else "return"
            return f"{what} did not {verb} within {timeout:g} s"
        if self.kind == "garbage":
            return f"{what} sent back a reply that could not be read: {self.detail}"
        if self.kind == "exit" and self.detail == CONNECTION_LOST:
            return (f"process lost its connection to the grader {self.during}: it closed file "
                    "descriptors it did not open (only close what your code opened)")
        if self.kind == "exit" and self.detail == OUT_OF_MEMORY:
            return (f"process ran out of its memory limit of {limits.memory_mb} MB {self.during}, "
                    "while receiving its inputs or sending back its value (the arrays were "
                    "too large for the limit)")
        if self.kind == "exit":
            return f"process exited with status {self.detail} {self.during}"
        if self.kind == "processes":
            return (f"process was stopped {self.during} because it started more than "
                    f"{limits.max_processes} processes")
        if self.kind == "signal":
            return f"process was killed by {_signal_text(self.detail)} {self.during}" + (
                _signal_hint(self.detail, limits)
            )
        return f"process ended unexpectedly {self.during}"


def _signal_text(number: int) -> str:
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def _signal_hint(number: int, limits: Limits) -> str:
    if number == signal.SIGKILL:
        return (f": it ran out of its memory limit of {limits.memory_mb} MB, or killed itself "
                "or its process group")
    if number == signal.SIGSEGV:
        return ": a crash, for example a C stack overflow from too deep a recursion"
    return ""


class _Child:
    """The grader's handle on one monitor + student child pair."""

    def __init__(self, msg: socket.socket, status: socket.socket, pid: int, drain: _Drain,
                 monitor: subprocess.Popen[bytes] | None, limits: Limits,
                 control: socket.socket | None = None, kind: str = "") -> None:
        self.msg = msg
        self.status = status
        self.pid = pid
        self.drain = drain
        self.monitor = monitor  # a monitor process of our own (no fork server)...
        self.control = control  # ...or a pooled monitor of the fork server's, lent to us
        self.kind = kind  # the monitor's confinement (see _child.monitor_kind)
        self.limits = limits
        self._status_buffer = b""
        self._others: int | None = None
        self.exit_info: dict[str, Any] | None = None

    @classmethod
    def start(cls, config: dict[str, Any], sink: _OutputSink, limits: Limits) -> _Child:
        for _attempt in range(3):
            msg, msg_child = socket.socketpair()
            status, status_child = socket.socketpair()
            out_read, out_write = os.pipe()
            fds = [msg_child.fileno(), out_write, status_child.fileno()]
            try:
                monitor, control = _launch(config, fds)
            finally:
                msg_child.close()
                status_child.close()
                os.close(out_write)
            pid = _read_hello(status)
            if pid is not None:
                return cls(msg, status, pid, _Drain(out_read, sink), monitor, limits, control,
                           _kind_key(config))
            msg.close()
            status.close()
            os.close(out_read)
            if control is not None:
                control.close()  # that monitor is broken: it exits, the next attempt takes another
            else:
                _SERVER.restart()  # a student may have killed the server: start a new one
        raise OSError("the sandbox process did not start")

    def exchange(
        self, request: dict[str, Any], count: int, timeout: float, during: str,
        each: bool = False,
    ) -> tuple[list[dict[str, Any]], _Failure | None]:
        """Send one request and read ``count`` replies within ``timeout`` seconds (each)."""
        deadline = time.monotonic() + timeout
        try:
            data = wire.encode(request, strict=True, max_bytes=1 << 62)
            self.msg.sendall(FRAME.pack(len(data)))  # apart: joining them copies the body
            self.msg.sendall(data)
        except OSError:
            return [], self._death(during)
        replies: list[dict[str, Any]] = []
        while len(replies) < count:
            reply = self._receive(deadline, during)
            if isinstance(reply, _Failure):
                return replies, reply
            self.drain.sink.python_dropped[id(self)] = _count(reply.get("dropped"))
            replies.append(reply)
            if each:
                deadline = time.monotonic() + timeout
        return replies, None

    def stop(self) -> None:
        """Kill the child's whole process tree (through the monitor) and release everything."""
        self._request_kill()
        self._wait_exit(time.monotonic() + 5.0)
        if self.exit_info is None:
            # The monitor is gone (the student killed it): kill the child's group ourselves.
            _kill_group(self.pid)
        for sock in (self.msg, self.status):
            sock.close()
        if self.control is not None:
            # A monitor that reported the end of the child has killed and reaped everything
            # and waits for the next sandbox; one that did not is let go (it then exits).
            if self.exit_info is not None:
                _MONITORS.release(self.control, self.kind)
            else:
                self.control.close()
            self.control = None
        self.drain.stop()
        if self.monitor is not None:
            try:
                self.monitor.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.monitor.kill()

    def _receive(self, deadline: float, during: str) -> dict[str, Any] | _Failure:
        header = self._read(FRAME.size, deadline, during)
        if isinstance(header, _Failure):
            return header
        size = FRAME.unpack(header)[0]
        if size > self.limits.value_bytes + (1 << 20):
            return _Failure("garbage", f"a reply of {size:,} bytes is over the limit", during)
        body = self._read(size, deadline, during)
        if isinstance(body, _Failure):
            return body
        try:
            reply = wire.decode(body, max_bytes=self.limits.value_bytes + (1 << 20),
                                max_header=wire.DEFAULT_MAX_HEADER)
        except wire.WireError as exc:
            return _Failure("garbage", str(exc), during)
        if not isinstance(reply, dict):
            return _Failure("garbage", f"a {type(reply).__name__} instead of a reply", during)
        return reply

    def _read(self, size: int, deadline: float, during: str) -> bytes | _Failure:
        chunks, remaining = [], size
        while remaining:
            left = deadline - time.monotonic()
            if left <= 0:
                return _Failure("timeout", during=during)
            readable, _, _ = select.select([self.msg, self.status], [], [], left)
            if self.msg in readable:
                chunk = self.msg.recv(min(remaining, 1 << 20))
                if not chunk:
                    return self._death(during)
                chunks.append(chunk)
                remaining -= len(chunk)
            elif self.status in readable:
                if not self._read_status() or self.exit_info is not None:
                    return self._death(during)
        return b"".join(chunks)

    def _death(self, during: str) -> _Failure:
        self._wait_exit(time.monotonic() + 5.0)
        info = self.exit_info
        if info is None:
            return _Failure("gone", during=during)
        if info.get("note") == "processes":
            return _Failure("processes", during=during)
        exited = info.get("exit") or {}
        if "signal" in exited:
            return _Failure("signal", exited["signal"], during)
        return _Failure("exit", exited.get("code"), during)

    def alive(self) -> bool:
        """Whether the child still runs, as far as the monitor has said (without waiting)."""
        while self.exit_info is None and select.select([self.status], [], [], 0)[0]:
            if not self._read_status():
                return False
        return self.exit_info is None

    def has_other_processes(self) -> bool:
        """Ask the monitor whether processes other than the child itself are running."""
        self._others = None
        try:
            self.status.sendall(b"c")
        except OSError:
            return True
        deadline = time.monotonic() + 5.0
        while self._others is None and self.exit_info is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.status], [], [], left)[0]:
                return True
            if not self._read_status():
                return True
        return bool(self._others)

    def _request_kill(self) -> None:
        try:
            self.status.sendall(b"k")
        except OSError:
            pass

    def _wait_exit(self, deadline: float) -> None:
        while self.exit_info is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            readable, _, _ = select.select([self.status], [], [], left)
            if readable and not self._read_status():
                return

    def _read_status(self) -> bool:
        """Read status lines from the monitor; False once it has closed the socket."""
        try:
            data = self.status.recv(4096)
        except OSError:
            return False
        if not data:
            return False
        self._status_buffer += data
        while b"\n" in self._status_buffer:
            line, self._status_buffer = self._status_buffer.split(b"\n", 1)
            message = json.loads(line)
            if "exit" in message:
                self.exit_info = message
            elif "others" in message:
                self._others = int(message["others"])
        return True


def _read_hello(status: socket.socket) -> int | None:
    """Wait for the monitor's first line, ``{"child": pid}``."""
    deadline = time.monotonic() + _START_SECONDS
    buffer = b""
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([status], [], [], left)[0]:
            return None
        chunk = status.recv(4096)
        if not chunk:
            return None
        buffer += chunk
    line, rest = buffer.split(b"\n", 1)
    assert not rest, "the monitor sends nothing before the child's pid"
    return int(json.loads(line)["child"])


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


# --- output -----------------------------------------------------------------------------------


class _OutputSink:
    """Keeps the head of everything the sandbox's children printed, and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.dropped = 0
        self.python_dropped: dict[int, int] = {}  # bytes the children's sys.stdout dropped
        self.lock = threading.Lock()

    def add(self, data: bytes) -> None:
        with self.lock:
            room = max(self.limit - len(self.head), 0)
            self.head += data[:room]
            self.dropped += max(len(data) - room, 0)

    def text(self) -> str:
        with self.lock:
            text = self.head.decode("utf-8", "replace")
            dropped = self.dropped + sum(self.python_dropped.values())
        if dropped:
            text += f"\n(… {dropped:,} more bytes not shown)"
        return text


class _Drain:
    """Thread that empties a child's output pipe into the sink, so the child never blocks."""

    def __init__(self, fd: int, sink: _OutputSink) -> None:
        self.fd = fd
        self.sink = sink
        self._stop = threading.Event()
        self._reading = threading.Lock()  # one reader at a time keeps the chunks in order
        self._closed = False
        os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            readable, _, _ = select.select([self.fd], [], [], 0.1)
            if readable:
                if not self._read_available():
                    return
            elif self._stop.is_set():
                return

    def catch_up(self) -> None:
        """Read now whatever is in the pipe, instead of waiting for the thread to."""
        self._read_available()

    def _read_available(self) -> bool:
        """Move what the pipe holds into the sink; False once the pipe is closed at the other end."""
        with self._reading:
            while not self._closed:
                try:
                    data = os.read(self.fd, 1 << 16)
                except BlockingIOError:
                    return True
                if not data:
                    return False
                self.sink.add(data)
            return False

    def stop(self) -> None:
        """Finish reading (the writers are dead by now) and close the pipe."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            with self._reading:
                self._closed = True
                os.close(self.fd)


# --- fork server ----------------------------------------------------------------------------


class _ForkServer:
    """The long-lived trusted process that forks the monitors (each forks sandboxes' children)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def new_monitor(self, kind: str) -> socket.socket | None:
        """Ask the server to fork a monitor of ``kind``; our end of its socket, None without a server."""
        with self._lock:
            for _attempt in range(2):
                if self._control is None:
                    self._start()
                assert self._control is not None
                ours, theirs = socket.socketpair()
                try:
                    socket.send_fds(self._control, [b"monitor " + kind.encode()], [theirs.fileno()])
                    return ours
                except OSError:
                    ours.close()
                    self._stop()
                finally:
                    theirs.close()
        return None

    def restart(self) -> None:
        """Forget the current server (if it still lives it exits when its socket closes)."""
        with self._lock:
            self._stop()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "gradcheck._child", "server", str(theirs.fileno()),
                   _scratch_base()]
        self._process = subprocess.Popen(
            command, pass_fds=[theirs.fileno()], env=_child_env(), cwd="/",
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=_debug_stream(),
            start_new_session=True,
        )
        theirs.close()
        self._control = ours

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


class _MonitorPool:
    """Idle monitors of the fork server, each running one sandbox at a time.

    A monitor that ran a sandbox has killed and reaped all of its processes, so it can run
    the next one: each sandbox then costs one fork (its child) instead of two. The pool
    grows to the number of sandboxes open at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, list[socket.socket]] = {}  # by kind: a monitor's confinement

    def acquire(self, kind: str) -> socket.socket | None:
        with self._lock:
            if self._idle.get(kind):
                return self._idle[kind].pop()
        return _SERVER.new_monitor(kind)

    def release(self, control: socket.socket, kind: str) -> None:
        with self._lock:
            self._idle.setdefault(kind, []).append(control)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for control in (c for controls in idle.values() for c in controls):
            control.close()  # the monitor exits


_SERVER = _ForkServer()
_MONITORS = _MonitorPool()
atexit.register(_SERVER.restart)
atexit.register(_MONITORS.close)


def _launch(config: dict[str, Any], fds: list[int]) -> tuple[subprocess.Popen[bytes] | None, socket.socket | None]:
    """Start a sandbox: in a monitor of the fork server's, or in a monitor spawned for it."""
    if hasattr(os, "fork") and os.environ.get("GRADCHECK_FORKSERVER", "1") != "0":
        for _attempt in range(3):
            control = _MONITORS.acquire(_kind_key(config))
            if control is None:
                break
            try:
                socket.send_fds(control, [json.dumps(config).encode()], fds)
                return None, control
            except OSError:
                control.close()  # that monitor is gone (a student may have killed it)
    msg_fd, out_fd, status_fd = fds
    spawn_config = dict(config, msg_fd=msg_fd, out_fd=out_fd, status_fd=status_fd)
    command = [sys.executable, "-m", "gradcheck._child", "monitor", json.dumps(spawn_config)]
    return subprocess.Popen(
        command, pass_fds=fds, env=_child_env(), cwd="/", stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=_debug_stream(), start_new_session=True,
    ), None


def _kind_key(config: dict[str, Any]) -> str:
    return json.dumps(monitor_kind(config), sort_keys=True)


_SCRATCH_BASE: list[str] = []


def _scratch_base() -> str:
    """The folder of this process's scratch copies (the fork server prepares rules for it).

    Others may pass through it (a ``--user`` child reaches its own copy) but not list it.
    """
    if not _SCRATCH_BASE or not os.path.isdir(_SCRATCH_BASE[0]):
        base = tempfile.mkdtemp(prefix="gradcheck-scratch-")
        os.chmod(base, 0o711)
        _SCRATCH_BASE[:] = [base]
        atexit.register(shutil.rmtree, base, True)
    return _SCRATCH_BASE[0]


def _child_env() -> dict[str, str]:
    # Only what Python needs: the fork server never holds the grader's tokens or keys.
    env = scrubbed_environment(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [_PACKAGE_PARENT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    # Plots never open a window; one BLAS thread per child (the grader runs one per core);
    # few malloc arenas so that RLIMIT_AS measures memory rather than reservations.
    env.update(MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="2", PYTHONDONTWRITEBYTECODE="1")
    return env


def _debug_stream() -> int | None:
    return None if os.environ.get("GRADCHECK_DEBUG") else subprocess.DEVNULL


# --- scratch folder ---------------------------------------------------------------------------


def _make_scratch(
    path: Path, limits: Limits, ids: tuple[int, int] | None, support: Path | None = None
) -> tuple[Path, tuple[str, ...]]:
    """Copy the submission's folder (regular files only, up to the cap) to a scratch folder.

    The course's support files (helper modules, data) are copied first, so that a student's
    own file of the same name wins, as it would on the student's machine.
    """
    root = Path(tempfile.mkdtemp(prefix="gradcheck-", dir=_scratch_base()))
    scratch = root / "work"
    scratch.mkdir()
    if support is not None and support.is_dir():
        shutil.copytree(support, scratch, dirs_exist_ok=True, symlinks=False)
    budget = limits.copy_bytes - path.stat().st_size
    shutil.copyfile(path, scratch / path.name)
    skipped = 0
    for source in _folder_files(path.parent):
        if source == path:
            continue
        size = source.stat(follow_symlinks=False).st_size
        if size > budget:
            skipped += 1
            continue
        target = scratch / source.relative_to(path.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target, follow_symlinks=False)
        budget -= size
    if ids is not None:
        _chown_tree(root, ids)
    notes = (f"{skipped} files of the folder were not copied (over the "
             f"{limits.copy_bytes:,}-byte limit)",) if skipped else ()
    return scratch, notes


def _folder_files(folder: Path) -> list[Path]:
    # Without recursion and a few levels deep: the plugin copies the student's own folder,
    # which may be nested thousands of levels deep (os.walk raised RecursionError).
    from gradcheck.submissions import entries

    # Symlinks are not followed: they could point anywhere on the grader's disk; only regular
    # files are copied (reading a FIFO or a device node would never end).
    listed = entries(folder, skip=_SKIPPED_DIRS | {".ipynb_checkpoints", ".DS_Store", "__MACOSX"})
    return [path for path, kind in listed if kind == "file" and path.is_file()][:_MAX_FILES]


def _chown_tree(root: Path, ids: tuple[int, int]) -> None:
    uid, gid = ids
    for current, dirs, names in os.walk(root):
        os.chown(current, uid, gid)
        for name in dirs + names:
            os.chown(Path(current, name), uid, gid, follow_symlinks=False)


def _user_ids(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    if os.geteuid() != 0:
        raise ValueError(f"running submissions as {user!r} needs the grader to run as root")
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"there is no user {user!r} to run submissions as") from None
    return entry.pw_uid, entry.pw_gid


# --- small helpers ----------------------------------------------------------------------------


def _isolation(reply: dict[str, Any]) -> Isolation | None:
    data = reply.get("isolation")
    try:
        return Isolation.from_dict(data) if isinstance(data, dict) else None
    except (TypeError, ValueError):
        return None  # the child's reply is never trusted blindly


def _call_result(reply: dict[str, Any]) -> CallResult:
    ok = reply.get("ok") is True
    seconds = reply.get("seconds")
    seconds = float(seconds) if isinstance(seconds, (int, float)) else 0.0
    if ok:
        return CallResult(True, reply.get("value"), None, seconds)
    return CallResult(False, None, _text(reply.get("error")), seconds)


def _refs(value: Any) -> list[Ref]:
    if isinstance(value, Ref):
        return [value]
    if isinstance(value, (list, tuple)):
        return [ref for item in value for ref in _refs(item)]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _refs(item)]
    return []


def _text(value: Any) -> str:
    # Everything in a reply came from the child: never trust its type or length.
    text = value if isinstance(value, str) else "the process sent back an unreadable error"
    return text[:1000]


def _list(value: Any) -> list[Any]:
    return value[:10_000] if isinstance(value, list) else []


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
