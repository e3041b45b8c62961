"""Events into Apache Cassandra (``pip install 'clickstream[cassandra]'``).

The seed's table, created with its keyspace when missing (``cassandra.replication``)::

    CREATE TABLE bookstore.events (event_id uuid PRIMARY KEY, event_type text,
                                   event_time timestamp, user_id text, book_id text)

An INSERT in Cassandra is an upsert on the primary key: writing a micro-batch again (a replay
after a crash) rewrites the same rows with the same values, and adds none.

The driver creates the keyspace and table once, before the first micro-batch; the events never
pass through it. Each Spark task writes its own partition (``mapInArrow``) through a session
of its Python worker (opened on first use, then kept for the worker's next tasks), with one
prepared statement and ``cassandra.concurrency`` inserts in flight (``execute_concurrent``).
Inserts that fail are tried again, ``cassandra.retries`` times with backoff doubling from
``cassandra.retry_backoff_s``. Each task returns one small row (rows written, rows not written
and why); the driver adds them up, and when any row was not written the batch fails with an
error naming the cluster and the cause, the query stops, and its checkpoint makes the next
start write the batch again.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clickstream.errors import MissingExtraError, TerminalError
from clickstream.settings import CassandraSettings, Settings
from clickstream.sinks.base import BaseSink, Replay

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

COLUMNS = ("event_id", "event_type", "event_time", "user_id", "book_id")
RESULT = "written long, failed long, error string"


class CassandraWriteError(TerminalError):
    """Cassandra did not take a batch after every retry."""


class CassandraSetupError(TerminalError):
    """The settings do not fit the cluster: trying again would not help."""


def _driver() -> Any:
    try:
        import cassandra.cluster
    except ImportError:
        raise MissingExtraError("cassandra", "cassandra-driver") from None
    return cassandra


@dataclass(frozen=True)
class Target:
    """The settings a writer needs, as plain values: pickled into every Spark task, and the key
    of the sessions a Python worker keeps."""

    contact_points: tuple[str, ...]
    port: int
    username: str | None
    password: str | None
    tls: bool
    tls_ca_file: str | None
    local_dc: str | None
    consistency: str
    keyspace: str
    table: str
    replication: str
    concurrency: int
    retries: int
    retry_backoff_s: float
    timeout_s: float

    @classmethod
    def of(cls, s: CassandraSettings) -> Target:
        return cls(
            contact_points=tuple(s.contact_points),
            port=s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            tls=s.tls,
            tls_ca_file=str(s.tls_ca_file) if s.tls_ca_file else None,
            local_dc=s.local_dc,
            consistency=s.consistency,
            keyspace=s.keyspace,
            table=s.table,
            replication=s.replication,
            concurrency=s.concurrency,
            retries=s.retries,
            retry_backoff_s=s.retry_backoff_s,
            timeout_s=s.timeout_s,
        )

    @property
    def where(self) -> str:
        return ",".join(f"{host}:{self.port}" for host in self.contact_points)

    def __repr__(self) -> str:  # never print the password
        return f"Target({self.keyspace}.{self.table} at {self.where})"


def connect(t: Target) -> tuple[Any, Any]:
    """A cluster and a session (the caller shuts the cluster down)."""
    driver = _driver()
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    auth = None
    if t.username is not None:
        auth = PlainTextAuthProvider(username=t.username, password=t.password or "")
    tls = ssl.create_default_context(cafile=t.tls_ca_file) if t.tls else None
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=t.local_dc)),
        consistency_level=getattr(ConsistencyLevel, t.consistency),
        request_timeout=t.timeout_s,
    )
    cluster = Cluster(
        list(t.contact_points),
        port=t.port,
        auth_provider=auth,
        ssl_context=tls,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=t.timeout_s,
        control_connection_timeout=t.timeout_s,
        protocol_version=driver.ProtocolVersion.V5,
    )
    try:
        return cluster, cluster.connect()
    except Exception:
        try:
            check_datacenter(t, cluster)  # the likelier cause, when the cluster was reached
        finally:
            cluster.shutdown()
        raise


def ensure_table(t: Target) -> None:
    """Create the keyspace and table when missing (on the driver, before the first batch)."""
    cluster, session = connect(t)  # a local_dc the cluster lacks fails here (no node to use)
    try:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {t.keyspace} WITH replication = {t.replication}"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {t.keyspace}.{t.table} (event_id uuid PRIMARY KEY, "
            "event_type text, event_time timestamp, user_id text, book_id text)"
        )
    finally:
        cluster.shutdown()


def check_datacenter(t: Target, cluster: Any) -> None:
    """After a failed connect: a ``local_dc`` the cluster does not have leaves every node
    ignored, so the session finds no host; say so, instead of "no host available"."""
    if t.local_dc is None:
        return
    known = sorted({h.datacenter for h in cluster.metadata.all_hosts() if h.datacenter})
    if known and t.local_dc not in known:
        raise CassandraSetupError(
            f"cassandra.local_dc is {t.local_dc!r}, but the cluster at {t.where} has the "
            f"datacenter(s) {', '.join(known)}: set "
            "CLICKSTREAM_CASSANDRA_LOCAL_DC to one of them"
        )


class CassandraEvents(BaseSink):
    """Events keyed by ``event_id`` (a uuid), written from the executors (one session per
    Python worker); a replayed batch writes the same rows again (an upsert in Cassandra)."""

    replay = Replay.REPLACES

    def __init__(self, settings: CassandraSettings) -> None:
        self.settings = settings
        self.target = Target.of(settings)
        self.name = f"cassandra:{settings.keyspace}.{settings.table}"
        self.where = self.target.where
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CassandraEvents:
        """The table of ``cassandra.*``."""
        return cls(settings.cassandra)

    def write_frame(self, frame: DataFrame, batch_id: int) -> int:
        rows = frame.select(*COLUMNS)
        if not self._ready:
            cause = retrying(self.target, lambda: ensure_table(self.target))
            if cause:
                raise self.error(rows.count(), cause)
            self._ready = True
        results = rows.mapInArrow(partition_writer(self.target), RESULT).collect()
        written = sum(int(r.written) for r in results)
        failed = sum(int(r.failed) for r in results)
        if failed:
            raise self.error(failed, next(r.error for r in results if r.failed))
        return written

    def error(self, count: int, cause: str) -> CassandraWriteError:
        return CassandraWriteError(
            f"cannot write {count} events to Cassandra {self.name} at {self.where} after "
            f"{self.settings.retries + 1} attempts: {cause}; the job stops, and writes them "
            "again when started once Cassandra answers"
        )

    def close(self) -> None:
        """Shut down the sessions this process keeps (the executors' go with their workers)."""
        forget(self.target)


# -- on the executors ---------------------------------------------------------------------------

_sessions: dict[Target, tuple[Any, Any, Any]] = {}
_lock = threading.Lock()


def _session(t: Target) -> tuple[Any, Any]:
    """This process's session and prepared INSERT for ``t``, opened on first use."""
    with _lock:
        if t not in _sessions:
            cluster, session = connect(t)
            try:
                insert = session.prepare(
                    f"INSERT INTO {t.keyspace}.{t.table} ({', '.join(COLUMNS)}) "
                    "VALUES (?, ?, ?, ?, ?)"
                )
            except Exception:
                cluster.shutdown()
                raise
            _sessions[t] = (cluster, session, insert)
        _, session, insert = _sessions[t]
        return session, insert


def forget(t: Target) -> None:
    with _lock:
        cluster = _sessions.pop(t, (None,))[0]
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.shutdown()


def retrying(t: Target, attempt: Callable[[], object]) -> str:
    """Run ``attempt`` up to ``retries + 1`` times with backoff; "" once it worked, else why
    the last attempt failed."""
    delay, cause = t.retry_backoff_s, ""
    for n in range(t.retries + 1):
        if n:
            time.sleep(delay)
            delay *= 2
        try:
            attempt()
            return ""
        except CassandraSetupError:
            raise
        except Exception as exc:
            cause = _describe(exc)
    return cause


def write_rows(t: Target, params: Sequence[tuple[Any, ...]]) -> tuple[int, str]:
    """Upsert ``params`` with retries; return how many rows were not written, and why."""
    from cassandra.concurrent import execute_concurrent_with_args

    pending = list(params)
    delay, cause = t.retry_backoff_s, ""
    for attempt in range(t.retries + 1):
        if not pending:
            break
        if attempt:
            time.sleep(delay)
            delay *= 2
        try:
            session, insert = _session(t)
            results = execute_concurrent_with_args(
                session, insert, pending, concurrency=t.concurrency, raise_on_first_error=False
            )
        except Exception as exc:  # no connection at all: try again with a new one
            cause = _describe(exc)
            forget(t)
            continue
        failed = [row for row, (ok, _) in zip(pending, results, strict=True) if not ok]
        if failed:
            error = next(r for ok, r in results if not ok)
            cause = _describe(error)
            if _unreachable(error):
                # The session marks a host that stopped answering as down, and tries it again
                # only after a backoff of up to minutes: a session kept by a Python worker
                # across an outage would go on refusing once Cassandra is back. A new one asks.
                forget(t)
        pending = failed
    return len(pending), cause


def partition_writer(t: Target) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function writing one partition: one row out per task."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        written = failed = 0
        cause = ""
        for batch in batches:
            if failed:  # Cassandra is not answering: count the rest, do not try them
                failed += batch.num_rows
                continue
            params = rows_to_params(batch.to_pydict())
            lost, why = write_rows(t, params)
            written += len(params) - lost
            if lost:
                failed, cause = lost, why
        if written or failed:
            yield pa.RecordBatch.from_pydict(
                {"written": [written], "failed": [failed], "error": [cause]}
            )

    return write


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


def _unreachable(exc: BaseException) -> bool:
    """No host took the request, or the connection broke (not a refusal by Cassandra)."""
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException

    return isinstance(exc, NoHostAvailable | ConnectionException)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
