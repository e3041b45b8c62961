"""The one place that turns :class:`~clickstream.settings.Settings` into client configuration.

librdkafka configuration (``confluent-kafka``) for our own producers and consumers, and the Java
client options (``kafka.*``) for Spark's native Kafka source when its connector is present.
"""

from __future__ import annotations

import logging
from typing import Any

from clickstream.errors import ConfigError
from clickstream.settings import KafkaSettings, Settings


def bootstrap(settings: Settings) -> str:
    """The bootstrap servers; raises if the embedded broker has not been started yet."""
    if settings.kafka.bootstrap_servers is None:
        raise ConfigError(
            "kafka.bootstrap_servers is not set: start the embedded broker first "
            "(clickstream broker) or set CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"
        )
    return settings.kafka.bootstrap_servers


#: librdkafka's own log lines go here instead of stderr (the CLI shows them with --debug).
LOGGER = logging.getLogger("clickstream.kafka")


def client_config(settings: Settings) -> dict[str, Any]:
    """Settings shared by every librdkafka client: servers, identity, security."""
    kafka = settings.kafka
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap(settings),
        "client.id": kafka.client_id,
        "security.protocol": kafka.security_protocol,
        "socket.keepalive.enable": True,
    }
    config.update(_security(kafka))
    return config


def _security(kafka: KafkaSettings) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if kafka.security_protocol.startswith("SASL"):
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username
        config["sasl.password"] = (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        )
    if kafka.security_protocol.endswith("SSL"):
        optional = {
            "ssl.ca.location": kafka.ssl_ca_location,
            "ssl.certificate.location": kafka.ssl_certificate_location,
            "ssl.key.location": kafka.ssl_key_location,
            "ssl.key.password": (
                kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
            ),
        }
        config.update({key: str(value) for key, value in optional.items() if value is not None})
    return config


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """A safe producer: every write acknowledged by all replicas, idempotent, compressed."""
    config = client_config(settings)
    config.update(
        {
            "logger": LOGGER,
            "acks": "all",
            "enable.idempotence": True,
            "compression.type": "lz4",
            "linger.ms": 5,
            "message.timeout.ms": int(settings.kafka.timeout_s * 1000) * 3,
        }
    )
    config.update(overrides)
    return config


def consumer_config(
    settings: Settings, group_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    """A consumer that starts at the earliest offset and never commits offsets by itself."""
    config = client_config(settings)
    config.update(
        {
            "logger": LOGGER,
            "group.id": group_id or f"{settings.kafka.client_id}-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.kafka.session_timeout_ms,
        }
    )
    config.update(overrides)
    return config


def java_client_options(settings: Settings) -> dict[str, str]:
    """Options for Spark's native ``kafka`` source/sink (Java client names, ``kafka.`` prefix)."""
    kafka = settings.kafka
    options = {
        "kafka.bootstrap.servers": bootstrap(settings),
        "kafka.security.protocol": kafka.security_protocol,
        "kafka.client.id": kafka.client_id,
    }
    if kafka.security_protocol.startswith("SASL"):
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if kafka.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        options["kafka.sasl.mechanism"] = str(kafka.sasl_mechanism)
        options["kafka.sasl.jaas.config"] = (
            f'{module} required username="{kafka.sasl_username}" password="{password}";'
        )
    if kafka.security_protocol.endswith("SSL"):
        options.update(_java_ssl(kafka))
    return options


def _java_ssl(kafka: KafkaSettings) -> dict[str, str]:
    """The Java client's TLS options from the same PEM files librdkafka reads: the CA as a PEM
    truststore, and for mutual TLS the client's certificate chain and key inline (a PEM
    keystore; the Java client takes a PKCS#8 key, encrypted when ``ssl_key_password`` is set).
    """
    options: dict[str, str] = {}
    if kafka.ssl_ca_location:
        options["kafka.ssl.truststore.type"] = "PEM"
        options["kafka.ssl.truststore.location"] = str(kafka.ssl_ca_location)
    if kafka.ssl_certificate_location and kafka.ssl_key_location:
        try:
            chain = kafka.ssl_certificate_location.read_text()
            key = kafka.ssl_key_location.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the client certificate or key: {exc}") from None
        options["kafka.ssl.keystore.type"] = "PEM"
        options["kafka.ssl.keystore.certificate.chain"] = chain
        options["kafka.ssl.keystore.key"] = key
        if kafka.ssl_key_password:
            options["kafka.ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    return options
