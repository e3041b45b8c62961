"""A real Apache Kafka broker with a SASL_SSL listener (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)
and a mutual-TLS listener, its certificates made by the test, its SCRAM users created through
the admin API of its PLAINTEXT listener."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from clickstream.broker.embedded import EmbeddedBroker, free_port
from clickstream.broker.node import Node
from clickstream.settings import Settings, load_settings
from tests.conftest import JARS_DIR, broker_settings
from tests.secure.certs import Certificates, make_certificates

USERS = {
    "SCRAM-SHA-256": ("scram256", "s3cret-256"),
    "SCRAM-SHA-512": ("scram512", "s3cret-512"),
    "PLAIN": ("plainuser", "s3cret-plain"),
}


@dataclass
class SecureBroker:
    broker: EmbeddedBroker
    certs: Certificates
    sasl_ssl: str
    """bootstrap of the SASL_SSL listener"""
    mtls: str
    """bootstrap of the SSL listener that requires a client certificate"""

    def settings(self, data_dir: Path, mechanism: str = "SCRAM-SHA-256", **env: str) -> Settings:
        """Settings of a client of the SASL_SSL listener (``mechanism``), or of the mutual-TLS
        listener with ``mechanism="mTLS"``; ``env`` overrides (a wrong password...)."""
        base = {
            "CLICKSTREAM_DATA_DIR": str(data_dir),
            "CLICKSTREAM_JARS_DIR": str(JARS_DIR),
            "CLICKSTREAM_KAFKA_SSL_CA_LOCATION": str(self.certs.ca.cert),
            "CLICKSTREAM_KAFKA_TIMEOUT_S": "10",
        }
        if mechanism == "mTLS":
            base |= {
                "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.mtls,
                "CLICKSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
                "CLICKSTREAM_KAFKA_SSL_CERTIFICATE_LOCATION": str(self.certs.client.cert),
                "CLICKSTREAM_KAFKA_SSL_KEY_LOCATION": str(self.certs.client.key),
            }
        else:
            user, password = USERS[mechanism]
            base |= {
                "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.sasl_ssl,
                "CLICKSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "CLICKSTREAM_KAFKA_SASL_MECHANISM": mechanism,
                "CLICKSTREAM_KAFKA_SASL_USERNAME": user,
                "CLICKSTREAM_KAFKA_SASL_PASSWORD": password,
            }
        return load_settings(environ={**base, **env})


def secure_properties(host: str, ports: dict[str, int], certs: Certificates) -> dict[str, str]:
    plain_users = " ".join(f'user_{u}="{p}"' for m, (u, p) in USERS.items() if m == "PLAIN")
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "listeners": ",".join(f"{name}://{host}:{port}" for name, port in ports.items()),
        "advertised.listeners": ",".join(
            f"{name}://{host}:{port}" for name, port in ports.items() if name != "CONTROLLER"
        ),
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL"
        ),
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        ),
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(certs.server.combined),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(certs.ca.cert),
        "listener.name.ssl.ssl.client.auth": "required",
    }


def create_scram_users(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    upserts: list[Any] = [  # the client takes any alteration; upserts are one kind
        UserScramCredentialUpsertion(
            user,
            ScramCredentialInfo(getattr(ScramMechanism, mech.replace("-", "_")), 4096),
            pw.encode(),
        )
        for mech, (user, pw) in USERS.items()
        if mech.startswith("SCRAM")
    ]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(timeout=30)


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    data_dir = tmp_path_factory.mktemp("secure-broker")
    certs = make_certificates(data_dir / "certs")
    settings = broker_settings(data_dir)
    host = settings.broker.host
    ports = {name: free_port(host) for name in ("PLAINTEXT", "SASL_SSL", "SSL", "CONTROLLER")}
    node = Node(
        node_id=1,
        host=host,
        port=ports["PLAINTEXT"],
        controller_port=ports["CONTROLLER"],
        log_dir=settings.broker_dir,
        voters={1: (host, ports["CONTROLLER"])},
        partitions=2,
        extra=secure_properties(host, ports, certs),
    )
    with EmbeddedBroker(settings, data_dir / "broker.log", node=node) as broker:
        create_scram_users(broker.bootstrap)
        yield SecureBroker(broker, certs, f"{host}:{ports['SASL_SSL']}", f"{host}:{ports['SSL']}")
