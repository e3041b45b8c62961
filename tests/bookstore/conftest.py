"""A real Apache Cassandra 5.0 node for the whole test session, and bookstore settings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickstream.kafka.admin import ensure_topics
from clickstream.settings import CassandraSettings, Settings
from tests.cassandra_node import CassandraNode
from tests.conftest import JARS_DIR
from tests.secure.certs import Certificates, make_certificates, pkcs12_keystore


@pytest.fixture(scope="session")
def cassandra_certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, the node's certificate (for 127.0.0.1), and a CA that did not sign it."""
    return make_certificates(tmp_path_factory.mktemp("cassandra-certs"))


@pytest.fixture(scope="session")
def cassandra(
    tmp_path_factory: pytest.TempPathFactory, cassandra_certificates: Certificates
) -> Iterator[CassandraNode]:
    """One Cassandra node (loopback, free ports, 512 MB heap), user cassandra/cassandra; its
    CQL port takes TLS connections (certificate of ``cassandra_certificates``) and plain ones."""
    folder = tmp_path_factory.mktemp("cassandra")
    keystore = pkcs12_keystore(cassandra_certificates.server, folder / "node.p12", "node-secret")
    with CassandraNode(folder, JARS_DIR, tls_keystore=(keystore, "node-secret")) as node:
        yield node


def cassandra_settings(node: CassandraNode, **changes: object) -> CassandraSettings:
    """Settings of ``node``, a keyspace of the test's own."""
    return CassandraSettings(
        contact_points=["127.0.0.1"],
        port=node.port,
        username="cassandra",
        password="cassandra",
        consistency="ONE",
        keyspace=f"bookstore_{uuid.uuid4().hex[:8]}",
        **changes,
    )


def bookstore_settings(settings: Settings, tmp_path: Path, **cassandra: object) -> Settings:
    """Settings with topics and a data folder of the test's own (and Cassandra when given)."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "bookstore": f"books-{tag}",
        "results": f"results-{tag}",
        "dead_letter": f"dead-{tag}",
    }
    ensure_topics(settings, list(names.values()), partitions=2)
    update: dict[str, object] = {
        "data_dir": tmp_path,
        "topics": settings.topics.model_copy(update=names),
    }
    if cassandra:
        update["cassandra"] = cassandra["cassandra"]
    return settings.model_copy(update=update)
