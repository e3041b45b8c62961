"""Start, check and stop the embedded broker: Apache Kafka, one KRaft node, in a child process.

The broker runs from its Maven jars (fetched into ``jars.dir`` on first use) on the JDK that
Spark uses, with its data in ``<data_dir>/kafka``: records, topics and consumer groups survive a
stop and start. It runs under :mod:`clickstream.watchdog`, so it ends with its parent however the
parent ends, and SIGTERM shuts it down cleanly.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka.admin import AdminClient

from clickstream.broker.node import (
    MAIN_CLASS,
    STORAGE_TOOL,
    Node,
    format_storage,
    java_executable,
    jvm_command,
    jvm_options,
    kafka_classpath,
    new_cluster_id,
)
from clickstream.children import spawn, stop
from clickstream.errors import BrokerError
from clickstream.kafka.config import LOGGER
from clickstream.maven import JarsUnavailableError, Progress
from clickstream.settings import Settings

SHUTDOWN_GRACE_S = 30.0
"""How long a clean shutdown (SIGTERM) may take before the broker is killed."""


FREE_PORTS = range(20000, 32000)
"""Where :func:`free_port` looks: below the kernel's ephemeral range (32768 and up on Linux),
whose ports the system gives to outgoing connections: a server stopped for a moment could find
its port taken by some client's connection when it starts again."""

_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port in :data:`FREE_PORTS` that no one listens on now, not handed out before by this
    process."""
    for _ in range(500):
        port = random.choice(FREE_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise BrokerError(
        f"no free port on {host} between {FREE_PORTS.start} and {FREE_PORTS.stop - 1}"
    )


def port_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (a port in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_port_free(host: str, port: int, setting: str = "CLICKSTREAM_BROKER_PORT") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerError(
                    f"port {port} on {host} is in use (another Kafka?): set "
                    f"{setting}=0 for a free port, or "
                    "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS to use the cluster already there"
                ) from None
            raise BrokerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def wait_until_ready(
    bootstrap: str, timeout: float, alive: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until a broker at ``bootstrap`` answers a metadata request."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": LOGGER}
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and alive.poll() is not None:
            raise BrokerError(f"the broker exited with code {alive.returncode} while starting")
        try:
            admin.list_topics(timeout=0.5)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the broker at {bootstrap} did not answer within {timeout:g}s"
                ) from None
            time.sleep(0.1)


class EmbeddedBroker:
    """An Apache Kafka node in a child process, ended with us even if we are killed.

    Use as a context manager, or call :meth:`start` (or :meth:`launch`, then
    :meth:`wait_ready`) and :meth:`stop`. By default it is the single node of its own cluster,
    configured by ``settings.broker``; ``node`` gives one node of a larger cluster.
    """

    def __init__(
        self,
        settings: Settings,
        log_file: Path | None = None,
        *,
        node: Node | None = None,
        cluster_id: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.log_file = log_file
        self.progress = progress
        self.cluster_id = cluster_id
        self._node = node
        self._process: subprocess.Popen[bytes] | None = None
        self.formatted_now = False
        """True when this start formatted new storage (nothing from an earlier run is there)."""

    @property
    def node(self) -> Node:
        if self._node is None:
            broker = self.settings.broker
            host = broker.host
            controller_port = broker.controller_port
            if not controller_port or not port_free(host, controller_port):
                # Only this node uses it, and it is listed in no stored state: any port will do.
                controller_port = free_port(host)
            self._node = Node(
                node_id=1,
                host=host,
                port=broker.port or free_port(host),
                controller_port=controller_port,
                log_dir=self.settings.broker_dir,
                voters={1: (host, controller_port)},
                partitions=self.settings.topics.partitions,
                retention_ms=int(broker.retention_hours * 3_600_000),
                retention_bytes=broker.retention_bytes,
            )
        return self._node

    @property
    def port(self) -> int:
        return self.node.port

    @property
    def bootstrap(self) -> str:
        return f"{self.node.host}:{self.node.port}"

    @property
    def pid(self) -> int | None:
        """PID of the watchdog process (the broker's JVM is its only child)."""
        return self._process.pid if self._process else None

    def start(self) -> str:
        """Start the broker and wait until it answers; return its bootstrap address."""
        self.launch()
        self.wait_ready()
        return self.bootstrap

    def launch(self) -> None:
        """Start the broker's process without waiting for it to answer (see :meth:`wait_ready`):
        fetch its jars if needed, format its storage on the first start."""
        node = self.node
        check_port_free(node.host, node.port)
        check_port_free(node.host, node.controller_port, "CLICKSTREAM_BROKER_CONTROLLER_PORT")
        java = java_executable(self.settings)
        try:
            classpath = kafka_classpath(self.settings, self.progress)
        except JarsUnavailableError as exc:
            raise BrokerError(
                f"{exc}. Without network: set CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS to a running "
                "Kafka, or run `clickstream jars fetch --dir DIR` on a machine with network and "
                f"copy DIR to {self.settings.jars_dir}"
            ) from None
        config = node.write_config(node.log_dir.parent / f"{node.log_dir.name}.properties")
        if not node.formatted():
            self.cluster_id = self.cluster_id or new_cluster_id()
            cds = jvm_options(self.settings, java, classpath, STORAGE_TOOL)
            format_storage(node, self.cluster_id, java, classpath, config, cds)
            self.formatted_now = True
        self.cluster_id = node.cluster_id()
        command = jvm_command(
            java,
            classpath,
            self.settings.broker.heap,
            [MAIN_CLASS, str(config)],
            resident=True,
            options=jvm_options(self.settings, java, classpath, MAIN_CLASS),
        )
        self._process = spawn(command, log_file=self.log_file, grace_s=SHUTDOWN_GRACE_S)

    def wait_ready(self) -> None:
        """Block until the broker answers a metadata request (or fail with its last log line)."""
        try:
            wait_until_ready(self.bootstrap, self.settings.broker.startup_timeout_s, self._process)
        except BrokerError as exc:
            last = self._last_log_line()
            self.stop()
            raise BrokerError(f"{exc}{f': {last}' if last else ''}") from None
        except BaseException:  # a stop (Stopped) while it starts: it does not outlive the wait
            self.stop()
            raise

    def _last_log_line(self) -> str:
        if self.log_file is None:
            return ""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in lines if " ERROR " in line or "Exception" in line]
        return (errors or lines or [""])[-1].strip()

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        """How its process ended; None while it runs (or before it is launched)."""
        return self._process.poll() if self._process is not None else None

    def jvm_pid(self) -> int | None:
        """PID of the broker's JVM (the watchdog's child), if it runs."""
        if self._process is None:
            return None
        try:
            children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children")
            pids = children.read_text().split()
        except OSError:
            return None
        return int(pids[0]) if pids else None

    def kill(self) -> None:
        """SIGKILL the broker's JVM, as a crash would (its data stays as the crash left it)."""
        pid = self.jvm_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)

    def stop(self, timeout: float = SHUTDOWN_GRACE_S + 10) -> None:
        """Shut the broker down cleanly (SIGTERM) and wait for it to exit; its data stays."""
        process, self._process = self._process, None
        if process is not None:
            stop(process, timeout)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def cluster_nodes(
    settings: Settings, count: int, extra: Mapping[str, str] | None = None
) -> list[EmbeddedBroker]:
    """``count`` nodes of one KRaft cluster on free loopback ports, each with its data in
    ``<data_dir>/kafka-<id>`` (for tests of replication and failover)."""
    host = settings.broker.host
    ports = {n: (free_port(host), free_port(host)) for n in range(1, count + 1)}
    voters = {n: (host, controller) for n, (_, controller) in ports.items()}
    cluster_id = new_cluster_id()
    return [
        EmbeddedBroker(
            settings,
            settings.data_dir / "logs" / f"broker-{n}.log",
            node=Node(
                node_id=n,
                host=host,
                port=port,
                controller_port=controller,
                log_dir=settings.data_dir / f"kafka-{n}",
                voters=voters,
                partitions=settings.topics.partitions,
                extra=dict(extra or {}),
            ),
            cluster_id=cluster_id,
        )
        for n, (port, controller) in ports.items()
    ]
