"""``clickstream up``: start every part in order, watch them, stop them in reverse order.

A part is anything with ``name``, ``start()``, ``stop()``, ``healthy()`` and ``url``, and what
:mod:`clickstream.supervisor` needs to restart it when its process exits. The embedded broker is
the first. Its process is launched before anything else, and the jobs (whose
Spark session takes longest to build) start while it boots; the other parts (collector,
dashboard, simulators) start once it answers and the topics exist. All receive the settings
that point at the running broker, and are stopped in reverse order.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.children import child_pid, spawn, stop
from clickstream.errors import TerminalError
from clickstream.kafka.admin import ensure_topics, standard_topics, wait_for_cluster
from clickstream.lock import checkpoints_lock
from clickstream.settings import Settings
from clickstream.streaming import checkpoint


class Part(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def healthy(self) -> bool: ...

    @property
    def url(self) -> str: ...

    def exit_code(self) -> int | None: ...

    def relaunch(self) -> None: ...

    def new_output(self) -> list[str]: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def log(self) -> Path | None: ...


def _log_size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def _lines_since(path: Path | None, offset: int, limit: int = 65_536) -> list[str]:
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
class BrokerPart:
    """The embedded broker as a part of the stack."""

    settings: Settings
    progress: Callable[[str], None] | None = None
    name: str = "broker"
    broker: EmbeddedBroker = field(init=False)
    _log_offset: int = 0

    def __post_init__(self) -> None:
        self.broker = EmbeddedBroker(
            self.settings,
            log_file=Path(self.settings.data_dir) / "logs" / "broker.log",
            progress=self.progress,
        )

    def start(self) -> None:
        self.launch()
        self.broker.wait_ready()

    def launch(self) -> None:
        self._log_offset = _log_size(self.log)
        self.broker.launch()

    def relaunch(self) -> None:
        self.broker.stop()
        self.launch()

    def exit_code(self) -> int | None:
        return self.broker.exit_code()

    def new_output(self) -> list[str]:
        return _lines_since(self.log, self._log_offset)

    @property
    def pid(self) -> int | None:
        return self.broker.jvm_pid() or self.broker.pid

    @property
    def log(self) -> Path | None:
        return self.broker.log_file

    def stop(self) -> None:
        self.broker.stop()

    def healthy(self) -> bool:
        return self.broker.running()

    @property
    def url(self) -> str:
        return f"kafka://{self.broker.bootstrap} (embedded Apache Kafka, data in {self.data})"

    @property
    def data(self) -> Path:
        return self.settings.broker_dir


@dataclass
class ExternalKafkaPart:
    """An external cluster: nothing to start, only checked."""

    settings: Settings
    name: str = "kafka"

    def start(self) -> None:
        wait_for_cluster(self.settings)

    def stop(self) -> None:
        pass

    def healthy(self) -> bool:
        try:
            wait_for_cluster(self.settings, timeout=2)
        except Exception:
            return False
        return True

    @property
    def url(self) -> str:
        return f"kafka://{self.settings.kafka.bootstrap_servers}"

    def exit_code(self) -> int | None:
        return None  # not ours: never restarted, only reported when it does not answer

    def relaunch(self) -> None:
        pass

    def new_output(self) -> list[str]:
        return []

    pid = None
    log = None


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

    def start(self) -> None:
        self.relaunch()
        assert self.process is not None
        if self.health_url is None:
            return
        deadline = time.monotonic() + self.ready_timeout_s
        while not self._answers():
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
            stop(self.process)
            self.process = None

    def healthy(self) -> bool:
        alive = self.process is not None and self.process.poll() is None
        return alive and (self.health_url is None or self._answers())

    def relaunch(self) -> None:
        """Start the process (again), without waiting for it to answer."""
        self.stop()
        self._log_offset = _log_size(self.log_file)
        self.process = spawn(
            [sys.executable, "-m", "clickstream", *self.args],
            log_file=self.log_file,
            env=self.env,
            pass_fds=self.keep_fds,
        )

    def exit_code(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def new_output(self) -> list[str]:
        return _lines_since(self.log_file, self._log_offset)

    @property
    def pid(self) -> int | None:
        """The PID of the ``clickstream`` process (its watchdog's, while it starts)."""
        return child_pid(self.process) if self.process is not None else None

    @property
    def log(self) -> Path | None:
        return self.log_file


class Stack:
    """The running parts of one ``clickstream up``."""

    def __init__(self, settings: Settings, on_event: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.parts: list[Part] = []
        self.say = on_event

    def launch_kafka(self, reset: bool = False) -> Settings:
        """Start the embedded broker's process (unless a cluster is configured) without waiting
        for it; return the settings the other parts must use. Parts that take long to start
        (Spark) can be added before :meth:`await_kafka`. ``reset`` deletes the jobs'
        checkpoints first, so they read the topics again from the start."""
        checkpoints = checkpoint.local_root(self.settings)
        if checkpoints is None:
            if reset:
                raise TerminalError(
                    "--reset deletes local checkpoints only: delete "
                    f"{checkpoint.root(self.settings)} with the tools of its storage"
                )
        elif reset and checkpoints.exists():
            # Not while a jobs process (of another `up`, or `clickstream jobs run`) uses them.
            with checkpoints_lock(checkpoints, "clickstream up --reset"):
                shutil.rmtree(checkpoints)
            self.say(f"deleted stream checkpoints in {checkpoints} (--reset)")
        if not self.settings.embedded_broker:
            self._kafka: Part = ExternalKafkaPart(self.settings)
            return self.settings
        part = BrokerPart(self.settings, progress=self.say)
        part.launch()
        self.parts.append(part)
        self._kafka = part
        if part.broker.formatted_now and checkpoints and checkpoint.has_files(checkpoints):
            raise TerminalError(
                f"the stream checkpoints in {checkpoints} point into a broker whose data is "
                f"gone ({part.data} was empty): run `clickstream up --reset` to delete them"
            )
        self.settings = self.settings.with_bootstrap(part.broker.bootstrap)
        return self.settings

    def await_kafka(self) -> None:
        """Wait until Kafka answers, then create the topics."""
        kafka = self._kafka
        if isinstance(kafka, BrokerPart):
            kafka.broker.wait_ready()
        else:
            kafka.start()
            self.parts.insert(0, kafka)
        self.say(f"{kafka.name:<10} up   {kafka.url}")
        created = ensure_topics(self.settings, standard_topics(self.settings))
        if created:
            self.say(f"created topics: {', '.join(created)}")

    def start(self, reset: bool = False) -> Settings:
        """Start Kafka and create the topics; return the settings the other parts must use."""
        settings = self.launch_kafka(reset)
        self.await_kafka()
        return settings

    def _start(self, part: Part) -> None:
        self.parts.append(part)  # first: a stop while it starts (Stopped) must stop it too
        part.start()
        self.say(f"{part.name:<10} up   {part.url}")

    def add(self, part: Part) -> None:
        """Start one more part; it will be stopped before the ones started earlier."""
        self._start(part)

    def stop(self) -> None:
        while self.parts:
            part = self.parts.pop()
            try:
                part.stop()
            finally:
                self.say(f"{part.name:<10} stopped")
