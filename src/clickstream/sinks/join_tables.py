"""The warehouse tables of the joins job (DuckDB), written so that a replayed micro-batch
never counts twice.

* ``join_users(user_id, name, email, updated_at)``: each user's newest details (by event time;
  a tie goes to the later record).
* ``join_user_totals(user_id, event_count)``: events matched to each user. A matched event is
  counted once by its key (partition and offset of its record): its key goes into
  ``join_matched_keys`` in the transaction that adds it, so the same event matched again (a
  replayed batch, or a second version of its user within the bound) adds nothing. Keys are
  kept while the join can still emit their event (:meth:`JoinTables.add_matches` prunes older
  ones), so the table stays small.
* ``unmatched_events``: events with no user within the bound, upserted on their key.
* ``event_type_counts(event, count)``: every valid page event by type; a batch's increments
  are added once: ``join_batches`` records (query, checkpoint id, batch id) in the same
  transaction.
* the view ``user_event_counts(user_id, name, email, event_count)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from clickstream.sinks.duckdb_table import writing

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


class JoinTables:
    def __init__(self, path: Path, lock_timeout_s: float = 30.0, keep_keys_s: int = 3600) -> None:
        self.path = path
        self.lock_timeout_s = lock_timeout_s
        self.keep_keys_s = keep_keys_s
        """Matched keys older than this (event time, behind the newest) are pruned."""
        self._ready = False

    def _run(self, work: Any) -> Any:
        with writing(self.path, self.lock_timeout_s) as con:
            if not self._ready:
                con.execute(SCHEMA)
                self._ready = True
            con.execute("BEGIN TRANSACTION")
            try:
                result = work(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return result

    def upsert_users(self, users: pa.Table) -> list[tuple[str, str | None, str | None, str, str]]:
        """Newest details win. Returns (user_id, old name, old email, name, email) of each user
        whose details changed."""

        def work(con: Any) -> list[Any]:
            con.register("incoming", users)
            changed = con.execute(
                """
                WITH newest AS (
                    SELECT * FROM incoming QUALIFY row_number() OVER (
                        PARTITION BY user_id ORDER BY updated_at DESC, source_partition DESC,
                        source_offset DESC) = 1)
                SELECT n.user_id, o.name, o.email, n.name, n.email,
                       n.updated_at, n.source_partition, n.source_offset
                FROM newest n LEFT JOIN join_users o USING (user_id)
                WHERE o.user_id IS NULL
                   OR (n.updated_at, n.source_partition, n.source_offset)
                      > (o.updated_at, o.source_partition, o.source_offset)
                """
            ).fetchall()
            con.unregister("incoming")
            if changed:
                rows = pa.table(
                    {
                        "user_id": [r[0] for r in changed],
                        "name": [r[3] for r in changed],
                        "email": [r[4] for r in changed],
                        "updated_at": pa.array([r[5] for r in changed], pa.timestamp("us", "UTC")),
                        "source_partition": pa.array([r[6] for r in changed], pa.int32()),
                        "source_offset": pa.array([r[7] for r in changed], pa.int64()),
                    }
                )
                con.register("changed", rows)
                con.execute("INSERT OR REPLACE INTO join_users SELECT * FROM changed")
                con.unregister("changed")
            return [r[:5] for r in changed if (r[1], r[2]) != (r[3], r[4])]

        return list(self._run(work))

    def add_matches(self, matched: pa.Table) -> dict[str, int]:
        """Count matched events (``event_key, user_id, event_time``) not counted before;
        return the new totals of the users that changed."""

        def work(con: Any) -> dict[str, int]:
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
            totals = con.execute(
                """
                SELECT t.user_id, t.event_count FROM join_user_totals t
                SEMI JOIN (SELECT DISTINCT user_id FROM fresh) f USING (user_id)
                """
            ).fetchall()
            con.execute(
                f"""
                DELETE FROM join_matched_keys WHERE event_time < (
                    SELECT max(event_time) FROM join_matched_keys)
                    - INTERVAL {int(self.keep_keys_s)} SECOND
                """
            )
            con.execute("DROP TABLE fresh")
            return dict(totals)

        return dict(self._run(work))

    def add_unmatched(self, rows: pa.Table) -> int:
        """Keep unmatched events (upserted on their key); return how many are kept in all."""

        def work(con: Any) -> int:
            con.register("incoming", rows)
            con.execute("INSERT OR REPLACE INTO unmatched_events SELECT * FROM incoming")
            con.unregister("incoming")
            return int(con.execute("SELECT count(*) FROM unmatched_events").fetchone()[0])

        return int(self._run(work))

    def add_event_types(
        self, query: str, checkpoint_id: str, batch_id: int, counts: dict[str, int]
    ) -> dict[str, int] | None:
        """Add one batch's counts per event type, once per (query, checkpoint, batch); return
        the new totals of the types it changed, or None if the batch was added before."""

        def work(con: Any) -> dict[str, int] | None:
            seen = con.execute(
                "SELECT 1 FROM join_batches WHERE query = ? AND checkpoint_id = ? AND batch_id = ?",
                [query, checkpoint_id, batch_id],
            ).fetchone()
            if seen:
                return None
            con.execute(
                "INSERT INTO join_batches VALUES (?, ?, ?)", [query, checkpoint_id, batch_id]
            )
            if not counts:
                return {}
            con.register(
                "incoming",
                pa.table(
                    {"event": list(counts), "count": pa.array(list(counts.values()), pa.int64())}
                ),
            )
            con.execute(
                """
                INSERT INTO event_type_counts SELECT event, count FROM incoming
                ON CONFLICT (event) DO UPDATE
                SET count = event_type_counts.count + excluded.count
                """
            )
            rows = con.execute(
                "SELECT event, count FROM event_type_counts SEMI JOIN incoming USING (event)"
            ).fetchall()
            con.unregister("incoming")
            return dict(rows)

        result = self._run(work)
        return None if result is None else dict(result)

    def user_details(self, user_ids: list[str]) -> dict[str, tuple[str, str]]:
        """(name, email) of the users known so far."""
        if not user_ids:
            return {}

        def work(con: Any) -> dict[str, tuple[str, str]]:
            con.register("wanted", pa.table({"user_id": user_ids}))
            rows = con.execute(
                "SELECT user_id, name, email FROM join_users SEMI JOIN wanted USING (user_id)"
            ).fetchall()
            con.unregister("wanted")
            return {r[0]: (r[1], r[2]) for r in rows}

        return dict(self._run(work))

    def totals(self, user_ids: list[str]) -> dict[str, int]:
        if not user_ids:
            return {}

        def work(con: Any) -> dict[str, int]:
            con.register("wanted", pa.table({"user_id": user_ids}))
            rows = con.execute(
                "SELECT user_id, event_count FROM join_user_totals SEMI JOIN wanted USING (user_id)"
            ).fetchall()
            con.unregister("wanted")
            return dict(rows)

        return dict(self._run(work))
