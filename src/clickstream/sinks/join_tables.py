"""The warehouse tables of the joins job (DuckDB): facts and a dimension, joined by views.

The job hands each micro-batch over as aggregates (:data:`AGGREGATES` rows, made on the
executors): events counted per (``user_id``, ``event``), and the newest record of each user.
They are added in one transaction, once: ``join_batches`` records (query, checkpoint id, batch
id) in it, so a batch Spark runs again after a crash adds nothing.

* ``join_event_counts(user_id, event, count)``: every valid page event, counted per user and
  type, upserted with addition. Nothing is ever late: an event counts whenever it comes.
* ``join_users(user_id, name, email, event_timestamp, ...)``: each user's newest details (by
  ``event_timestamp``; a tie goes to the later record of the user's partition).

Both are upserted by ``MERGE`` (a hash join with the batch, whose aggregates hold one row per
key) and keep no key index: DuckDB updated one on each insert and wrote it at each commit,
two thirds of a large batch's transaction.
* ``join_totals(name, value)``: the number of events whose user has not arrived, kept so the
  dashboard's figure needs no full scan.
* the views ``user_event_counts(user_id, name, email, event_count)`` (known users only, as the
  seed's inner merge), ``event_type_counts(event, count)`` (every event by type, as the seed
  groups them) and ``unmatched_event_counts(user_id, event_count)`` (events whose user has not
  arrived). A user who arrives after their events, or signed up a year before them, is joined
  to all of them: the join is at query time, over all time.

After a batch, the totals of the users and event types it touched are read (the same joins as
the views, restricted to what the batch touched) for the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clickstream.errors import ConfigError
from clickstream.sinks.base import BaseSink, Replay
from clickstream.sinks.duckdb_table import writing

COUNT, USER = 0, 1
AGGREGATES = pa.schema(
    [
        ("kind", pa.int32()),
        ("user_id", pa.string()),
        ("event", pa.string()),
        ("count", pa.int64()),
        ("name", pa.string()),
        ("email", pa.string()),
        ("time", pa.int64()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
    ]
)
"""What the joins job writes: ``COUNT`` rows (``user_id``, ``event``, ``count``) and ``USER``
rows (``user_id``, ``name``, ``email``, ``time`` in epoch ms, and the record's ``partition``
and ``offset``)."""

TABLES = ("join_users", "join_event_counts", "join_totals", "join_batches")
VIEWS = ("user_event_counts", "event_type_counts", "unmatched_event_counts")
OLD_TABLES = ("join_user_totals", "join_matched_keys", "unmatched_events", "event_type_counts")
"""The tables of the stream-stream join version (``event_type_counts`` is a view now)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS join_users (
    user_id VARCHAR, name VARCHAR, email VARCHAR, event_timestamp TIMESTAMPTZ,
    source_partition INTEGER, source_offset BIGINT);
CREATE TABLE IF NOT EXISTS join_event_counts (user_id VARCHAR, event VARCHAR, count BIGINT);
CREATE TABLE IF NOT EXISTS join_totals (name VARCHAR PRIMARY KEY, value BIGINT);
CREATE TABLE IF NOT EXISTS join_batches (
    query VARCHAR, checkpoint_id VARCHAR, batch_id BIGINT,
    PRIMARY KEY (query, checkpoint_id, batch_id));
CREATE OR REPLACE VIEW user_event_counts AS
    SELECT c.user_id, u.name, u.email, sum(c.count)::BIGINT AS event_count
    FROM join_event_counts c JOIN join_users u USING (user_id)
    GROUP BY c.user_id, u.name, u.email;
CREATE OR REPLACE VIEW event_type_counts AS
    SELECT event, sum(count)::BIGINT AS count FROM join_event_counts GROUP BY event;
CREATE OR REPLACE VIEW unmatched_event_counts AS
    SELECT c.user_id, sum(c.count)::BIGINT AS event_count
    FROM join_event_counts c ANTI JOIN join_users u USING (user_id)
    GROUP BY c.user_id;
"""

User = tuple[str, str | None, str | None]
"""(user_id, name, email)."""
USER_TOTALS = pa.schema(
    [
        ("user_id", pa.string()),
        ("name", pa.string()),
        ("email", pa.string()),
        ("event_count", pa.int64()),
    ]
)
"""A known user's newest details and events (the rows of ``user_event_counts``)."""


def user_totals_table(rows: list[tuple[User, int]]) -> pa.Table:
    """``(user, events)`` pairs as :data:`USER_TOTALS` rows."""
    users = [user for user, _ in rows]
    return pa.table(
        [
            [u[0] for u in users],
            [u[1] for u in users],
            [u[2] for u in users],
            [n for _, n in rows],
        ],
        schema=USER_TOTALS,
    )


@dataclass
class BatchChange:
    """What one micro-batch changed, read from the views, for the result topic."""

    renamed: list[tuple[User, User, int]] = field(default_factory=list)
    """(before, now, events) of each user with events whose name or email changed."""
    user_totals: pa.Table = field(default_factory=USER_TOTALS.empty_table)
    """Each known user the batch touched, with the newest details (:data:`USER_TOTALS`): tens
    of thousands in a large batch, so kept as Arrow columns to the result topic."""
    event_types: dict[str, int] = field(default_factory=dict)
    """The new totals of the event types the batch counted."""
    unmatched: int | None = None
    """Events whose user has not arrived, when the batch changed that number."""


class JoinTables(BaseSink):
    """The joins' aggregates (:data:`AGGREGATES`) added to the tables, one transaction per
    batch; what a batch changed goes to ``on_change`` before the commit (the job sends the new
    totals to the result topic meanwhile). Rows on the driver only: the job reduces its
    micro-batch on the executors first."""

    replay = Replay.REPLACES
    name = "duckdb:joins"

    def __init__(
        self,
        path: Path,
        *,
        query: str,
        checkpoint_id: Callable[[], str],
        on_change: Callable[[BatchChange], None],
        lock_timeout_s: float = 30.0,
    ) -> None:
        self.path = path
        self.query = query
        self.checkpoint_id = checkpoint_id
        """The query's id (batch ids count from 0 again in a new checkpoint)."""
        self.on_change = on_change
        self.lock_timeout_s = lock_timeout_s
        self._ready = False

    def write_frame(self, frame: Any, batch_id: int) -> int:
        raise ConfigError(f"{self.name} takes the joins' aggregates as Arrow rows, not a batch")

    def write_table(self, rows: pa.Table, batch_id: int) -> int:
        if not rows.num_rows:
            return 0
        kind = rows["kind"]
        counts = rows.filter(pc.equal(kind, COUNT)).select(["user_id", "event", "count"])
        users = rows.filter(pc.equal(kind, USER))
        users = pa.table(
            {
                "user_id": users["user_id"],
                "name": users["name"],
                "email": users["email"],
                "event_timestamp": pc.cast(users["time"], pa.timestamp("ms", tz="UTC")),
                "source_partition": users["partition"],
                "source_offset": users["offset"],
            }
        )
        self._add_batch(batch_id, counts=counts, users=users)
        return int(rows.num_rows)

    def _add_batch(self, batch_id: int, *, counts: pa.Table, users: pa.Table) -> None:
        """Add one micro-batch, once per (query, checkpoint, batch), and hand what it changed
        to ``on_change`` just before the commit, which it may overlap (a batch whose commit
        fails is run again, and changes the same). ``counts``: ``user_id, event, count``;
        ``users``: the columns of ``join_users`` (one row per user)."""
        checkpoint_id = self.checkpoint_id()
        with writing(self.path, self.lock_timeout_s) as con:
            if not self._ready:
                self._create(con)
            con.execute("BEGIN TRANSACTION")
            try:
                key = [self.query, checkpoint_id, batch_id]
                seen = con.execute(
                    "SELECT 1 FROM join_batches "
                    "WHERE query = ? AND checkpoint_id = ? AND batch_id = ?",
                    key,
                ).fetchone()
                if seen:  # added before a restart: nothing changes
                    con.execute("ROLLBACK")
                    return
                con.execute("INSERT INTO join_batches VALUES (?, ?, ?)", key)
                self.on_change(_add(con, counts, users))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _create(self, con: Any) -> None:
        old = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name IN "
                f"({', '.join('?' * len(OLD_TABLES))})",
                list(OLD_TABLES),
            ).fetchall()
        }
        if old:
            raise ConfigError(
                f"the warehouse {self.path} holds the joins tables of an earlier clickstream "
                f"version ({', '.join(sorted(old))}), which joined streams within a time bound; "
                "this one counts events per user and joins at query time. Drop them to count "
                'again: clickstream sql "DROP TABLE '
                + "; DROP TABLE ".join(sorted(old | {"join_users", "join_batches"}))
                + '"'
            )
        con.execute(SCHEMA)
        self._ready = True


def _add(con: Any, counts: pa.Table, users: pa.Table) -> BatchChange:
    """The batch's counts and users into the tables; what changed, read from the views."""
    con.register("counts_in", counts)
    con.register("users_in", users)
    try:
        unmatched = _unmatched_change(con)
        renamed = con.execute(
            """
            SELECT o.user_id, o.name, o.email FROM users_in n JOIN join_users o USING (user_id)
            WHERE (n.event_timestamp, n.source_partition, n.source_offset)
                  > (o.event_timestamp, o.source_partition, o.source_offset)
              AND (n.name, n.email) IS DISTINCT FROM (o.name, o.email)
            """
        ).fetchall()
        con.execute(
            """
            MERGE INTO join_users t USING users_in s ON t.user_id = s.user_id
            WHEN MATCHED AND (s.event_timestamp, s.source_partition, s.source_offset)
                  > (t.event_timestamp, t.source_partition, t.source_offset)
                THEN UPDATE SET name = s.name, email = s.email,
                    event_timestamp = s.event_timestamp,
                    source_partition = s.source_partition, source_offset = s.source_offset
            WHEN NOT MATCHED THEN INSERT VALUES (s.user_id, s.name, s.email,
                s.event_timestamp, s.source_partition, s.source_offset)
            """
        )
        con.execute(  # a hash join: no key index to keep (a third of the time, commit too)
            """
            MERGE INTO join_event_counts t USING counts_in s
                ON t.user_id = s.user_id AND t.event = s.event
            WHEN MATCHED THEN UPDATE SET count = t.count + s.count
            WHEN NOT MATCHED THEN INSERT VALUES (s.user_id, s.event, s.count)
            """
        )
        change = BatchChange()
        change.user_totals = (
            con.sql(
                "SELECT c.user_id, u.name, u.email, sum(c.count)::BIGINT AS event_count "
                "FROM join_event_counts c SEMI JOIN (SELECT user_id FROM counts_in "
                "UNION SELECT user_id FROM users_in) USING (user_id) "
                "JOIN join_users u USING (user_id) GROUP BY ALL"
            )
            .to_arrow_table()
            .cast(USER_TOTALS)
        )
        if renamed:  # few: the users whose details changed
            found = change.user_totals.filter(
                pc.is_in(change.user_totals["user_id"], pa.array([r[0] for r in renamed]))
            ).to_pylist()
            now = {r["user_id"]: ((r["user_id"], r["name"], r["email"]), r["event_count"])
                   for r in found}  # fmt: skip
            change.renamed = [
                ((uid, name, email), *now[uid]) for uid, name, email in renamed if uid in now
            ]
        if counts.num_rows:
            change.event_types = dict(
                con.execute(
                    "SELECT event, count FROM event_type_counts "
                    "WHERE event IN (SELECT DISTINCT event FROM counts_in)"
                ).fetchall()
            )
        if unmatched:
            con.execute(
                "INSERT INTO join_totals VALUES ('unmatched', ?) ON CONFLICT (name) DO UPDATE "
                "SET value = join_totals.value + excluded.value",
                [unmatched],
            )
            ((change.unmatched,),) = con.execute(  # every row: unregister wants no result open
                "SELECT value FROM join_totals WHERE name = 'unmatched'"
            ).fetchall()
        return change
    finally:
        con.unregister("counts_in")
        con.unregister("users_in")


def _unmatched_change(con: Any) -> int:
    """How the batch changes the number of events whose user has not arrived (before it is
    added): plus its events of users unknown even after it, minus the events counted so far
    of the users it brings."""
    ((found,),) = con.execute(
        """
        SELECT
            (SELECT coalesce(sum(c.count), 0) FROM counts_in c
             ANTI JOIN join_users u USING (user_id) ANTI JOIN users_in n USING (user_id))
          - (SELECT coalesce(sum(c.count), 0) FROM join_event_counts c SEMI JOIN
                (SELECT user_id FROM users_in ANTI JOIN join_users USING (user_id))
             USING (user_id))
        """
    ).fetchall()
    return int(found)
