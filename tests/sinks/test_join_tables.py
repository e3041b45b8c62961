"""The joins' tables on a real DuckDB file: MERGEs into tables without key indexes, and into
those a version before made with them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from clickstream.sinks.duckdb_table import connect
from clickstream.sinks.join_tables import AGGREGATES, COUNT, USER, BatchChange, JoinTables

KEYED = """
CREATE TABLE join_users (
    user_id VARCHAR PRIMARY KEY, name VARCHAR, email VARCHAR, event_timestamp TIMESTAMPTZ,
    source_partition INTEGER, source_offset BIGINT);
CREATE TABLE join_event_counts (
    user_id VARCHAR, event VARCHAR, count BIGINT, PRIMARY KEY (user_id, event));
"""
"""The two tables as the version before this one made them, with key indexes."""


def rows(*items: dict[str, object]) -> pa.Table:
    return pa.Table.from_pylist(list(items), schema=AGGREGATES)


def count(user: str, event: str, n: int) -> dict[str, object]:
    return {"kind": COUNT, "user_id": user, "event": event, "count": n}


def user(uid: str, name: str, time: int, offset: int) -> dict[str, object]:
    return {"kind": USER, "user_id": uid, "name": name, "email": f"{uid}@example.org",
            "time": time, "partition": 0, "offset": offset}  # fmt: skip


@pytest.mark.parametrize("made_by", ["this version", "the version with key indexes"])
def test_merges_add_counts_keep_the_newest_user_and_follow_unmatched(
    tmp_path: Path, made_by: str
) -> None:
    path = tmp_path / "warehouse.duckdb"
    if made_by != "this version":
        with connect(path) as con:
            con.execute(KEYED)
    changes: list[BatchChange] = []
    tables = JoinTables(path, query="q", checkpoint_id=lambda: "cp", on_change=changes.append)

    tables.write(rows(count("a", "click", 2), count("b", "click", 1), user("a", "A", 10, 0)), 0)
    assert changes[-1].unmatched == 1  # b's event: b has not arrived
    assert changes[-1].user_totals.to_pylist() == [
        {"user_id": "a", "name": "A", "email": "a@example.org", "event_count": 2}
    ]
    tables.write(
        rows(count("a", "click", 3), count("a", "view", 1), user("b", "B", 5, 1),
             user("a", "older", 1, 2)),
        1,
    )  # fmt: skip
    assert changes[-1].unmatched == 0  # b came: its earlier event counts for it
    tables.write(rows(count("a", "click", 3)), 1)  # the same batch again: nothing added
    assert len(changes) == 2

    with connect(path, read_only=True) as con:
        assert con.execute(
            "SELECT user_id, name, event_count FROM user_event_counts ORDER BY user_id"
        ).fetchall() == [("a", "A", 6), ("b", "B", 1)]
        assert con.execute("SELECT * FROM event_type_counts ORDER BY event").fetchall() == [
            ("click", 6),
            ("view", 1),
        ]
        assert con.execute("SELECT count(*) FROM join_event_counts").fetchall() == [(3,)]
        assert con.execute("SELECT count(*) FROM unmatched_event_counts").fetchall() == [(0,)]
