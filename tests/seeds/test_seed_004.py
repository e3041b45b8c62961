"""Seed 004 as written: its producer (confluent-kafka, Faker) stamps each play with a time this
month on its host's clock, ``str(fake.date_time_this_month())``. The songs job reads it in
``jobs.source_timezone`` and counts what the seed's BigQuery table would: plays per song, per
minute and per hour of when they were played."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clickstream.settings import Settings
from tests.conftest import read_topic
from tests.jobs.songs_support import (
    expected_counts,
    latest_song_counts,
    seed_producer,
    songs_settings,
)
from tests.jobs.test_songs import run, table
from tests.seeds.producers import host_clock

pytestmark = pytest.mark.slow


def test_the_seeds_producer_counted_in_its_hosts_time_zone(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """On a host at UTC-5 (seed 000's test and seed 003's cover UTC+9)."""
    zone = "America/Bogota"
    s = songs_settings(settings, tmp_path)
    s = s.model_copy(update={"jobs": s.jobs.model_copy(update={"source_timezone": zone})})
    with host_clock(zone):
        plays = seed_producer(str(s.kafka.bootstrap_servers), s.songs.topic, 20)

    run(spark, s)

    assert read_topic(s, s.topics.dead_letter) == []
    assert latest_song_counts(read_topic(s, s.topics.results)) == expected_counts(plays, zone)
    rows = table(s, "SELECT timestamp, epoch_us(played_at) FROM song_plays")
    assert sorted(rows) == sorted((p["timestamp"], played_us(p, zone)) for p in plays)


def played_us(play: dict[str, Any], zone: str) -> int:
    """When ``play`` was played (its ``timestamp``, a local time in ``zone``), epoch µs."""
    moment = datetime.fromisoformat(play["timestamp"]).replace(tzinfo=ZoneInfo(zone))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
