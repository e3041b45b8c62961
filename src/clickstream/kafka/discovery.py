"""Which Kafka a command talks to: the configured cluster, or the embedded broker at its
configured address (started elsewhere with ``clickstream broker`` or ``clickstream up``)."""

from __future__ import annotations

import contextlib

from clickstream.errors import ClickstreamError, KafkaUnavailableError
from clickstream.kafka.admin import wait_for_cluster
from clickstream.settings import Settings


def client_settings(settings: Settings) -> Settings:
    """``settings`` pointed at the Kafka to use. A configured cluster is returned as it is,
    after a wrong password or an untrusted certificate stopped us in one line (a cluster that
    does not answer yet is left to the caller, which may wait for it). Without one, the embedded
    broker's configured address, which must answer within 3 s."""
    if settings.kafka.bootstrap_servers:
        if settings.kafka.security_protocol != "PLAINTEXT":
            with contextlib.suppress(KafkaUnavailableError):
                wait_for_cluster(settings, timeout=min(5.0, settings.kafka.timeout_s))
        return settings
    broker = settings.broker
    if broker.port == 0:
        raise ClickstreamError(
            "no Kafka address: set CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS to the broker's address"
        )
    found = settings.with_bootstrap(f"{broker.host}:{broker.port}")
    try:
        wait_for_cluster(found, timeout=min(3.0, found.kafka.timeout_s))
    except KafkaUnavailableError:
        raise KafkaUnavailableError(
            f"no broker at {broker.host}:{broker.port}: start one with `clickstream broker` "
            "(or `clickstream up`), or set CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    return found
