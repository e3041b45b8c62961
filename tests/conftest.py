"""Shared fixtures: one embedded broker (Apache Kafka) and one SparkSession for the whole test
session."""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Container, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from clickstream.broker import embedded
from clickstream.broker.embedded import EmbeddedBroker
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings, load_settings

_counter = itertools.count()

TEST_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"
"""Every JVM the tests start (brokers, Spark, Cassandra, `up`'s parts) compiles with C1 only:
they live seconds to minutes on small data, where C2's compiler threads cost more CPU than they
save (a broker and one Spark query: 32 CPU-seconds with C2, 20 without, on the 2-core
machine), and the suite is bound by CPU. The products' own JVM options are unchanged."""
os.environ["JAVA_TOOL_OPTIONS"] = " ".join(
    filter(None, (os.environ.get("JAVA_TOOL_OPTIONS"), TEST_JVM_OPTIONS))
)


def _own_ports() -> None:
    """Each pytest-xdist worker picks free ports from its own share of
    :data:`~clickstream.broker.embedded.FREE_PORTS`: a port is free when picked but taken only
    when its server binds it, seconds later for a JVM, and another worker could pick it
    meanwhile."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or workers < 2:
        return
    ports = embedded.FREE_PORTS
    share = len(ports) // workers
    first = ports.start + int(worker[2:]) * share
    embedded.FREE_PORTS = range(first, first + share)


_own_ports()

JARS_DIR = Path(__file__).resolve().parents[1] / ".cache" / "jars"
"""The jar cache of every test (git-ignored): Kafka's and Spark's connector jars are fetched
from Maven once, not once per temporary data folder."""


def broker_settings(data_dir: Path, **env: str) -> Settings:
    """Settings of an embedded broker with its data in ``data_dir``, on free ports."""
    return load_settings(
        environ={
            "CLICKSTREAM_DATA_DIR": str(data_dir),
            "CLICKSTREAM_JARS_DIR": str(JARS_DIR),
            "CLICKSTREAM_BROKER_PORT": "0",
            "CLICKSTREAM_BROKER_CONTROLLER_PORT": "0",
            **env,
        }
    )


def own_broker(data_dir: Path, port: int = 0) -> EmbeddedBroker:
    """A broker of a test's own (not started), with its data and log in ``data_dir``."""
    settings = broker_settings(data_dir, CLICKSTREAM_BROKER_PORT=str(port))
    return EmbeddedBroker(settings, log_file=data_dir / "broker.log")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The real embedded broker (Apache Kafka, one KRaft node) on free loopback ports."""
    with own_broker(tmp_path_factory.mktemp("broker")) as running:
        yield running


@pytest.fixture(scope="session")
def session_settings(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the test broker, with a temporary data dir and a small Spark."""
    data_dir = tmp_path_factory.mktemp("data")
    base = load_settings(
        environ={
            "CLICKSTREAM_DATA_DIR": str(data_dir),
            "CLICKSTREAM_JARS_DIR": str(JARS_DIR),
            "CLICKSTREAM_SPARK_MASTER": "local[2]",
            "CLICKSTREAM_SPARK_SHUFFLE_PARTITIONS": "2",
            "CLICKSTREAM_SPARK_DRIVER_MEMORY": "2g",
        }
    )
    return base.with_bootstrap(broker.bootstrap)


@pytest.fixture(scope="session")
def settings(session_settings: Settings) -> Settings:
    """The session's settings (a module may override this fixture with a variant)."""
    return session_settings


@pytest.fixture(scope="session")
def spark(session_settings: Settings):  # type: ignore[no-untyped-def]
    from clickstream.spark.session import get_spark

    session = get_spark(session_settings)
    yield session
    session.stop()


@pytest.fixture
def new_topic(settings: Settings) -> Callable[..., str]:
    """Create a fresh topic: ``new_topic(partitions=4)`` returns its unique name."""

    def create(partitions: int = 4, create: bool = True) -> str:
        name = f"t{next(_counter)}-{uuid.uuid4().hex[:8]}"
        if create:
            ensure_topics(settings, [name], partitions=partitions)
        return name

    return create


@pytest.fixture
def produce(settings: Settings) -> Callable[..., int]:
    """``produce(topic, n, start=0, partitions=None)``: n JSON records ``{"i": k}``, keyed by k,
    spread over ``partitions`` explicitly when given; returns n once all are acknowledged."""

    def send(topic: str, n: int, start: int = 0, partitions: int | None = None) -> int:
        producer = make_producer(settings, **{"linger.ms": 20})
        for k in range(start, start + n):
            key = str(k).encode()
            value = json.dumps({"i": k}).encode()
            producer.produce(topic, value, key, partition=k % partitions if partitions else None)
        producer.flush()
        assert producer.stats.delivered == n
        return n

    return send


def read_topic(
    settings: Settings, topic: str, timeout: float = 10.0, keys: Container[bytes] | None = None
) -> list[Any]:
    """Every record of ``topic`` now, as (key, decoded JSON value), partition by partition;
    with ``keys``, only the records with one of those keys (the others are not decoded)."""
    from confluent_kafka import Consumer, TopicPartition

    from clickstream.kafka.config import consumer_config
    from clickstream.kafka.offsets import partitions_of, watermarks

    probe = Consumer(consumer_config(settings, None, **{"enable.partition.eof": True}))
    try:
        marks = watermarks(probe, partitions_of(probe, [topic], timeout), timeout)
    finally:
        probe.close()
    consumer = Consumer(consumer_config(settings))
    records: list[Any] = []
    try:
        for (name, partition), (low, high) in sorted(marks.items()):
            if high <= low:
                continue
            consumer.assign([TopicPartition(name, partition, low)])
            got = 0
            deadline = time.monotonic() + timeout
            while got < high - low and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                got += 1
                if keys is None or msg.key() in keys:
                    records.append((msg.key(), json.loads(cast(bytes, msg.value()))))
    finally:
        consumer.close()
    return records


def child_pids(pid: int) -> set[int]:
    """Every descendant of ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    """True if ``pid`` runs (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: set[int], timeout: float = 30) -> set[int]:
    """The ``pids`` still running after at most ``timeout`` seconds (a JVM whose Python parent
    stopped ends by itself, after its shutdown hooks: seconds on a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {pid for pid in pids if alive(pid)}
        if not left:
            return left
        time.sleep(0.1)
    return {pid for pid in pids if alive(pid)}


def serve_in_thread(app: Any, port: int, what: str) -> tuple[Any, threading.Thread]:
    """Run an ASGI ``app`` with uvicorn on 127.0.0.1:``port`` in a daemon thread; return the
    server (set ``should_exit`` to stop it) and the thread once it accepts connections."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    return serve_config_in_thread(config, what)


def serve_config_in_thread(config: Any, what: str) -> tuple[Any, threading.Thread]:
    """:func:`serve_in_thread` with a ``uvicorn.Config`` of the caller's."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the {what} did not start")
        time.sleep(0.05)
    return server, thread


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a ``clickstream`` child process: ours without CLICKSTREAM_ settings,
    but with the tests' jar cache, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_")}
    env["CLICKSTREAM_JARS_DIR"] = str(JARS_DIR)
    env.update(extra)
    return env


T = TypeVar("T")


# The running-collector fixture is shared by the collector and browser tests.
# One Cassandra node per session, for the bookstore tests and the bookstore bench alike.
from tests.cassandra_fixtures import cassandra, cassandra_certificates  # noqa: E402, F401
from tests.collector.conftest import start_collector  # noqa: E402, F401


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Call ``check`` until it returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout:g}s (last value: {value!r})")
        time.sleep(interval)
        value = check()
    return value


SHARED_BY_FOLDER = {"bigquery", "cluster", "secure", "up"}
"""Folders whose tests share a server of the folder's own (an emulator, a cluster, a secured
broker, one `up`): under pytest-xdist each such folder runs on one worker."""

LONGEST_FIRST = (
    "up", "test_faults.py", "bench/test_smoke_up.py", "bench/test_smoke.py", "cluster", "cassandra",
    "collector/test_openapi_fuzz.py", "test_stops.py",
)  # fmt: skip
"""The groups that take minutes (`pytest --durations`), handed out first: a long group handed
out last would run alone at the end while the other worker idles."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for ``--dist loadgroup`` (xdist sends a group to one worker): the tests of one
    Cassandra node, of a folder with a server of its own, or else of one module (module
    fixtures start once); the longest groups first, each group's tests in their own order
    (but those of the shared `up` last). The broker and the Spark session are started once per
    worker."""
    tests = Path(__file__).resolve().parent
    groups: dict[str, str] = {}
    for item in items:
        parts = item.path.resolve().relative_to(tests).parts
        if "cassandra" in getattr(item, "fixturenames", ()):
            group = "cassandra"
        elif len(parts) > 1 and parts[0] in SHARED_BY_FOLDER:
            group = parts[0]
        else:
            group = "/".join(parts)
        groups[item.nodeid] = group
        item.add_marker(pytest.mark.xdist_group(group))
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}

    def order(item: pytest.Item) -> tuple[int, bool]:
        # The tests of the shared `up` last in their group: it is started for the first of them
        # and stopped after the last, instead of running under the group's other tests.
        return rank.get(groups[item.nodeid], len(rank)), "running_up" in getattr(
            item, "fixturenames", ()
        )

    items.sort(key=order)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """On an xdist worker, before it sends its test ids to the scheduler: each id must end with
    ``@group``, which is how ``--dist loadgroup`` keeps a group on one worker. pytest-xdist 3.8
    writes the suffix into ``item._nodeid``, which pytest 9.2's structured node ids no longer
    read (pytest-dev/pytest-xdist#1386): every group was spread over the workers, each starting
    its own Cassandra node, cluster and `up`. Set it where pytest reads it, and refuse to run
    without it."""
    if not getattr(session.config.option, "loadgroup", False):
        return  # not an xdist worker distributing by group (-n 0, or another --dist)
    for item in session.items:
        marks = sorted(str(m.args[0]) for m in item.iter_markers("xdist_group") if m.args)
        if not marks:
            continue
        suffix = "@" + "_".join(marks)
        if not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            from _pytest.nodeid import NodeId  # pytest >= 9.2

            item._id = NodeId.parse(item.nodeid + suffix)
        if not item.nodeid.endswith(suffix):
            raise pytest.UsageError(
                f"{item.nodeid}: its xdist group ({suffix[1:]}) is not in its id, so "
                "--dist loadgroup would spread the group over the workers (pytest-xdist and "
                "pytest versions that do not fit: see tests/conftest.py)"
            )
