"""Bookstore settings, and Cassandra settings for the session's node (``cassandra``, in
tests/cassandra_fixtures.py, registered once by tests/conftest.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from clickstream.kafka.admin import ensure_topics
from clickstream.settings import CassandraSettings, Settings
from tests.cassandra_node import CassandraNode


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
