"""Child processes that never outlive us.

A long-running child runs under :mod:`clickstream.watchdog` (:func:`spawn`). A short one that
we wait for (the jar fetcher, the broker's storage tool) gets :func:`die_with_parent`, and what
a start launched that we hold no handle to (Spark's JVM, while PySpark starts it) is ended with
:func:`ended_on_failure`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes Linux SIGKILL the child when the thread that started it
    ends (SIGKILL of the parent included); None elsewhere. The C function is looked up here,
    in the parent: nothing is loaded between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(1)

    return preexec


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    grace_s: float | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start ``argv`` under a watchdog in its own session; output goes to ``log_file``.

    The watchdog ends the child when our end of its stdin closes, which happens when this
    process exits for any reason (SIGKILL included) or when :func:`stop` is called. The child
    runs in its own session, so a Ctrl-C in the terminal reaches only us, and we stop the
    children in order. ``grace_s`` is how long the child may take to exit after SIGTERM before
    it is killed (default: the watchdog's). ``pass_fds`` stay open in the watchdog (not in the
    child) until it exits: ``up`` passes its lock on the data folder.
    """
    grace = ["--grace", f"{grace_s:g}"] if grace_s is not None else []
    command = [sys.executable, "-m", "clickstream.watchdog", *grace, "--", *argv]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        output = log_file.open("ab")
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=output if log_file is not None else subprocess.DEVNULL,
            stderr=output if log_file is not None else subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    finally:
        if log_file is not None:
            output.close()


def stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """Ask the watchdog to end the child (SIGTERM, then SIGKILL after its grace period)."""
    if process.stdin is not None and not process.stdin.closed:
        process.stdin.close()
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def child_pid(process: subprocess.Popen[bytes]) -> int:
    """The PID of the command a watchdog runs (Linux), else the watchdog's own."""
    try:
        task = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        children = task.read_text().split()
    except OSError:
        return process.pid
    return int(children[0]) if children else process.pid


def descendants(pid: int | None = None) -> set[int]:
    """Every process under ``pid`` (default: this one), from Linux's /proc; empty elsewhere."""
    found: set[int] = set()
    todo = [os.getpid() if pid is None else pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(children - found)
            found |= children
    return found


def kill_all(pids: set[int]) -> None:
    """SIGKILL ``pids`` and whatever they start meanwhile: each is stopped first (SIGSTOP), so
    none can start a process that escapes, then all are killed; returns once they are gone
    (at most 5 s)."""
    stopped: set[int] = set()
    while pids - stopped:
        for pid in pids - stopped:
            with suppress(OSError):
                os.kill(pid, signal.SIGSTOP)
            stopped.add(pid)
        for pid in list(stopped):
            pids = pids | descendants(pid)
    for pid in stopped:
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0  # a JVM takes a moment to give its memory back
    while any(_running(pid) for pid in stopped) and time.monotonic() < deadline:
        time.sleep(0.02)


def _running(pid: int) -> bool:
    """False once ``pid`` is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextmanager
def ended_on_failure() -> Iterator[None]:
    """Kill the processes started within (and their children) if it ends with an exception:
    for a library call that starts a child we get no handle to (PySpark's JVM), interrupted by
    :class:`clickstream.signals.Stopped`."""
    before = descendants()
    try:
        yield
    except BaseException:
        kill_all(descendants() - before)
        raise
