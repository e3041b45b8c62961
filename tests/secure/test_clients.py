"""Every kind of client over SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) and mutual TLS, on
a real broker; wrong credentials and untrusted certificates fail fast with one clear line."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import cast

import pytest

from clickstream.errors import KafkaAccessError
from clickstream.kafka.admin import describe_topics, ensure_topics, wait_for_cluster
from clickstream.kafka.clients import make_consumer, make_producer
from tests.conftest import cli_env
from tests.secure.conftest import USERS, SecureBroker

MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "mTLS"]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_admin_producer_consumer(
    secure_broker: SecureBroker, tmp_path: Path, mechanism: str
) -> None:
    settings = secure_broker.settings(tmp_path, mechanism)
    wait_for_cluster(settings)
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(settings, [topic], partitions=1) == [topic]
    producer = make_producer(settings)
    for i in range(5):
        producer.produce(topic, f"v{i}".encode(), key=b"k")
    assert producer.flush().delivered == 5
    consumer = make_consumer(settings, f"g-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 5 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            got.append(cast(bytes, msg.value()))
    consumer.close()
    assert got == [f"v{i}".encode() for i in range(5)]
    assert {t.name: t.records for t in describe_topics(settings)}[topic] == 5


@pytest.mark.parametrize(
    ("mechanism", "env", "expected"),
    [
        ("SCRAM-SHA-256", {"CLICKSTREAM_KAFKA_SASL_PASSWORD": "wrong"}, "sasl_password"),
        ("SCRAM-SHA-512", {"CLICKSTREAM_KAFKA_SASL_USERNAME": "nobody"}, "sasl_username"),
        ("PLAIN", {"CLICKSTREAM_KAFKA_SASL_PASSWORD": "wrong"}, "sasl_password"),
        ("SCRAM-SHA-256", {"CLICKSTREAM_KAFKA_SSL_CA_LOCATION": "ROGUE_CA"}, "ssl_ca_location"),
        ("mTLS", {"CLICKSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION": "ROGUE_CERT"}, ""),
    ],
)
def test_refused_fast_with_one_line(
    secure_broker: SecureBroker, tmp_path: Path, mechanism: str, env: dict[str, str], expected: str
) -> None:
    certs = secure_broker.certs
    swap = {"ROGUE_CA": str(certs.rogue_ca.cert), "ROGUE_CERT": str(certs.rogue_client.cert)}
    env = {k: swap.get(v, v) for k, v in env.items()}
    if "CLICKSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION" in env:
        env["CLICKSTREAM_KAFKA_SSL_KEY_LOCATION"] = str(certs.rogue_client.key)
    settings = secure_broker.settings(tmp_path, mechanism, CLICKSTREAM_KAFKA_TIMEOUT_S="60", **env)
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as caught:
        wait_for_cluster(settings)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert elapsed < 15, f"took {elapsed:.1f}s of a 60 s timeout"
    assert "\n" not in message
    assert "refused the connection" in message
    assert expected in message


def test_cli_says_one_line_on_a_wrong_password(secure_broker: SecureBroker, tmp_path: Path) -> None:
    settings = secure_broker.settings(tmp_path, "SCRAM-SHA-512")
    user, _ = USERS["SCRAM-SHA-512"]
    env = cli_env(
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=secure_broker.sasl_ssl,
        CLICKSTREAM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        CLICKSTREAM_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        CLICKSTREAM_KAFKA_SASL_USERNAME=user,
        CLICKSTREAM_KAFKA_SASL_PASSWORD="wrong",
        CLICKSTREAM_KAFKA_SSL_CA_LOCATION=str(settings.kafka.ssl_ca_location),
        CLICKSTREAM_KAFKA_TIMEOUT_S="60",
        CLICKSTREAM_DATA_DIR=str(tmp_path),
    )
    started = time.monotonic()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "clickstream"), "simulate", "users", "--count", "1"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert time.monotonic() - started < 20
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "refused the connection" in lines[0]
    assert "sasl_password" in lines[0]
