"""Confine the current process before it runs student code: Landlock, namespaces, seccomp.

One responsibility: turning a process that is about to run student code (the student child
of :mod:`gradcheck._child`) into one that can read only what Python needs, write only its
scratch copy, reach no network and touch no other process. Everything is a direct system
call through ctypes: no dependency, no helper process.

Layers, each applied when the kernel allows it (:func:`probe` says which do):

* **netns**: a new network namespace (with a new user namespace when not root): no interface
  but a loopback that is down (``--kernel`` brings it up: its kernel talks TCP on 127.0.0.1).
* **seccomp**: ``EPERM`` for ptrace, process_vm_readv/writev, mounts, namespaces, kernel
  modules, BPF, io_uring and other calls no submission needs; sockets other than Unix ones
  (``--kernel``: also IPv4/IPv6 and netlink, which its kernel uses on the loopback).
* **landlock** (ABI 1+): read and execute only the Python installation, its site-packages
  (without gradcheck's reference solutions), the gradcheck package and a few system files;
  read and write only the scratch copy. ABI 4+: no TCP bind or connect (not with ``--kernel``,
  whose ports are chosen after the rules). ABI 6+: no signal to, and no abstract Unix socket
  of, any process outside the sandbox.

Where they are paid: a monitor (trusted, one sandbox after another) takes on the namespace
and the filter once, with :func:`confine_monitor`, and every child it forks inherits them;
the fork server builds the file-reading Landlock layer once (:func:`prepare`); each child
then only enforces it and adds its own small layer for its scratch copy (:func:`confine`).

Run ``python -m gradcheck.confinement`` to print what this machine gives.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import platform
import site
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Isolation", "Layers", "LEVELS", "IsolationError", "probe", "confine",
           "confine_monitor", "scrubbed_environment", "prepare"]

LEVELS = ("strict", "best", "off")
"""``--isolation`` levels: refuse without every layer, use what there is, use none."""

_PACKAGE = Path(__file__).resolve().parent
_FULL_LANDLOCK = 6  # TCP rules (4) and scoping of signals and abstract sockets (6)


class IsolationError(RuntimeError):
    """A layer that was required could not be applied."""


@dataclass(frozen=True)
class Isolation:
    """The layers in force (or available): what :func:`probe` found, what a child applied.

    Attributes:
        landlock: Landlock ABI version in force; 0 without Landlock.
        netns: In a network namespace of its own (no network but a private loopback).
        seccomp: The system-call filter is installed.
        kernel: ``--kernel`` mode: Landlock's TCP rules are not used (see the module doc).
        missing: One phrase per missing layer, saying why.
    """

    landlock: int = 0
    netns: bool = False
    seccomp: bool = False
    kernel: bool = False
    missing: tuple[str, ...] = field(default=(), compare=False)

    @property
    def complete(self) -> bool:
        """Every layer this module knows is in force."""
        return self.landlock >= _FULL_LANDLOCK and self.netns and self.seccomp

    def describe(self) -> str:
        """One line, e.g. ``"isolation: landlock 7, netns, seccomp"``.

        Example:
            >>> Isolation(landlock=7, netns=True, seccomp=True).describe()
            'isolation: landlock 7, netns, seccomp'
            >>> Isolation().describe()
            'isolation: none'
        """
        parts = [f"landlock {self.landlock}"] if self.landlock else []
        if self.landlock >= 4 and self.kernel:
            parts[0] += " (no TCP rules: --kernel)"
        parts += [name for name, on in (("netns", self.netns), ("seccomp", self.seccomp)) if on]
        return "isolation: " + (", ".join(parts) or "none")

    def gaps(self) -> tuple[str, ...]:
        """What is missing for :attr:`complete`, one phrase each (empty when complete).

        Example:
            >>> Isolation(landlock=3, netns=True, seccomp=True).gaps()
            ('landlock ABI 3 < 6 (no TCP rules, no signal scoping)',)
        """
        gaps = []
        if not self.landlock:
            gaps.append(self._why("landlock", "landlock (filesystem rules)"))
        elif self.landlock < _FULL_LANDLOCK:
            lacks = (["no TCP rules"] if self.landlock < 4 else []) + ["no signal scoping"]
            gaps.append(f"landlock ABI {self.landlock} < {_FULL_LANDLOCK} ({', '.join(lacks)})")
        if not self.netns:
            gaps.append(self._why("netns", "netns (network namespace)"))
        if not self.seccomp:
            gaps.append(self._why("seccomp", "seccomp (system-call filter)"))
        return tuple(gaps)

    def _why(self, layer: str, label: str) -> str:
        reason = next((m.split(": ", 1)[1] for m in self.missing if m.startswith(layer + ":")), "")
        return f"{label}: {reason}" if reason else label

    def to_dict(self) -> dict[str, Any]:
        return {"landlock": self.landlock, "netns": self.netns, "seccomp": self.seccomp,
                "kernel": self.kernel, "missing": list(self.missing),
                "describe": self.describe()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Isolation:
        return cls(int(data.get("landlock") or 0), bool(data.get("netns")),
                   bool(data.get("seccomp")), bool(data.get("kernel")),
                   tuple(str(m) for m in data.get("missing") or ()))


@dataclass(frozen=True)
class Layers:
    """Which layers a child applies, and whether one that fails stops it (``required``)."""

    landlock: bool = True
    netns: bool = True
    seccomp: bool = True
    required: bool = False

    @classmethod
    def for_level(cls, level: str) -> Layers:
        """The layers of an ``--isolation`` level."""
        if level not in LEVELS:
            raise ValueError(f"isolation level {level!r} is not one of {', '.join(LEVELS)}")
        on = level != "off"
        return cls(on, on, on, required=level == "strict")

    def to_dict(self) -> dict[str, bool]:
        return {"landlock": self.landlock, "netns": self.netns, "seccomp": self.seccomp,
                "required": self.required}


# --- environment ------------------------------------------------------------------------------

_KEPT_VARIABLES = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "PYTHONHOME", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
    "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX", "MPLBACKEND", "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_ARENA_MAX", "TERM",
})


def scrubbed_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables Python and the grader's settings need; no tokens, keys or paths of ours.

    Example:
        >>> scrubbed_environment({"PATH": "/usr/bin", "AWS_SECRET_ACCESS_KEY": "x", "LC_ALL": "C"})
        {'PATH': '/usr/bin', 'LC_ALL': 'C'}
    """
    return {k: v for k, v in env.items()
            if k in _KEPT_VARIABLES or k.startswith(("LC_", "GRADCHECK_"))}


# --- libc -------------------------------------------------------------------------------------

_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        _LIBC.append(libc)
    return _LIBC[0]


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _syscall(number: int, *args: Any) -> int:
    return _check(_libc().syscall(ctypes.c_long(number), *args), f"syscall {number}")


# --- landlock ---------------------------------------------------------------------------------

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_MAKE_CHAR, _FS_MAKE_BLOCK = 1 << 6, 1 << 11
_FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 14, 1 << 15
# Rights each ABI knows: a ruleset may only handle those (1: bits 0-12, 2: REFER, 3: TRUNCATE,
# 5: IOCTL_DEV).
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_PR_SET_NO_NEW_PRIVS = 38

_SYSTEM_READ = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/bin", "/bin",
                "/usr/share/zoneinfo", "/usr/share/fonts", "/etc/fonts", "/etc/ld.so.cache",
                "/etc/localtime",
                "/dev/urandom", "/dev/random")
_DEVNULL = "/dev/null"


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    try:
        return _syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                        ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0


def _fs_rights(abi: int) -> int:
    return _FS_BY_ABI[max(v for v in _FS_BY_ABI if v <= abi)]


def _read_roots() -> list[str]:
    """Folders (and files) the child reads and executes: Python, its packages, ours."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             str(_PACKAGE), *_SYSTEM_READ}
    # Package folders on sys.path (a .pth may add another environment's), never the other
    # entries: the current folder, a checkout on PYTHONPATH and what sits next to it.
    roots.update(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    try:
        roots.update(site.getsitepackages())
        if site.ENABLE_USER_SITE:
            roots.add(site.getusersitepackages())
    except AttributeError:  # a virtualenv's old site module
        pass
    return sorted(roots)


def _hidden_paths() -> list[str]:
    """What must stay unreadable even inside an allowed folder: the reference solutions."""
    hidden = [os.environ.get("GRADCHECK_SOLUTIONS") or "", str(_PACKAGE / "_solutions"),
              str(_PACKAGE.parent / "solutions")]
    for root in _read_roots():
        hidden.append(os.path.join(root, "gradcheck", "_solutions"))  # a wheel's copy
    return sorted({os.path.realpath(p) for p in hidden if p and os.path.exists(p)})


def _carve(roots: Iterable[str], hidden: list[str]) -> list[tuple[str, int]]:
    """Rules granting ``_READ`` on ``roots`` except beneath ``hidden``.

    Landlock only allows; to leave out ``root/a/b`` the root gets READ_DIR alone (names stay
    listable, so Python's import system still works) and every sibling on the way down gets
    the full read rights.
    """
    rules: dict[str, int] = {}
    for root in {os.path.realpath(r) for r in roots if os.path.exists(r)}:
        todo = [root]
        while todo:
            folder = todo.pop()
            inside = [h for h in hidden if h == folder or h.startswith(os.path.join(folder, ""))]
            if not inside:
                rules[folder] = rules.get(folder, 0) | _READ
                continue
            if folder in inside or not os.path.isdir(folder):
                continue  # the hidden folder itself: nothing
            rules[folder] = rules.get(folder, 0) | _FS_READ_DIR
            try:
                entries = sorted(os.listdir(folder))
            except OSError:
                continue
            todo += [os.path.realpath(os.path.join(folder, e)) for e in entries]
    return _without_nested(rules)


def _without_nested(rules: dict[str, int]) -> list[tuple[str, int]]:
    # A rule beneath another with the same rights adds nothing: fewer rules per child.
    kept: list[tuple[str, int]] = []
    for path in sorted(rules):
        covered = any(path.startswith(os.path.join(p, "")) and rights & _READ == _READ for p, rights in kept)
        if not covered:
            kept.append((path, rules[path]))
    return kept


@functools.cache
def _opened(paths: tuple[tuple[str, int], ...]) -> tuple[tuple[int, int], ...]:
    """(O_PATH fd, rights) for each (path, rights); opened once per process.

    The descriptors are close-on-exec and useless under Landlock: opening anything through
    them is checked against the rules like any other path.
    """
    opened = []
    for path, rights in paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        opened.append((fd, rights if os.path.isdir(path) else rights & _FILE_RIGHTS))
    return tuple(opened)


def _carved_rules() -> tuple[tuple[int, int], ...]:
    """Read rules on the read roots without the solutions (one rule per sibling: many)."""
    return _opened(tuple(_carve(_read_roots(), _hidden_paths()) + [(_DEVNULL, _FS_READ_FILE)]))


def _root_rules() -> tuple[tuple[int, int], ...]:
    """Read rules on the read roots as they are (few), and /dev/null read-write."""
    roots = sorted({os.path.realpath(r) for r in _read_roots() if os.path.exists(r)})
    devnull = _FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
    return _opened(tuple(_without_nested(dict.fromkeys(roots, _READ))) + ((_DEVNULL, devnull),))


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _ruleset(handled: int, net: int, scoped: int, abi: int,
             rules: Iterable[tuple[int, int]]) -> int:
    attr = struct.pack("=QQQ", handled, net, scoped)[: 24 if abi >= 6 else 16 if abi >= 4 else 8]
    buffer = ctypes.create_string_buffer(attr, len(attr))
    ruleset = _syscall(_SYS_LANDLOCK_CREATE_RULESET, buffer, ctypes.c_size_t(len(attr)),
                       ctypes.c_uint32(0))
    try:
        rule = _PathBeneath()
        for fd, rights in rules:
            if rights & handled:
                rule.allowed_access, rule.parent_fd = rights & handled, fd
                _syscall(_SYS_LANDLOCK_ADD_RULE, ctypes.c_int(ruleset),
                         ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0))
    except BaseException:
        os.close(ruleset)
        raise
    return ruleset


_FILE_READS = _FS_EXECUTE | _FS_READ_FILE
_READ_LAYERS: dict[str, int] = {}  # scratch base -> ruleset fd of the file-reading layer


def _read_layer(base: str) -> int:
    """The layer that decides which files may be read or run: the carved read roots and ``base``.

    It holds the many rules of the carve-out and depends only on the folder all scratch
    copies live in, so the fork server builds it once and every child enforces it with one
    call. The child's own layer (:func:`_landlock`) then narrows ``base`` to its scratch copy.
    """
    if base not in _READ_LAYERS:
        base_fd = os.open(base, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
        try:
            rules = _carved_rules() + ((base_fd, _FILE_READS),)
            _READ_LAYERS[base] = _ruleset(_FILE_READS, 0, 0, 1, rules)
        finally:
            os.close(base_fd)
    return _READ_LAYERS[base]


def _landlock(scratch: str, kernel: bool) -> int:
    """Restrict this process's file access (and TCP, and scope) for good; return the ABI.

    Two layers, both enforced: reading and running files (prepared once, see
    :func:`_read_layer`), then this child's own: the read roots as they are, the scratch copy
    read-write, TCP and scoping. A file is readable only where both allow it.
    """
    abi = landlock_abi()
    if abi < 1:
        raise OSError(errno.ENOSYS, "Landlock is not available in this kernel")
    base = next((b for b in _READ_LAYERS if scratch.startswith(os.path.join(b, ""))), scratch)
    reads = _read_layer(base)
    _no_new_privileges()
    try:
        _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(reads), ctypes.c_uint32(0))
    finally:
        # Ours alone from here: a rule added through it would reach the next children.
        for fd in _READ_LAYERS.values():
            os.close(fd)
        _READ_LAYERS.clear()
    handled = _fs_rights(abi)
    net = _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 and not kernel else 0
    scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0
    # Device nodes made in the scratch copy could open the disk itself: never allowed.
    scratch_rights = handled & ~(_FS_MAKE_CHAR | _FS_MAKE_BLOCK)
    scratch_fd = os.open(scratch, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
    try:
        own = _ruleset(handled, net, scoped, abi, _root_rules() + ((scratch_fd, scratch_rights),))
    finally:
        os.close(scratch_fd)
    try:
        _syscall(_SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(own), ctypes.c_uint32(0))
    finally:
        os.close(own)
    return abi


def _no_new_privileges() -> None:
    _check(_libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


# --- namespaces -------------------------------------------------------------------------------

_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000
_SIOCSIFFLAGS, _IFF_UP, _IFF_LOOPBACK, _IFF_RUNNING = 0x8914, 0x1, 0x8, 0x40


def _network_namespace() -> None:
    """Enter a new network namespace; as a user, inside a new user namespace mapping only us.

    Must run while the process is single-threaded (a fresh fork is).
    """
    uid, gid = os.geteuid(), os.getegid()
    flags = _CLONE_NEWNET if uid == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
    _check(_libc().unshare(flags), "unshare")
    if uid != 0:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                           ("gid_map", f"{gid} {gid} 1")):
            fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)


def _loopback_up() -> None:
    """Bring ``lo`` up in this namespace (``--kernel``: its Jupyter kernel talks TCP on it)."""
    import fcntl
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", _IFF_UP | _IFF_LOOPBACK | _IFF_RUNNING)
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, request)


# --- seccomp ----------------------------------------------------------------------------------

_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# Calls no submission needs and an attacker would: other processes' memory, mounts and
# namespaces, the kernel itself, asynchronous I/O that bypasses this filter.
_DENIED_NAMES = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "mount",
    "umount2", "pivot_root", "chroot", "unshare", "setns", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "open_by_handle_at",
    "name_to_handle_at", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname",
    "setdomainname", "acct", "quotactl", "syslog", "fanotify_init",
)
_NUMBERS = {
    "x86_64": dict(zip(_DENIED_NAMES + ("socket",), (
        101, 310, 311, 312, 438, 165, 166, 155, 161, 272, 308, 429, 428, 430, 431, 432, 433,
        442, 175, 313, 176, 246, 320, 169, 167, 168, 321, 298, 250, 248, 249, 304, 303, 323,
        425, 426, 427, 164, 227, 305, 159, 170, 171, 163, 179, 103, 300, 41))),
    "aarch64": dict(zip(_DENIED_NAMES + ("socket",), (
        117, 270, 271, 272, 438, 40, 39, 41, 51, 97, 268, 429, 428, 430, 431, 432, 433, 442,
        105, 273, 106, 104, 294, 142, 224, 225, 280, 241, 219, 217, 218, 265, 264, 282, 425,
        426, 427, 170, 112, 266, 171, 161, 162, 89, 60, 116, 262, 198))),
}
# System V IPC and POSIX message queues: objects outside any folder (Landlock does not see
# them) and outside the network namespace, shared by every process of the machine and left
# behind by a process that exits, so a channel between students graded at once, or from one
# run to the next (a segment one sandbox made with shmget was there for the next).
_IPC = {
    "x86_64": {"shmget": 29, "shmat": 30, "shmctl": 31, "shmdt": 67, "semget": 64, "semop": 65,
               "semctl": 66, "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71,
               "semtimedop": 220, "mq_open": 240, "mq_unlink": 241, "mq_timedsend": 242,
               "mq_timedreceive": 243, "mq_notify": 244, "mq_getsetattr": 245},
    "aarch64": {"shmget": 194, "shmat": 196, "shmctl": 195, "shmdt": 197, "semget": 190,
                "semop": 193, "semctl": 191, "msgget": 186, "msgsnd": 189, "msgrcv": 188,
                "msgctl": 187, "semtimedop": 192, "mq_open": 180, "mq_unlink": 181,
                "mq_timedsend": 182, "mq_timedreceive": 183, "mq_notify": 184,
                "mq_getsetattr": 185},
}
# Calls on other processes that Landlock's scoping does not cover, allowed by the kernel for a
# process of the same user: prlimit64 set RLIMIT_NOFILE to 4 on every process of the grader's
# user (the grader stopped with "Too many open files"), setpriority and sched_* slow them.
# They stay allowed on the calling process itself (0), which is what libraries ask for.
_OWN_PROCESS_ONLY = {
    "x86_64": {"prlimit64": 302, "setpriority": 141, "sched_setscheduler": 144,
               "sched_setparam": 142, "sched_setattr": 314, "sched_setaffinity": 203,
               "ioprio_set": 251},
    "aarch64": {"prlimit64": 261, "setpriority": 140, "sched_setscheduler": 119,
                "sched_setparam": 118, "sched_setattr": 274, "sched_setaffinity": 122,
                "ioprio_set": 30},
}
# (argument index, required value): pid 0; setpriority(PRIO_PROCESS, 0) and
# ioprio_set(IOPRIO_WHO_PROCESS, 0), as "who" 0 with another "which" means the group or user.
_OWN_ARGUMENTS = {
    "prlimit64": ((0, 0),), "sched_setscheduler": ((0, 0),), "sched_setparam": ((0, 0),),
    "sched_setattr": ((0, 0),), "sched_setaffinity": ((0, 0),),
    "setpriority": ((0, 0), (1, 0)), "ioprio_set": ((0, 1), (1, 0)),
}
_OTHER_PROCESSES = {
    "x86_64": {"process_madvise": 440, "migrate_pages": 256, "move_pages": 279},
    "aarch64": {"process_madvise": 440, "migrate_pages": 238, "move_pages": 239},
}
_X86_ONLY = {"iopl": 172, "ioperm": 173}
_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1
_AF_UNIX, _AF_INET, _AF_INET6, _AF_NETLINK = 1, 2, 10, 16


def _machine() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


@functools.cache
def _filter(kernel: bool) -> bytes:
    """The BPF program (struct sock_filter[]) for this machine; ``kernel`` allows IP sockets."""
    machine = _machine()
    if machine not in _NUMBERS:
        raise OSError(errno.ENOSYS, f"no seccomp filter for {machine}")
    numbers = _NUMBERS[machine]
    denied = sorted({numbers[n] for n in _DENIED_NAMES} | set(_IPC[machine].values())
                    | set(_OTHER_PROCESSES[machine].values())
                    | (set(_X86_ONLY.values()) if machine == "x86_64" else set()))
    # A Jupyter kernel binds TCP on 127.0.0.1 and lists the interfaces (netlink) first.
    families = (_AF_UNIX, _AF_INET, _AF_INET6, _AF_NETLINK) if kernel else (_AF_UNIX,)
    # (code, jt, jf, k) with jt/jf as labels, resolved to relative jumps below. Layout: arch
    # check, x32 check, denied numbers, the calls allowed on this process only, socket -> its
    # family checks, allow.
    program: list[tuple[int, Any, Any, int]] = [
        (_BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_BPF_JEQ_K, "arch ok", 0, _AUDIT_ARCH[machine]),
        (_BPF_RET_K, 0, 0, _RET_KILL_PROCESS),
        ("arch ok",),
        (_BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        program.append((_BPF_JGE_K, "deny", 0, 0x40000000))  # x32 ABI: deny
    program += [(_BPF_JEQ_K, "deny", 0, number) for number in denied]
    # A Jupyter kernel's threads (ZeroMQ's) set their own scheduling through their thread
    # ids, and abort when refused: --kernel keeps these calls (see docs/threat-model.md).
    own = {} if kernel else _OWN_PROCESS_ONLY[machine]
    program += [(_BPF_JEQ_K, f"own {name}", 0, number) for name, number in own.items()]
    program += [
        (_BPF_JEQ_K, "socket", 0, numbers["socket"]),
        (_BPF_JEQ_K, "allow", "allow", 0),  # an unconditional jump (BPF jumps only forward)
        ("socket",),
        (_BPF_LD_W_ABS, 0, 0, 16),  # args[0] (low half): the socket's address family
    ]
    program += [(_BPF_JEQ_K, "allow", 0, family) for family in families]
    program.append((_BPF_RET_K, 0, 0, _RET_ERRNO | errno.EACCES))
    for name in own:
        # Each argument that names a process (or its group, or its user) must be 0: this one.
        program.append((f"own {name}",))
        for argument, value in _OWN_ARGUMENTS[name]:
            program += [(_BPF_LD_W_ABS, 0, 0, 16 + 8 * argument),  # its low half (an int)
                        (_BPF_JEQ_K, 0, "deny", value)]
        program.append((_BPF_JEQ_K, "allow", "allow", 0))
    program += [("allow",), (_BPF_RET_K, 0, 0, _RET_ALLOW),
                ("deny",), (_BPF_RET_K, 0, 0, _RET_ERRNO | errno.EPERM)]
    return _assemble(program)


def _assemble(program: list[tuple[Any, ...]]) -> bytes:
    """BPF bytes from instructions whose jump targets may be labels (1-tuples mark them)."""
    labels: dict[str, int] = {}
    instructions: list[tuple[Any, ...]] = []
    for item in program:
        if len(item) == 1:
            labels[item[0]] = len(instructions)
        else:
            instructions.append(item)
    out = []
    for index, (code, jt, jf, k) in enumerate(instructions):
        jumps = [labels[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= j < 256 for j in jumps):
            raise OSError(errno.E2BIG, "seccomp filter jump out of range")
        out.append(struct.pack("=HBBI", code, jumps[0], jumps[1], k))
    return b"".join(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _seccomp(kernel: bool) -> None:
    program = _filter(kernel)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _no_new_privileges()
    _syscall(_SYS_SECCOMP[_machine()], ctypes.c_uint(_SECCOMP_SET_MODE_FILTER),
             ctypes.c_uint(_SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(fprog))


# --- the whole sequence -----------------------------------------------------------------------


def prepare(scratch_base: str | None = None) -> None:
    """Compute and open, once, what every child's confinement needs (the fork server calls it).

    Args:
        scratch_base: The folder every scratch copy is made in: the file-reading layer is
            then built here, once, instead of in each child.
    """
    if sys.platform.startswith("linux") and landlock_abi() > 0:
        _root_rules()
        if scratch_base is not None:
            try:
                _read_layer(os.path.realpath(scratch_base))
            except OSError:
                pass  # each child tries again, and says why it fails
    for kernel in (False, True):
        try:
            _filter(kernel)
        except OSError:
            pass


def confine_monitor(layers: Layers, *, kernel: bool = False) -> dict[str, Any]:
    """The layers a monitor takes on for all the children it will fork: netns, then seccomp.

    A monitor never runs student code and serves one sandbox after another: entering the
    namespace and installing the filter here (a few milliseconds) is paid once per monitor,
    not once per child. Children inherit both and can leave neither (the filter forbids
    ``unshare``/``setns``, and filters cannot be removed). ``kernel`` picks the socket rule
    of ``--kernel`` children. Failures are reported, not raised: the child decides
    (:func:`confine`, with ``layers.required``).

    Returns:
        ``{"netns": bool, "seccomp": bool, "missing": [why, ...]}``, for :func:`confine`.
    """
    state: dict[str, Any] = {"netns": False, "seccomp": False, "missing": []}
    for name, wanted, apply in (("netns", layers.netns, _network_namespace),
                                ("seccomp", layers.seccomp, lambda: _seccomp(kernel))):
        if not wanted:
            continue
        try:
            apply()
            state[name] = True
        except (OSError, AttributeError, ValueError) as error:
            state["missing"].append(f"{name}: {_reason(error)}")
    return state


def confine(scratch: str, layers: Layers, *, kernel: bool = False,
            ids: tuple[int, int] | None = None, inherited: Mapping[str, Any] | None = None) -> Isolation:
    """Confine this process for good, right before it runs student code.

    The order matters: the namespace first (``unshare`` wants a single-threaded process and,
    without a user namespace, root), then seccomp (:func:`confine_monitor`; ``inherited``
    when the monitor did it), then the loopback for ``--kernel`` and the switch to ``ids``
    while still privileged, and Landlock last (it needs the scratch folder).

    Args:
        scratch: The only folder the process may write (its scratch copy).
        layers: The layers to apply; with ``layers.required`` a missing one raises.
        kernel: ``--kernel`` mode: bring the loopback up, allow IP sockets, no TCP rules.
        ids: (uid, gid) to switch to (``--user``, the grader being root).
        inherited: What :func:`confine_monitor` returned in the parent monitor, if it ran.

    Returns:
        The layers in force.

    Raises:
        IsolationError: A required layer is missing (the message names it and why).
    """
    state = dict(inherited) if inherited is not None else confine_monitor(layers, kernel=kernel)
    missing = [str(m) for m in state.get("missing", ())]
    netns, seccomp = bool(state.get("netns")), bool(state.get("seccomp"))

    def fail(name: str, reason: str) -> None:
        if layers.required:
            raise IsolationError(f"the {name} layer could not be applied: {reason}")
        missing.append(f"{name}: {reason}")

    for name, wanted, got in (("netns", layers.netns, netns), ("seccomp", layers.seccomp, seccomp)):
        if wanted and not got:
            fail(name, next((m.split(": ", 1)[1] for m in missing if m.startswith(name + ":")),
                            "not applied"))
    if kernel and netns:
        try:
            _loopback_up()
        except OSError as error:
            fail("netns", f"the loopback cannot be brought up: {_reason(error)}")
    if ids is not None:
        os.setgroups([])
        os.setgid(ids[1])
        os.setuid(ids[0])
    abi = 0
    if layers.landlock:
        try:
            abi = _landlock(scratch, kernel)
        except (OSError, AttributeError, ValueError) as error:
            fail("landlock", _reason(error))
    return Isolation(abi, netns, seccomp, kernel, tuple(dict.fromkeys(missing)))


def _reason(error: BaseException) -> str:
    """``unshare: Operation not permitted``, not ``[Errno 1] unshare: ...``."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return str(error)


# --- probe ------------------------------------------------------------------------------------


@functools.cache
def probe(kernel: bool = False) -> Isolation:
    """The layers a child gets on this machine, tried once in a throwaway process.

    Example:
        >>> probe().describe()  # doctest: +SKIP
        'isolation: landlock 7, netns, seccomp'
    """
    if not sys.platform.startswith("linux"):
        return Isolation(missing=("landlock: not Linux", "netns: not Linux", "seccomp: not Linux"))
    import threading

    if threading.active_count() == 1:
        # A fork of this process (milliseconds) is as good a test as a new interpreter, as
        # long as there is no other thread (unshare(CLONE_NEWUSER) refuses threaded processes).
        try:
            return _self_test(kernel)
        except (OSError, ValueError):
            pass
    command = [sys.executable, "-m", "gradcheck.confinement", "--json"] + (["--kernel"] if kernel else [])
    env = dict(scrubbed_environment(os.environ),
               PYTHONPATH=os.pathsep.join(filter(None, [str(_PACKAGE.parent), os.environ.get("PYTHONPATH")])))
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env,
                                stdin=subprocess.DEVNULL, cwd="/")
        return Isolation.from_dict(json.loads(result.stdout))
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        why = f"the probe failed: {error}"
        return Isolation(missing=(f"landlock: {why}", f"netns: {why}", f"seccomp: {why}"))


def _self_test(kernel: bool) -> Isolation:
    """Confine a forked child with every layer, and check that each one really holds."""
    root = tempfile.mkdtemp(prefix="gradcheck-probe-")
    scratch = os.path.join(root, "work")
    os.mkdir(scratch)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the confined process cannot delete the scratch folder: its parent does
        os.close(read)
        try:
            prepare()
            found = confine(scratch, Layers(), kernel=kernel)
            missing = list(found.missing)
            if found.landlock and _readable(root):
                missing.append("landlock: enforced, yet a folder outside the scratch was readable")
                found = Isolation(0, found.netns, found.seccomp, kernel)
            if found.seccomp and _can_trace():
                missing.append("seccomp: installed, yet ptrace was allowed")
                found = Isolation(found.landlock, found.netns, False, kernel)
            found = Isolation(found.landlock, found.netns, found.seccomp, kernel, tuple(missing))
            os.write(write, json.dumps(found.to_dict()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return Isolation.from_dict(json.loads(data))


def _can_trace() -> bool:
    _PTRACE_TRACEME = 0
    return _libc().ptrace(_PTRACE_TRACEME, 0, None, None) == 0


def _readable(path: str) -> bool:
    try:
        os.listdir(path)
        return True
    except OSError:
        return False


if __name__ == "__main__":
    found = _self_test("--kernel" in sys.argv)
    if "--json" in sys.argv:
        print(json.dumps(found.to_dict()))
    else:
        print(found.describe())
        for gap in found.gaps():
            print(f"missing: {gap}")
    sys.exit(0 if found.complete else 1)
