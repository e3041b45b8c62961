"""Events into Apache Cassandra (``pip install 'clickstream[cassandra]'``).

The seed's table, created with its keyspace when missing (``cassandra.replication``)::

    CREATE TABLE bookstore.events (event_id uuid PRIMARY KEY, event_type text,
                                   event_time timestamp, user_id text, book_id text)

An INSERT in Cassandra is an upsert on the primary key: writing a micro-batch again (a replay
after a crash) rewrites the same rows with the same values, and adds none. Each micro-batch is
collected to the driver as Arrow (``spark.max_offsets_per_trigger`` bounds it) and written with
one prepared statement, ``cassandra.concurrency`` inserts in flight at once
(``execute_concurrent``). Inserts that fail are tried again, ``cassandra.retries`` times with
backoff doubling from ``cassandra.retry_backoff_s``; then the batch fails with an error naming
the cluster and the cause, the query stops, and its checkpoint makes the next start write the
batch again.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clickstream.errors import MissingExtraError, TerminalError
from clickstream.settings import CassandraSettings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

COLUMNS = ("event_id", "event_type", "event_time", "user_id", "book_id")


class CassandraWriteError(TerminalError):
    """Cassandra did not take a batch after every retry."""


def _driver() -> Any:
    try:
        import cassandra.cluster
    except ImportError:
        raise MissingExtraError("cassandra", "cassandra-driver") from None
    return cassandra


class CassandraEvents:
    """A :class:`~clickstream.sinks.base.Sink` of events keyed by ``event_id`` (a uuid)."""

    def __init__(self, settings: CassandraSettings) -> None:
        self.settings = settings
        self.name = f"cassandra:{settings.keyspace}.{settings.table}"
        self.where = ",".join(f"{host}:{settings.port}" for host in settings.contact_points)
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._session: Any = None
        self._insert: Any = None

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> None:
        driver = _driver()
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        s = self.settings
        auth = None
        if s.username is not None:
            password = s.password.get_secret_value() if s.password else ""
            auth = PlainTextAuthProvider(username=s.username, password=password)
        tls = None
        if s.tls:
            tls = ssl.create_default_context(cafile=str(s.tls_ca_file) if s.tls_ca_file else None)
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=s.local_dc)),
            consistency_level=getattr(ConsistencyLevel, s.consistency),
            request_timeout=s.timeout_s,
        )
        cluster = Cluster(
            s.contact_points,
            port=s.port,
            auth_provider=auth,
            ssl_context=tls,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=s.timeout_s,
            control_connection_timeout=s.timeout_s,
            protocol_version=driver.ProtocolVersion.V5,
        )
        try:
            session = cluster.connect()
            self._ensure_table(session)
            insert = session.prepare(
                f"INSERT INTO {s.keyspace}.{s.table} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?)"
            )
        except Exception:
            cluster.shutdown()
            raise
        self._cluster, self._session, self._insert = cluster, session, insert

    def _ensure_table(self, session: Any) -> None:
        s = self.settings
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {s.keyspace} WITH replication = {s.replication}"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {s.keyspace}.{s.table} (event_id uuid PRIMARY KEY, "
            "event_type text, event_time timestamp, user_id text, book_id text)"
        )

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
            self._cluster = self._session = self._insert = None

    # -- writing ------------------------------------------------------------------------------

    def write(self, batch: DataFrame, batch_id: int) -> int:
        rows = batch.select(*COLUMNS).toArrow()
        if rows.num_rows == 0:
            return 0
        return self.insert(rows_to_params(rows.to_pydict()))

    def insert(self, params: Sequence[tuple[Any, ...]]) -> int:
        """Upsert rows ``(event_id uuid, event_type, event_time datetime, user_id, book_id)``,
        retrying failed ones with backoff; raise :class:`CassandraWriteError` when they still
        fail."""
        from cassandra.concurrent import execute_concurrent_with_args

        s = self.settings
        pending = list(params)
        delay = s.retry_backoff_s
        cause = ""
        for attempt in range(s.retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            with self._lock:
                try:
                    if self._session is None:
                        self._connect()
                    results = execute_concurrent_with_args(
                        self._session,
                        self._insert,
                        pending,
                        concurrency=s.concurrency,
                        raise_on_first_error=False,
                    )
                except Exception as exc:  # no connection at all: try again
                    cause = _describe(exc)
                    self._drop_connection()
                    continue
            failed = [row for row, (ok, _) in zip(pending, results, strict=True) if not ok]
            if not failed:
                return len(params)
            cause = _describe(next(r for ok, r in results if not ok))
            pending = failed
        raise CassandraWriteError(
            f"cannot write {len(pending)} events to Cassandra {self.name} at {self.where} after "
            f"{s.retries + 1} attempts: {cause}; the job stops, and writes them again when "
            "started once Cassandra answers"
        )

    def _drop_connection(self) -> None:
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.shutdown()
        self._cluster = self._session = self._insert = None


def rows_to_params(columns: dict[str, list[Any]]) -> list[tuple[Any, ...]]:
    """Arrow columns (``event_time`` in epoch ms or a timestamp) -> insert parameters."""
    times = [
        t if isinstance(t, datetime) else datetime.fromtimestamp(t / 1000, UTC)
        for t in columns["event_time"]
    ]
    return [
        (uuid.UUID(i), kind, when, user, book)
        for i, kind, when, user, book in zip(
            columns["event_id"],
            columns["event_type"],
            times,
            columns["user_id"],
            columns["book_id"],
            strict=True,
        )
    ]


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
