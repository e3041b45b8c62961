"""Locks that keep two processes off the same folder: one ``up`` per data folder, one jobs
process per checkpoint folder.

A lock is an exclusive ``flock`` on a small file that holds the PID of the process that took
it. The operating system drops the lock when the last descriptor of that file closes, however
the process ends (SIGKILL included), so a crash never leaves a stale lock behind; the file
itself stays and is harmless. ``up`` passes its descriptor to the watchdogs of its parts, so
the data folder stays locked until the last of them has exited.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from clickstream.errors import TerminalError


class FolderInUseError(TerminalError):
    """Another process holds the lock."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class FolderLock:
    """An exclusive lock on ``path`` (a file, created if missing) that guards ``folder``
    (default: the file's folder), taken by :meth:`acquire`."""

    def __init__(self, path: Path, what: str, folder: Path | None = None) -> None:
        self.path = path
        self.what = what
        """What holds it, for the other process's message (``clickstream up``)."""
        self.folder = folder or path.parent
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderInUseError` naming the holder's PID."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid, what = holder_of(self.path)
            raise FolderInUseError(self._refusal(pid, what), pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{self.what}\n".encode(), 0)
        self.fd = fd
        return self

    def _refusal(self, pid: int | None, what: str) -> str:
        who = what or "another process"
        if pid is None:
            return f"{who} is using {self.folder} (its lock: {self.path}): stop it first"
        if not _alive(pid):
            return (
                f"{who} (pid {pid}) has exited, but its parts are still stopping and hold "
                f"{self.folder}: try again in a few seconds"
            )
        return f"{who} is already running on {self.folder} (pid {pid}): stop it first"

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def holder_of(path: Path) -> tuple[int | None, str]:
    """(PID, what) written by the holder of the lock at ``path``; (None, "") if unreadable. The
    holder writes them just after taking the lock, so an empty file is read again briefly."""
    for _ in range(20):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return None, ""
        if lines:
            try:
                return int(lines[0]), (lines[1] if len(lines) > 1 else "")
            except ValueError:
                return None, ""
        time.sleep(0.01)
    return None, ""


def is_locked(path: Path) -> bool:
    """True while some process holds the lock at ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def up_lock_path(data_dir: Path) -> Path:
    """The lock of ``clickstream up`` on its data folder."""
    return data_dir / "up.lock"


def up_lock(data_dir: Path) -> FolderLock:
    return FolderLock(up_lock_path(data_dir), "clickstream up")


def checkpoints_lock(checkpoint_dir: Path, what: str) -> FolderLock:
    """The lock of the jobs process on a checkpoint folder: a file next to it, so that
    ``--reset`` deleting the folder leaves the lock in place."""
    path = checkpoint_dir.parent / f"{checkpoint_dir.name}.lock"
    return FolderLock(path, what, folder=checkpoint_dir)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
