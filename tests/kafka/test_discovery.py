"""Which Kafka a command talks to, against the real embedded broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickstream.broker.embedded import EmbeddedBroker, free_port
from clickstream.errors import ClickstreamError, KafkaUnavailableError
from clickstream.kafka.discovery import client_settings
from tests.conftest import broker_settings


def test_the_embedded_broker_is_found_at_its_configured_port(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    configured = broker_settings(tmp_path, CLICKSTREAM_BROKER_PORT=str(broker.port))
    assert configured.kafka.bootstrap_servers is None
    found = client_settings(configured)
    assert found.kafka.bootstrap_servers == f"127.0.0.1:{broker.port}"
    assert found.data_dir == configured.data_dir


def test_a_configured_cluster_is_used_as_it_is(tmp_path: Path) -> None:
    nobody = f"127.0.0.1:{free_port()}"
    configured = broker_settings(tmp_path, CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=nobody)
    assert client_settings(configured) is configured  # not asked: the command may wait for it


def test_no_broker_at_the_configured_port_says_what_to_do(tmp_path: Path) -> None:
    port = free_port()
    configured = broker_settings(tmp_path, CLICKSTREAM_BROKER_PORT=str(port))
    with pytest.raises(KafkaUnavailableError) as raised:
        client_settings(configured)
    assert str(raised.value) == (
        f"no broker at 127.0.0.1:{port}: start one with `clickstream broker` (or `clickstream "
        "up`), or set CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"
    )


def test_a_broker_on_any_free_port_cannot_be_found(tmp_path: Path) -> None:
    with pytest.raises(ClickstreamError, match="no Kafka address: set CLICKSTREAM_KAFKA_BOOTSTRAP"):
        client_settings(broker_settings(tmp_path))  # broker.port = 0
