"""A throwaway unprivileged user, and a Python it can run, for tests that need one.

The suite runs as root here, with Python under /root/.pyenv, which no other user may read.
``throwaway_user`` creates a system user for the session and deletes it afterwards;
``readable_python`` makes a virtual environment of the system's Python (same version as ours)
in a world-readable folder that imports our installed packages, so that user can run the
grader, and the grader can run children as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


@contextmanager
def throwaway_user() -> Iterator[str]:
    """A new system user (no home, no shell), deleted on exit; raises LookupError when impossible."""
    if os.geteuid() != 0:
        raise LookupError("creating a user needs root")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        raise LookupError("useradd/userdel are not installed")
    name = f"gradcheck-t{os.getpid()}"
    made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise LookupError(f"useradd failed: {made.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@contextmanager
def readable_python(user: str) -> Iterator[Path]:
    """The ``python`` of a world-readable venv that ``user`` can run gradcheck with.

    Raises:
        LookupError: Why no such Python can be made here (the message says precisely).
    """
    if not SYSTEM_PYTHON.is_file():
        raise LookupError(f"no {SYSTEM_PYTHON} (the system Python of our version) to make a venv from")
    folder = Path(tempfile.mkdtemp(prefix="gradcheck-user-python-", dir="/tmp"))
    try:
        os.chmod(folder, 0o755)
        made = subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(folder / "venv")],
                              capture_output=True, text=True)
        if made.returncode != 0:
            raise LookupError(f"{SYSTEM_PYTHON} -m venv failed: {made.stderr.strip()[-300:]}")
        python = folder / "venv" / "bin" / "python"
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        lines = [f"import site; site.addsitedir({p!r})" for p in site.getsitepackages()]
        (folder / "venv" / "lib" / version / "site-packages" / "gradcheck-tests.pth").write_text("\n".join(lines) + "\n")
        entry = pwd.getpwnam(user)
        check = subprocess.run([str(python), "-c", "import numpy, nbformat, click, rich, gradcheck.loading"],
                               user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], cwd="/",
                               env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                               capture_output=True, text=True, timeout=120)
        if check.returncode != 0:
            last = (check.stderr.strip().splitlines() or ["?"])[-1]
            raise LookupError(f"{user} cannot import gradcheck's packages ({site.getsitepackages()}) "
                              f"with {python}: {last}")
        yield python
    finally:
        shutil.rmtree(folder, ignore_errors=True)
