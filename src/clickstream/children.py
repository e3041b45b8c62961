"""Child processes that never outlive us: each runs under :mod:`clickstream.watchdog`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


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
