"""``up`` keeps its parts running: a part whose process exits is started again after a delay
that doubles with each recent failure (1 s, 2 s, 4 s... at most 60 s). A part that fails
``max_failures`` times within ``window_s`` is left stopped, with the last lines of its log as its
last error. A part that runs but does not answer its health check is reported, not restarted
(the collector answers 503 while Kafka is down: restarting it would not help).

The state of every part is written to ``<data_dir>/up-state.json`` whenever it changes, for
``clickstream status``; the file is trusted only while ``up`` holds its lock on the data folder.

:class:`ProcessPart` is the supervised part of ``up`` that is a ``clickstream`` child process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from clickstream.children import child_pid, spawn
from clickstream.children import stop as stop_child
from clickstream.errors import TerminalError
from clickstream.lock import is_locked, up_lock_path

HEALTH_EVERY_S = 5.0
"""How often the parts' health checks run (a part's exit is seen within half a second)."""
HEALTH_GRACE_S = 30.0
"""A restarted part is not reported as unhealthy in its first seconds (it is starting)."""


class Supervised(Protocol):
    name: str

    def healthy(self) -> bool: ...

    def exit_code(self) -> int | None:
        """None while its process runs (or when it has none)."""

    def relaunch(self) -> None:
        """Start its process again, without waiting for it to answer."""

    def new_output(self) -> list[str]:
        """The lines of its log written since its last (re)start."""

    @property
    def pid(self) -> int | None: ...

    @property
    def log(self) -> Path | None: ...


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_failures: int = 5
    """A part that fails this often within ``window_s`` is left stopped."""
    window_s: float = 600.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next start after ``failures`` recent failures."""
        return float(min(self.first_delay_s * 2 ** max(failures - 1, 0), self.max_delay_s))


@dataclass
class PartStatus:
    """One part as ``clickstream status`` shows it."""

    name: str
    state: str = "running"
    """``running``, ``restarting`` (waiting for its next start) or ``failed`` (given up)."""
    pid: int | None = None
    restarts: int = 0
    healthy: bool = True
    exit: str | None = None
    """How its process last ended (``exit code 1``, ``killed by SIGKILL``)."""
    last_error: str | None = None
    """The last lines of its log before it last ended."""
    log: str | None = None


@dataclass
class UpStatus:
    pid: int
    started: float
    """Wall-clock time ``up`` started (seconds since the epoch)."""
    parts: list[PartStatus] = field(default_factory=list)


def state_path(data_dir: Path) -> Path:
    return data_dir / "up-state.json"


def read_state(data_dir: Path) -> UpStatus | None:
    """The state ``up`` last wrote, or None when no ``up`` runs on ``data_dir``."""
    if not is_locked(up_lock_path(data_dir)):
        return None
    try:
        data = json.loads(state_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    parts = [PartStatus(**part) for part in data.pop("parts", [])]
    return UpStatus(**data, parts=parts)


def describe_exit(code: int) -> str:
    """``exit code 1``, or ``killed by SIGKILL`` (negative codes, and the shell's 128 + N)."""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    try:
        return f"killed by {signal.Signals(number).name}" if number else f"exit code {code}"
    except ValueError:
        return f"exit code {code}"


ERROR_LINE = re.compile(r"^error:|Exception\b|\bERROR\b|Error:")


def last_error(lines: Sequence[str], keep: int = 3) -> str:
    """The last lines of a log that look like errors (clickstream's ``error: ...``, a Java
    exception, a Python one; not the indented lines of stack traces), else its last lines."""
    text = [line.rstrip()[:500] for line in lines if line.strip()]
    errors = [line for line in text if ERROR_LINE.search(line) and not line[0].isspace()]
    tail = (errors or text)[-keep:]
    return "\n".join(tail) if tail else "(nothing in its log)"


class Supervisor:
    """Watches ``parts`` from :meth:`run` until ``stop`` is set; restarts the ones that exit."""

    def __init__(
        self,
        parts: Sequence[Supervised],
        say: Callable[[str], None],
        warn: Callable[[str], None],
        state_file: Path | None = None,
        policy: RestartPolicy = RestartPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parts = list(parts)
        self.say = say
        self.warn = warn
        self.state_file = state_file
        self.policy = policy
        self.clock = clock
        self.status = UpStatus(os.getpid(), time.time())
        self._state = {part.name: PartStatus(part.name) for part in self.parts}
        self._failures: dict[str, list[float]] = {part.name: [] for part in self.parts}
        self._restart_at: dict[str, float] = {}
        self._started_at: dict[str, float] = {part.name: clock() for part in self.parts}
        self._written = ""

    def run(self, stop: threading.Event) -> None:
        next_health = self.clock() + HEALTH_EVERY_S
        self.step()
        while not stop.wait(0.5):  # a signal ends the wait at once
            self.step()
            if self.clock() >= next_health:
                self.check_health()
                next_health = self.clock() + HEALTH_EVERY_S
            self.write_state()

    def step(self) -> None:
        """See which parts exited, and start the ones whose delay is over."""
        now = self.clock()
        for part in self.parts:
            state = self._state[part.name]
            state.pid = part.pid
            state.log = str(part.log) if part.log else None
            if state.state == "running":
                code = part.exit_code()
                if code is not None:
                    self._failed(part, describe_exit(code), last_error(part.new_output()), now)
            elif state.state == "restarting" and now >= self._restart_at[part.name]:
                self._restart(part, now)
        self.write_state()

    def _failed(self, part: Supervised, how: str, error: str, now: float) -> None:
        state = self._state[part.name]
        state.exit, state.last_error, state.healthy = how, error, False
        failures = self._failures[part.name]
        failures.append(now)
        failures[:] = [t for t in failures if now - t < self.policy.window_s]
        where = f" (log: {part.log})" if part.log else ""
        summary = " | ".join(error.splitlines())
        if len(failures) >= self.policy.max_failures:
            state.state = "failed"
            self.warn(
                f"{part.name} {how}; it failed {len(failures)} times within "
                f"{self.policy.window_s / 60:g} min: not restarting it{where}. "
                f"Last error: {error}"
            )
            return
        delay = self.policy.delay(len(failures))
        state.state = "restarting"
        self._restart_at[part.name] = now + delay
        self.warn(
            f"{part.name} {how}: {summary}{where}; restarting it in {delay:g} s "
            f"(failure {len(failures)} of {self.policy.max_failures} allowed within "
            f"{self.policy.window_s / 60:g} min)"
        )

    def _restart(self, part: Supervised, now: float) -> None:
        state = self._state[part.name]
        try:
            part.relaunch()
        except Exception as exc:
            state.state = "running"  # so that _failed counts it like an exit
            self._failed(part, "could not start", f"error: {exc}", now)
            return
        state.state, state.healthy = "running", True
        state.restarts += 1
        state.pid = part.pid
        self._started_at[part.name] = now
        self.say(f"{part.name:<10} restarted (pid {part.pid}, restart {state.restarts})")

    def check_health(self) -> None:
        """Say when a running part stops answering, and when it is back."""
        now = self.clock()
        for part in self.parts:
            state = self._state[part.name]
            if state.state != "running" or now - self._started_at[part.name] < HEALTH_GRACE_S:
                continue
            healthy = part.healthy()
            if state.healthy and not healthy:
                where = f" (see {part.log})" if part.log else ""
                self.warn(f"{part.name} is not healthy{where}")
            elif healthy and not state.healthy:
                self.say(f"{part.name} is healthy again")
            state.healthy = healthy

    def write_state(self) -> None:
        if self.state_file is None:
            return
        self.status.parts = [self._state[part.name] for part in self.parts]
        text = json.dumps(asdict(self.status), indent=2)
        if text == self._written:
            return
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(text)
        os.replace(temporary, self.state_file)
        self._written = text


def log_size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def lines_since(path: Path | None, offset: int, limit: int = 65_536) -> list[str]:
    """The lines of ``path`` after byte ``offset`` (at most the last ``limit`` bytes)."""
    if path is None:
        return []
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(offset, size - limit))
            return fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []


@dataclass
class ProcessPart:
    """``clickstream <args>`` in a child process, with its output in ``log_file``."""

    name: str
    args: list[str]
    env: Mapping[str, str]
    log_file: Path
    url: str = ""
    health_url: str | None = None
    ready_timeout_s: float = 90.0
    keep_fds: tuple[int, ...] = ()
    """Descriptors its watchdog keeps open (``up``'s lock on the data folder)."""
    process: subprocess.Popen[bytes] | None = None
    _log_offset: int = 0

    def start(self, stop: threading.Event | None = None) -> None:
        """Start the process and wait until it answers its health check (if it has one), or
        until ``stop`` is set (the process is left running: stop it with :meth:`stop`)."""
        self.relaunch()
        assert self.process is not None
        if self.health_url is None:
            return
        deadline = time.monotonic() + self.ready_timeout_s
        while not self._answers():
            if stop is not None and stop.is_set():
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise TerminalError(f"{self.name} did not start: {self._last_log_line()}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        assert self.health_url is not None
        try:
            return httpx.get(self.health_url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _last_log_line(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return f"{lines[-1]} (log: {self.log_file})" if lines else f"see {self.log_file}"

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process)
            self.process = None

    def healthy(self) -> bool:
        alive = self.process is not None and self.process.poll() is None
        return alive and (self.health_url is None or self._answers())

    def relaunch(self) -> None:
        """Start the process (again), without waiting for it to answer."""
        self.stop()
        self._log_offset = log_size(self.log_file)
        self.process = spawn(
            [sys.executable, "-m", "clickstream", *self.args],
            log_file=self.log_file,
            env=self.env,
            pass_fds=self.keep_fds,
        )

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def new_output(self) -> list[str]:
        return lines_since(self.log_file, self._log_offset)

    @property
    def pid(self) -> int | None:
        """The PID of the ``clickstream`` process (its watchdog's, while it starts)."""
        return child_pid(self.process) if self.process is not None else None

    @property
    def log(self) -> Path | None:
        return self.log_file
