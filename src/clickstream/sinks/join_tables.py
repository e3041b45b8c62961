"""The warehouse tables of the joins job (DuckDB), written so that a replayed micro-batch
never counts twice.

Each micro-batch of the job is added in one transaction (:meth:`JoinTables.write`), once:
``join_batches`` records (query, checkpoint id, batch id) in it, so a batch Spark runs again
after a crash adds nothing.

* ``join_users(user_id, name, email, updated_at)``: each user's newest details (by event time;
  a tie goes to the later record).
* ``join_user_totals(user_id, event_count)``: events matched to each user. A matched event is
  counted once by its key (partition and offset of its record): its key goes into
  ``join_matched_keys``, so the same event matched again by a second version of its user
  within the bound (in this batch or a later one) adds nothing. Keys are kept while the join
  can still emit their event, then pruned, so the table stays small.
* ``unmatched_events``: events with no user within the bound, upserted on their key.
* ``event_type_counts(event, count)``: every valid page event by type.
* the view ``user_event_counts(user_id, name, email, event_count)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clickstream.sinks.base import BaseSink, Replay
from clickstream.sinks.duckdb_table import writing

KEY_BITS = 40
KEY_SHIFT = 1 << KEY_BITS
"""An event's key: partition * 2**40 + offset of its record (offsets stay below 2**40)."""

TABLES = (
    "join_users",
    "join_user_totals",
    "join_matched_keys",
    "unmatched_events",
    "event_type_counts",
    "join_batches",
)
"""The tables the joins job writes (with the view ``user_event_counts``)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS join_users (
    user_id VARCHAR PRIMARY KEY, name VARCHAR, email VARCHAR, updated_at TIMESTAMPTZ,
    source_partition INTEGER, source_offset BIGINT);
CREATE TABLE IF NOT EXISTS join_user_totals (user_id VARCHAR PRIMARY KEY, event_count BIGINT);
CREATE TABLE IF NOT EXISTS join_matched_keys (event_key BIGINT PRIMARY KEY, event_time TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS unmatched_events (
    event_key BIGINT PRIMARY KEY, user_id VARCHAR, page VARCHAR, event VARCHAR,
    event_time TIMESTAMPTZ, source_topic VARCHAR, source_partition INTEGER, source_offset BIGINT);
CREATE TABLE IF NOT EXISTS event_type_counts (event VARCHAR PRIMARY KEY, count BIGINT);
CREATE TABLE IF NOT EXISTS join_batches (
    query VARCHAR, checkpoint_id VARCHAR, batch_id BIGINT,
    PRIMARY KEY (query, checkpoint_id, batch_id));
CREATE OR REPLACE VIEW user_event_counts AS
    SELECT t.user_id, u.name, u.email, t.event_count
    FROM join_user_totals t LEFT JOIN join_users u USING (user_id);
"""


User = tuple[str, str | None, str | None]
"""(user_id, name, email)."""


@dataclass
class BatchChange:
    """What one micro-batch changed, for the result topic."""

    renamed: list[tuple[User, User, int]] = field(default_factory=list)
    """(before, now, events) of each user with events whose name or email changed."""
    user_totals: list[tuple[User, int]] = field(default_factory=list)
    """(user, events) of each user whose total changed, with the newest details."""
    event_types: dict[str, int] = field(default_factory=dict)
    """The new totals of the event types the batch counted."""
    unmatched: int | None = None
    """How many unmatched events are kept, when the batch added some."""


class JoinTables(BaseSink):
    """The joins job's output (rows of :func:`clickstream.jobs.joins.join_frame`: ``kind``,
    ``event``, ``user_id``, ``name``, ``email``, ``time``, ``page``, ``partition``,
    ``offset``, ``event_key``) added to the tables, one transaction per batch; what a batch
    changed goes to ``on_change`` (the job sends the new totals to the result topic). A
    micro-batch is collected to the driver as Arrow."""

    replay = Replay.REPLACES
    name = "duckdb:joins"

    def __init__(
        self,
        path: Path,
        *,
        query: str,
        checkpoint_id: Callable[[], str],
        events_topic: str,
        on_change: Callable[[BatchChange], None],
        lock_timeout_s: float = 30.0,
        keep_keys_s: int = 3600,
    ) -> None:
        self.path = path
        self.query = query
        self.checkpoint_id = checkpoint_id
        """The query's id (batch ids count from 0 again in a new checkpoint)."""
        self.events_topic = events_topic
        self.on_change = on_change
        self.lock_timeout_s = lock_timeout_s
        self.keep_keys_s = keep_keys_s
        """Matched keys older than this (event time, behind the newest) are pruned."""
        self._ready = False

    def write_table(self, rows: pa.Table, batch_id: int) -> int:
        if not rows.num_rows:
            return 0
        kind = rows["kind"]
        events = rows.filter(pc.and_(pc.equal(kind, "event"), pc.is_valid(rows["event"])))
        users = rows.filter(pc.and_(pc.equal(kind, "user"), pc.is_valid(rows["time"])))
        matches = rows.filter(pc.equal(kind, "match"))
        unmatched = rows.filter(pc.equal(kind, "unmatched"))
        counts = events.group_by("event").aggregate([("event", "count")])
        change = self.add_batch(
            batch_id,
            users=pa.table(
                {
                    "user_id": users["user_id"],
                    "name": users["name"],
                    "email": users["email"],
                    "updated_at": users["time"],
                    "source_partition": pc.cast(users["partition"], pa.int32()),
                    "source_offset": pc.cast(users["offset"], pa.int64()),
                }
            ),
            matches=pa.table(
                {
                    "event_key": matches["event_key"],
                    "user_id": matches["user_id"],
                    "event_time": matches["time"],
                }
            ),
            unmatched=pa.table(
                {
                    "event_key": unmatched["event_key"],
                    "user_id": unmatched["user_id"],
                    "page": unmatched["page"],
                    "event": unmatched["event"],
                    "event_time": unmatched["time"],
                    "source_topic": pa.repeat(
                        pa.scalar(self.events_topic, pa.string()), unmatched.num_rows
                    ),
                    "source_partition": pc.cast(
                        pc.shift_right(unmatched["event_key"], KEY_BITS), pa.int32()
                    ),
                    "source_offset": pc.bit_wise_and(unmatched["event_key"], KEY_SHIFT - 1),
                }
            ),
            event_counts=dict(
                zip(counts["event"].to_pylist(), counts["event_count"].to_pylist(), strict=True)
            ),
        )
        if change is not None:  # None: added before a restart
            self.on_change(change)
        return int(rows.num_rows)

    def add_batch(
        self,
        batch_id: int,
        *,
        users: pa.Table,
        matches: pa.Table,
        unmatched: pa.Table,
        event_counts: dict[str, int],
    ) -> BatchChange | None:
        """Add one micro-batch, once per (query, checkpoint, batch); None if it was added
        before.

        ``users``: ``user_id, name, email, updated_at, source_partition, source_offset`` (the
        newest details win); ``matches``: ``event_key, user_id, event_time``; ``unmatched``:
        the columns of ``unmatched_events``; ``event_counts``: events per type."""
        query, checkpoint_id = self.query, self.checkpoint_id()
        with writing(self.path, self.lock_timeout_s) as con:
            if not self._ready:
                con.execute(SCHEMA)
                self._ready = True
            con.execute("BEGIN TRANSACTION")
            try:
                seen = con.execute(
                    "SELECT 1 FROM join_batches "
                    "WHERE query = ? AND checkpoint_id = ? AND batch_id = ?",
                    [query, checkpoint_id, batch_id],
                ).fetchone()
                if seen:
                    con.execute("ROLLBACK")
                    return None
                con.execute(
                    "INSERT INTO join_batches VALUES (?, ?, ?)", [query, checkpoint_id, batch_id]
                )
                change = BatchChange()
                renamed = _upsert_users(con, users) if users.num_rows else []
                counted: set[str] = set()
                if matches.num_rows:
                    counted = _add_matches(con, matches, self.keep_keys_s)
                changed = {uid for uid, *_ in renamed} | counted
                if changed:
                    now = _users_now(con, changed)
                    change.renamed = [
                        ((uid, old_name, old_email), now[uid][0], now[uid][1])
                        for uid, old_name, old_email in renamed
                        if uid in now
                    ]
                    change.user_totals = [now[uid] for uid in counted if uid in now]
                if unmatched.num_rows:
                    change.unmatched = _add_unmatched(con, unmatched)
                if event_counts:
                    change.event_types = _add_event_types(con, event_counts)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return change


def _upsert_users(con: Any, users: pa.Table) -> list[tuple[str, str | None, str | None]]:
    """Newest details win. Returns (user_id, old name, old email) of each known user whose
    name or email changed."""
    con.register("incoming", users)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE changed AS
        WITH newest AS (
            SELECT * FROM incoming QUALIFY row_number() OVER (
                PARTITION BY user_id ORDER BY updated_at DESC, source_partition DESC,
                source_offset DESC) = 1)
        SELECT n.*, o.user_id IS NULL AS new, o.name AS old_name, o.email AS old_email
        FROM newest n LEFT JOIN join_users o USING (user_id)
        WHERE o.user_id IS NULL
           OR (n.updated_at, n.source_partition, n.source_offset)
              > (o.updated_at, o.source_partition, o.source_offset)
        """
    )
    con.unregister("incoming")
    con.execute(
        "INSERT OR REPLACE INTO join_users SELECT user_id, name, email, updated_at, "
        "source_partition, source_offset FROM changed"
    )
    renamed = con.execute(
        "SELECT user_id, old_name, old_email FROM changed "
        "WHERE NOT new AND (name, email) IS DISTINCT FROM (old_name, old_email)"
    ).fetchall()
    con.execute("DROP TABLE changed")
    return [(r[0], r[1], r[2]) for r in renamed]


def _add_matches(con: Any, matched: pa.Table, keep_keys_s: int) -> set[str]:
    """Count matched events (``event_key, user_id, event_time``) not counted before; return the
    users whose totals changed."""
    con.register("incoming", matched)
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE fresh AS
        SELECT DISTINCT i.event_key, i.user_id, i.event_time FROM incoming i
        ANTI JOIN join_matched_keys k USING (event_key)
        """
    )
    con.unregister("incoming")
    con.execute("INSERT INTO join_matched_keys SELECT event_key, event_time FROM fresh")
    con.execute(
        """
        INSERT INTO join_user_totals
        SELECT user_id, count(*) FROM fresh GROUP BY user_id
        ON CONFLICT (user_id) DO UPDATE
        SET event_count = join_user_totals.event_count + excluded.event_count
        """
    )
    changed = con.execute("SELECT DISTINCT user_id FROM fresh").fetchall()
    con.execute(
        f"""
        DELETE FROM join_matched_keys WHERE event_time < (
            SELECT max(event_time) FROM join_matched_keys)
            - INTERVAL {int(keep_keys_s)} SECOND
        """
    )
    con.execute("DROP TABLE fresh")
    return {r[0] for r in changed}


def _users_now(con: Any, user_ids: set[str]) -> dict[str, tuple[User, int]]:
    """(user_id, name, email) and total of the users with a total."""
    con.register("wanted", pa.table({"user_id": list(user_ids)}))
    rows = con.execute(
        """
        SELECT t.user_id, u.name, u.email, t.event_count
        FROM join_user_totals t SEMI JOIN wanted USING (user_id)
        LEFT JOIN join_users u USING (user_id)
        """
    ).fetchall()
    con.unregister("wanted")
    return {r[0]: ((r[0], r[1], r[2]), int(r[3])) for r in rows}


def _add_unmatched(con: Any, rows: pa.Table) -> int:
    """Keep unmatched events (upserted on their key); return how many are kept in all."""
    con.register("incoming", rows)
    con.execute("INSERT OR REPLACE INTO unmatched_events SELECT * FROM incoming")
    con.unregister("incoming")
    return int(con.execute("SELECT count(*) FROM unmatched_events").fetchone()[0])


def _add_event_types(con: Any, counts: dict[str, int]) -> dict[str, int]:
    """Add counts per event type; return the new totals of those types."""
    con.register(
        "incoming",
        pa.table({"event": list(counts), "count": pa.array(list(counts.values()), pa.int64())}),
    )
    con.execute(
        """
        INSERT INTO event_type_counts SELECT event, count FROM incoming
        ON CONFLICT (event) DO UPDATE SET count = event_type_counts.count + excluded.count
        """
    )
    rows = con.execute(
        "SELECT event, count FROM event_type_counts SEMI JOIN incoming USING (event)"
    ).fetchall()
    con.unregister("incoming")
    return dict(rows)
