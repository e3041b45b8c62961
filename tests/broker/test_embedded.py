"""The embedded broker: Apache Kafka from its Maven jars, durable in the data folder, gone after
SIGTERM or a killed parent."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, cast

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from clickstream.broker.embedded import EmbeddedBroker, check_port_free
from clickstream.broker.node import KAFKA_JARS, KAFKA_VERSION, java_executable, new_cluster_id
from clickstream.errors import BrokerError
from clickstream.kafka.admin import admin_client, ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.kafka.config import consumer_config
from tests.conftest import (
    JARS_DIR,
    broker_settings,
    child_pids,
    cli_env,
    own_broker,
    read_topic,
    wait_gone,
)

pytestmark = pytest.mark.slow


def start_cli_broker(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "clickstream", "broker", "--port", "0"],
        env=cli_env(CLICKSTREAM_DATA_DIR=str(data_dir), CLICKSTREAM_BROKER_CONTROLLER_PORT="0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "broker listening on 127.0.0.1:" in line, line + cast(IO[str], process.stderr).read()
    return process, line.split()[3]


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


def test_sigterm_stops_broker_and_children(tmp_path: Path) -> None:
    process, _ = start_cli_broker(tmp_path)
    children = child_pids(process.pid)
    assert len(children) == 2  # the watchdog and the broker's JVM
    java = [pid for pid in children if Path(cmdline(pid)[0]).name == "java"]
    assert len(java) == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    assert wait_gone(children) == set()
    assert process.stdout is not None
    assert "broker stopped" in process.stdout.read()
    # A clean shutdown: Kafka says so in its log, and leaves no recovery work for the next start.
    log = (tmp_path / "logs" / "broker.log").read_text()
    assert "shut down completed" in log or "Transition from SHUTTING_DOWN to SHUTDOWN" in log


def test_killed_parent_leaves_no_orphan(tmp_path: Path) -> None:
    process, _ = start_cli_broker(tmp_path)
    children = child_pids(process.pid)
    assert len(children) == 2
    process.kill()
    process.wait(10)
    assert wait_gone(children) == set()


def test_is_apache_kafka_with_a_bounded_heap_and_retention(broker: EmbeddedBroker) -> None:
    jvm = broker.jvm_pid()
    assert jvm is not None
    args = cmdline(jvm)
    heap = broker.settings.broker.heap
    # Its whole heap from the start, touched: a resident footprint that does not creep.
    assert {f"-Xmx{heap}", f"-Xms{heap}", "-XX:+AlwaysPreTouch"} <= set(args)
    rss_kb = int(Path(f"/proc/{jvm}/status").read_text().split("VmRSS:")[1].split()[0])
    assert rss_kb * 1024 > 384 << 20
    assert args[-2] == "kafka.Kafka"
    assert any(f"kafka_2.13-{KAFKA_VERSION}.jar" in arg for arg in args)
    settings = broker.settings.with_bootstrap(broker.bootstrap)
    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    admin = admin_client(settings)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    retention = broker.settings.broker
    assert configs["log.retention.ms"].value == str(int(retention.retention_hours * 3_600_000))
    assert configs["log.retention.bytes"].value == str(retention.retention_bytes)
    assert configs["process.roles"].value == "broker,controller"


def test_restart_keeps_records_topics_and_committed_offsets(tmp_path: Path) -> None:
    broker = own_broker(tmp_path)
    settings = broker.settings.with_bootstrap(broker.start())
    try:
        assert broker.formatted_now
        cluster = broker.cluster_id
        ensure_topics(settings, ["kept"], partitions=3)
        producer = make_producer(settings)
        for i in range(1000):
            producer.produce("kept", f'{{"i": {i}}}'.encode(), str(i).encode())
        producer.flush()
        consumer = Consumer(consumer_config(settings, "kept-group"))
        parts = [TopicPartition("kept", p, 100 + p) for p in range(3)]
        consumer.commit(offsets=parts, asynchronous=False)
        consumer.close()
    finally:
        broker.stop()

    again = own_broker(tmp_path)  # new ports, the same data folder
    settings = again.settings.with_bootstrap(again.start())
    try:
        assert not again.formatted_now
        assert again.cluster_id == cluster
        values = sorted(value["i"] for _, value in read_topic(settings, "kept"))
        assert values == list(range(1000))
        consumer = Consumer(consumer_config(settings, "kept-group"))
        committed = consumer.committed([TopicPartition("kept", p) for p in range(3)], timeout=10)
        consumer.close()
        assert sorted((tp.partition, tp.offset) for tp in committed) == [
            (0, 100),
            (1, 101),
            (2, 102),
        ]
    finally:
        again.stop()


def test_cluster_ids_are_safe_on_a_command_line() -> None:
    ids = {new_cluster_id() for _ in range(3000)}
    assert len(ids) == 3000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_port_in_use_is_a_clear_error(broker: EmbeddedBroker, tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match=f"port {broker.port} on 127.0.0.1 is in use"):
        check_port_free("127.0.0.1", broker.port)
    second = own_broker(tmp_path, port=broker.port)
    with pytest.raises(BrokerError, match="CLICKSTREAM_BROKER_PORT=0"):
        second.start()
    assert not second.running()


def test_without_network_or_jars_says_what_to_do_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", "broker"],
        env=cli_env(
            CLICKSTREAM_DATA_DIR=str(tmp_path),
            CLICKSTREAM_JARS_DIR=str(tmp_path / "jars"),
            CLICKSTREAM_JARS_REPOSITORY="http://127.0.0.1:9/maven2/",
            CLICKSTREAM_BROKER_PORT="0",
            CLICKSTREAM_BROKER_CONTROLLER_PORT="0",
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"cannot download Apache Kafka {KAFKA_VERSION} from http://127.0.0.1:9/" in errors[0]
    assert "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS" in errors[0]
    assert "clickstream jars fetch --dir DIR" in errors[0]
    assert "Traceback" not in result.stderr


def test_a_copied_jar_folder_runs_without_network(tmp_path: Path) -> None:
    """What `clickstream jars fetch --dir DIR` writes, copied to another machine's jar cache."""
    fetched = subprocess.run(
        [sys.executable, "-m", "clickstream", "jars", "fetch", "--dir", str(JARS_DIR)],
        env=cli_env(CLICKSTREAM_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert f"Apache Kafka {KAFKA_VERSION}: " in fetched.stdout
    assert "Spark's Kafka connector" in fetched.stdout
    offline = tmp_path / "offline-jars"
    shutil.copytree(JARS_DIR / KAFKA_JARS.folder, offline / KAFKA_JARS.folder)
    settings = broker_settings(
        tmp_path / "data",
        CLICKSTREAM_JARS_DIR=str(offline),
        CLICKSTREAM_JARS_REPOSITORY="http://127.0.0.1:9/maven2/",
    )
    with EmbeddedBroker(settings, log_file=tmp_path / "broker.log") as running:
        assert running.running()


def test_a_relative_jar_folder_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` on defaults has a relative data folder (.clickstream); Ivy wants absolute paths.
    Nothing is downloaded here: the repository does not answer, so the error must be that."""
    from clickstream.maven import JarsUnavailableError, resolve
    from clickstream.spark.session import kafka_connector

    monkeypatch.chdir(tmp_path)
    refused = r"http://127\.0\.0\.1:9/maven2/org/apache/\S+\.jar: .*Connection refused"
    with pytest.raises(JarsUnavailableError, match=refused):
        resolve(
            kafka_connector(),
            Path(".clickstream/jars"),
            java=java_executable(broker_settings(tmp_path)),
            repository="http://127.0.0.1:9/maven2/",
        )
