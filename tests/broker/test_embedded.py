"""The embedded broker: started by `clickstream broker`, gone after SIGTERM or a killed parent."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from clickstream.broker.embedded import EmbeddedBroker, check_port_free
from clickstream.errors import BrokerError
from clickstream.settings import BrokerSettings
from tests.conftest import alive, child_pids, cli_env

pytestmark = pytest.mark.slow


def start_cli_broker() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "clickstream", "broker", "--port", "0"],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "broker listening on 127.0.0.1:" in line, line + process.stderr.read()
    return process, line.split()[3]


def wait_gone(pids: set[int], timeout: float = 15) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {pid for pid in pids if alive(pid)}
        if not left:
            return left
        time.sleep(0.1)
    return {pid for pid in pids if alive(pid)}


def test_sigterm_stops_broker_and_children() -> None:
    process, _ = start_cli_broker()
    children = child_pids(process.pid)
    assert len(children) == 2  # the watchdog and the broker
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert wait_gone(children) == set()
    assert process.stdout is not None
    assert "broker stopped" in process.stdout.read()


def test_killed_parent_leaves_no_orphan() -> None:
    process, _ = start_cli_broker()
    children = child_pids(process.pid)
    assert len(children) == 2
    process.kill()
    process.wait(10)
    assert wait_gone(children) == set()


def test_answers_metadata_and_stops(broker: EmbeddedBroker) -> None:
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=5)
    assert metadata.brokers
    assert broker.running()


def test_port_in_use_is_a_clear_error(broker: EmbeddedBroker) -> None:
    with pytest.raises(BrokerError, match=f"port {broker.port} on 127.0.0.1 is in use"):
        check_port_free("127.0.0.1", broker.port)
    second = EmbeddedBroker(BrokerSettings(port=broker.port))
    with pytest.raises(BrokerError, match="CLICKSTREAM_BROKER_PORT=0"):
        second.start()
    assert not second.running()
