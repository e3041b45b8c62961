"""A real Apache Cassandra 5.0 node for the whole test session: registered once, by
tests/conftest.py, so the bookstore tests and the bookstore bench share it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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
