"""What ``up`` runs, beside its child processes (:class:`~clickstream.supervisor.ProcessPart`):
the :class:`Part` protocol, the embedded broker as a part, and a configured Kafka cluster as
one (reported when it does not answer, never restarted)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.kafka.admin import wait_for_cluster
from clickstream.settings import Settings
from clickstream.supervisor import lines_since, log_size


class Part(Protocol):
    name: str

    def start(self, stop: threading.Event | None = None) -> None: ...

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

    def start(self, stop: threading.Event | None = None) -> None:
        self.launch(stop)
        self.broker.wait_ready()

    def launch(self, stop: threading.Event | None = None) -> None:
        """Start the broker's process (fetching its jars first, if needed)."""
        self._log_offset = log_size(self.log)
        self.broker.launch()

    def relaunch(self) -> None:
        self.broker.stop()
        self.launch()

    def exit_code(self) -> int | None:
        return self.broker.exit_code()

    def new_output(self) -> list[str]:
        return lines_since(self.log, self._log_offset)

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

    def start(self, stop: threading.Event | None = None) -> None:
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
