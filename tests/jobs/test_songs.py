"""The songs scenario end to end on the real broker and Spark: ``simulate songs`` and the seed's
own producer (re-created) -> the ``songs`` job -> ``song_plays``, the result topic and
``window_counts``; plays stamped anywhere earlier this month count; a replayed batch does not
count twice; bad records are dead-lettered."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clickstream.events.songs import CATALOG
from clickstream.jobs import builder
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.simulators.songs import generate_plays, play_songs
from clickstream.sinks.duckdb_table import connect
from clickstream.streaming.checkpoint import query_location
from clickstream.streaming.runner import start_job
from tests.conftest import read_topic
from tests.jobs.songs_support import (
    expected_counts,
    forget_last_batch,
    latest_song_counts,
    seed_producer,
    songs_settings,
)

pytestmark = pytest.mark.slow
FIELDS = {
    "user_id": int,
    "artist": str,
    "song_id": int,
    "song_name": str,
    "event_type": str,
    "timestamp": str,
}


def run(spark: Any, settings: Settings) -> Any:
    job = start_job(spark, settings, builder("songs"), available_now=True)
    job.await_all(300)
    return job


def table(settings: Settings, sql: str) -> list[Any]:
    with connect(settings.duckdb_path, read_only=True) as con:
        return con.execute(sql).fetchall()


def test_simulator_sends_the_seed_payload_and_counts_delivery_reports(
    settings: Settings, tmp_path: Path
) -> None:
    s = songs_settings(settings, tmp_path)
    log = tmp_path / "producer.log"
    with log.open("w") as out:
        stats = play_songs(
            s, generate_plays(["tony-allen", "fela-kuti"], seed=3), rate=0, count=60, log_file=out
        )
    assert (stats.sent, stats.delivered, stats.failed) == (60, 60, 0)
    assert "60 delivered, 0 failed" in stats.summary()
    assert len(log.read_text().splitlines()) == 60
    plays = [value for _, value in read_topic(s, s.songs.topic)]
    assert len(plays) == 60
    now = datetime.now(UTC)
    for play in plays:
        assert {k: type(v) for k, v in play.items()} == FIELDS
        assert 20_000 <= play["user_id"] <= 100_000
        assert play["song_name"] == CATALOG[play["artist"]][play["song_id"]]
        assert play["event_type"] == "song_completed"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", play["timestamp"])
        at = datetime.fromisoformat(play["timestamp"]).replace(tzinfo=UTC)
        assert (at.year, at.month) == (now.year, now.month)
        assert at <= now
    assert Counter(p["artist"] for p in plays) == {"tony-allen": 30, "fela-kuti": 30}


def test_failed_deliveries_are_counted(settings: Settings, tmp_path: Path) -> None:
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    from clickstream.kafka.admin import admin_client

    s = songs_settings(settings, tmp_path)
    small = f"{s.songs.topic}-small"  # the broker refuses every record: larger than 60 bytes
    admin = admin_client(s)
    futures = admin.create_topics([NewTopic(small, 1, 1, config={"max.message.bytes": "60"})])
    futures[small].result(30)
    stats = play_songs(s, generate_plays(), topic=small, rate=0, count=5)
    assert (stats.sent, stats.delivered, stats.failed) == (5, 0, 5)
    assert stats.first_error is not None
    assert "5 failed" in stats.summary()


def test_seed_producer_and_ours_count_the_same_way(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = songs_settings(settings, tmp_path)
    seed_plays = seed_producer(str(s.kafka.bootstrap_servers), s.songs.topic, 20)
    ours = play_songs(s, generate_plays(["tony-allen", "ebo-taylor"], seed=5), rate=0, count=300)
    assert ours.delivered == 300
    plays = [value for _, value in read_topic(s, s.songs.topic)]
    assert len(plays) == 320
    bad = [
        b"not json",
        b'{"user_id": 30000, "artist": "a", "song_id": 12, "song_name": "x", '
        b'"event_type": "song_completed", "timestamp": "2026-11-02 10:00:00"}',
        b'{"user_id": 30000, "artist": "a", "song_id": 1, "song_name": "x", '
        b'"event_type": "song_completed", "timestamp": "yesterday"}',
    ]
    producer = make_producer(s)
    for value in bad:
        producer.produce(s.songs.topic, value)
    producer.flush()

    job = run(spark, s)
    expected = expected_counts(plays)
    assert latest_song_counts(read_topic(s, s.topics.results)) == expected
    in_table = table(
        s,
        "SELECT metric, epoch_ms(window_start), key, count FROM window_counts "
        "WHERE metric LIKE 'songs.%' AND metric != 'songs.all'",
    )
    assert {(m, w, k): c for m, w, k, c in in_table} == {
        k: c for k, c in expected.items() if k[0] != "songs.all"
    }
    assert table(s, "SELECT count(*), count(DISTINCT play_id) FROM song_plays") == [(320, 320)]
    # The seed's plays are all there, with their (microsecond) times.
    seed_rows = table(
        s,
        "SELECT user_id, song_id, song_name, timestamp FROM song_plays WHERE timestamp LIKE '%.%'",
    )
    assert sorted(seed_rows) == sorted(
        (p["user_id"], p["song_id"], p["song_name"], p["timestamp"])
        for p in seed_plays
        if "." in p["timestamp"]
    )
    top = table(
        s,
        "SELECT song_name, count FROM top_songs WHERE metric = 'songs.all' "
        "AND artist = 'tony-allen' AND rank = 1",
    )
    tony = Counter(p["song_name"] for p in plays if p["artist"] == "tony-allen")
    assert top
    assert all(count == max(tony.values()) for _, count in top)
    assert sum(s.late_rows_dropped for s in job.stats.values()) == 0
    reasons = sorted(v["reason"] for _, v in read_topic(s, s.topics.dead_letter))
    assert reasons == [
        "not a JSON object",
        "song_id must be 0-9",
        "timestamp must be YYYY-MM-DD HH:MM:SS",
    ]

    # Spark runs the last batch of both queries again (as after a crash before its commit):
    # nothing is counted or stored twice.
    for query in ("counts", "plays"):
        forget_last_batch(Path(query_location(s, "songs", query)))
    run(spark, s)
    assert latest_song_counts(read_topic(s, s.topics.results)) == expected
    assert table(s, "SELECT count(*), count(DISTINCT play_id) FROM song_plays") == [(320, 320)]


def test_a_first_batch_with_no_good_play_is_not_an_error(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """The ranking view is made once the counts table exists: a first micro-batch of only bad
    records (or none: a job started on an empty topic) writes no count."""
    s = songs_settings(settings, tmp_path)
    producer = make_producer(s)
    producer.produce(s.songs.topic, b"not json")
    producer.flush()
    run(spark, s)
    assert len(read_topic(s, s.topics.dead_letter)) == 1

    ours = play_songs(s, generate_plays(["tony-allen"], seed=6), rate=0, count=40)
    assert ours.delivered == 40
    run(spark, s)
    ranked = table(s, "SELECT sum(count) FROM top_songs WHERE metric = 'songs.all'")
    assert ranked == [(40,)]
