"""``clickstream up``: start every part in order, watch them, stop them in reverse order.

A part is anything with ``name``, ``start()``, ``stop()``, ``healthy()`` and ``url``. The
embedded broker is the first; later parts (collector, jobs, dashboard, simulators) are added
after it and receive the settings that point at the running broker.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.children import spawn, stop
from clickstream.errors import TerminalError
from clickstream.kafka.admin import ensure_topics, wait_for_cluster
from clickstream.settings import Settings


class Part(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def healthy(self) -> bool: ...

    @property
    def url(self) -> str: ...


@dataclass
class BrokerPart:
    """The embedded broker as a part of the stack."""

    settings: Settings
    name: str = "broker"
    broker: EmbeddedBroker = field(init=False)

    def __post_init__(self) -> None:
        self.broker = EmbeddedBroker(
            self.settings.broker, log_file=Path(self.settings.data_dir) / "logs" / "broker.log"
        )

    def start(self) -> None:
        self.broker.start()

    def stop(self) -> None:
        self.broker.stop()

    def healthy(self) -> bool:
        return self.broker.running()

    @property
    def url(self) -> str:
        return f"kafka://{self.broker.bootstrap} (embedded, in memory)"


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
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = spawn(
            [sys.executable, "-m", "clickstream", *self.args], log_file=self.log_file, env=self.env
        )
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


class Stack:
    """The running parts of one ``clickstream up``."""

    def __init__(self, settings: Settings, on_event: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.parts: list[Part] = []
        self.say = on_event

    def start(self) -> Settings:
        """Start Kafka (embedded unless configured) and create the topics; return the settings
        the other parts must use."""
        if self.settings.embedded_broker:
            checkpoints = self.settings.checkpoint_dir
            if checkpoints.exists():
                # The embedded broker starts empty: offsets saved by an earlier run point past
                # the end of its topics. Results already loaded stay in the sinks.
                shutil.rmtree(checkpoints)
                self.say(f"reset stream checkpoints in {checkpoints} (the broker starts empty)")
            part = BrokerPart(self.settings)
            self._start(part)
            self.settings = self.settings.with_bootstrap(part.broker.bootstrap)
        else:
            self._start(ExternalKafkaPart(self.settings))
        topics = self.settings.topics
        names = [
            topics.web_events,
            topics.web_pings,
            topics.web_custom,
            topics.shop,
            topics.results,
            topics.dead_letter,
        ]
        created = ensure_topics(self.settings, names)
        if created:
            self.say(f"created topics: {', '.join(created)}")
        return self.settings

    def _start(self, part: Part) -> None:
        part.start()
        self.parts.append(part)
        self.say(f"{part.name:<10} up   {part.url}")

    def add(self, part: Part) -> None:
        """Start one more part; it will be stopped before the ones started earlier."""
        self._start(part)

    def unhealthy(self) -> list[str]:
        return [part.name for part in self.parts if not part.healthy()]

    def stop(self) -> None:
        while self.parts:
            part = self.parts.pop()
            try:
                part.stop()
            finally:
                self.say(f"{part.name:<10} stopped")


@contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM, for a foreground command that runs until told."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
