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


@pytest.fixture(scope="session")
def cassandra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraNode]:
    """One Cassandra node (loopback, free ports, 512 MB heap), user cassandra/cassandra."""
    with CassandraNode(tmp_path_factory.mktemp("cassandra"), JARS_DIR) as node:
        yield node


def cassandra_settings(node: CassandraNode, **changes: object) -> CassandraSettings:
    """Settings of ``node``, a keyspace of the test's own."""
    return CassandraSettings(
        contact_points=["127.0.0.1"],
        port=node.port,
        username="cassandra",
        password="cassandra",  # type: ignore[arg-type]
        consistency="ONE",
        keyspace=f"bookstore_{uuid.uuid4().hex[:8]}",
        **changes,  # type: ignore[arg-type]
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
