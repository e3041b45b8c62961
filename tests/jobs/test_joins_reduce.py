"""The joins job's reduction (what each task, and then the driver, makes of its records), on
Arrow rows: events counted per user and type, the newest record of each user, dead letters;
merging its own output gives the same; nothing in, nothing out."""

from __future__ import annotations

import pyarrow as pa

from clickstream.jobs.joins import DEAD, EVENT_SIDE, REDUCED, USER_SIDE, reduce_records
from clickstream.sinks.join_tables import COUNT, USER


def reduced(batches: list[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(list(reduce_records(iter(batches))), REDUCED)


def records(
    rows: list[tuple[int, str | None, str | None, str | None, int | None, int]],
) -> pa.Table:
    """(side, user_id, event, name, time, offset) rows; a row without user is a dead letter."""
    return pa.table(
        {
            "side": pa.array([r[0] for r in rows], pa.int32()),
            "user_id": [r[1] for r in rows],
            "event": [r[2] for r in rows],
            "name": [r[3] for r in rows],
            "email": [None if r[3] is None else f"{r[3]}@x.org" for r in rows],
            "time": pa.array([r[4] for r in rows], pa.int64()),
            "partition": pa.array([0] * len(rows), pa.int32()),
            "offset": pa.array([r[5] for r in rows], pa.int64()),
            "dead_key": [None if r[1] else "k" for r in rows],
            "dead_value": [None if r[1] else f"bad {r[5]}" for r in rows],
        }
    )


def test_events_counted_newest_user_kept_dead_letters_apart() -> None:
    rows = records(
        [
            (EVENT_SIDE, "u1", "click", None, 5, 0),
            (EVENT_SIDE, "u1", "click", None, 6, 1),
            (EVENT_SIDE, "u2", "scroll", None, 7, 2),
            (USER_SIDE, "u1", None, "Old", 10, 3),
            (USER_SIDE, "u1", None, "New", 20, 4),
            (USER_SIDE, "u1", None, "Tie, earlier record", 20, 2),
            (EVENT_SIDE, None, None, None, None, 9),
        ]
    )
    out = reduced(rows.to_batches(max_chunksize=2))  # several batches, as a task gets them
    counts = {(r["user_id"], r["event"]): r["count"] for r in out.to_pylist() if r["kind"] == COUNT}
    users = [(r["user_id"], r["name"]) for r in out.to_pylist() if r["kind"] == USER]
    dead = [r["dead_value"] for r in out.to_pylist() if r["kind"] == DEAD]
    assert counts == {("u1", "click"): 2, ("u2", "scroll"): 1}
    newest = {(r["user_id"], r["event"]): r["time"] for r in out.to_pylist() if r["kind"] == COUNT}
    assert newest == {("u1", "click"): 6, ("u2", "scroll"): 7}  # each count's newest event
    assert users == [("u1", "New")]
    assert dead == ["bad 9"]
    again = reduced(pa.concat_tables([out, out]).to_batches())  # two tasks' output merged
    assert {
        (r["user_id"], r["event"]): r["count"] for r in again.to_pylist() if r["kind"] == COUNT
    } == {k: 2 * n for k, n in counts.items()}
    assert {
        (r["user_id"], r["event"]): r["time"] for r in again.to_pylist() if r["kind"] == COUNT
    } == newest
    assert [(r["user_id"], r["name"]) for r in again.to_pylist() if r["kind"] == USER] == users
    assert len([r for r in again.to_pylist() if r["kind"] == DEAD]) == 2


def test_nothing_in_nothing_out() -> None:
    assert reduced([]).num_rows == 0
    assert reduced(records([]).to_batches()).num_rows == 0
