"""The bookstore job on its defaults: events into the warehouse table, per-book counts to the
result topic, bad records to the dead-letter topic."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clickstream.jobs import builder
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import connect
from clickstream.streaming.runner import start_job
from tests.bookstore.conftest import bookstore_settings
from tests.bookstore.helpers import BAD, T0, make_events, send
from tests.conftest import read_topic

pytestmark = pytest.mark.slow


def run(spark: Any, settings: Settings) -> None:
    start_job(spark, settings, builder("bookstore"), available_now=True).await_all(300)


def test_events_land_in_the_warehouse_counts_on_the_result_topic_bad_ones_dead_lettered(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = bookstore_settings(settings, tmp_path)
    events = make_events(200, seed=1)
    # One event sent twice (a client's retry): one row, counted once.
    send(s, [*events[:100], *[bad for bad, _ in BAD], *events[100:], events[7]])
    run(spark, s)

    with connect(s.duckdb_path, read_only=True) as con:
        kinds = dict(con.execute("DESCRIBE bookstore_events").fetchall()[i][:2] for i in range(5))
        rows = con.execute(
            "SELECT event_id, event_type, event_time, user_id, book_id FROM bookstore_events"
        ).fetchall()
    assert kinds == {
        "event_id": "UUID",
        "event_type": "VARCHAR",
        "event_time": "TIMESTAMP WITH TIME ZONE",
        "user_id": "VARCHAR",
        "book_id": "VARCHAR",
    }
    expected = {
        e.event_id: (e.event_type, datetime.fromtimestamp(e.event_time / 1000, UTC), e.user_id,
                     e.book_id)
        for e in events
    }  # fmt: skip
    assert {str(r[0]): (r[1], r[2].astimezone(UTC), r[3], r[4]) for r in rows} == expected

    dead = [value for _, value in read_topic(s, s.topics.dead_letter)]
    assert len(dead) == len(BAD)
    for value, (_, why) in zip(sorted(dead, key=lambda v: v["sourceOffset"]), BAD, strict=True):
        assert value["reason"].startswith(why)
        assert value["sourceTopic"] == s.topics.bookstore

    # Per-book counts in 1-minute windows (the newest record of a key is the count).
    counts: dict[tuple[str, int, str], int] = {}
    for _key, value in read_topic(s, s.topics.results):
        assert value["window_end"] - value["window_start"] == 60_000
        counts[(value["metric"], value["window_start"], value["key"])] = value["count"]
    want: Counter[tuple[str, int, str]] = Counter()
    for e in events:
        metric = {"description_open": "bookstore.opens", "purchase": "bookstore.purchases"}.get(
            e.event_type
        )
        if metric:
            want[(metric, e.event_time - (e.event_time - T0) % 60_000, e.book_id)] += 1
    # The newest window stays open (event time has not passed its watermark) but is written
    # with its count so far, like every other.
    assert counts == dict(want)
