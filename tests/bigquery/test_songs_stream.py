"""The songs job streaming plays into BigQuery (the emulator): the table is created with the
plays' schema, every play is there once, and a replayed micro-batch adds no row (MERGE on
``play_id``, the record's topic/partition/offset).

The seed's consumer calls ``insert_rows_json`` with row ids; the emulator ignores row ids (two
inserts of one id give two rows), and BigQuery itself only drops a repeated id within about a
minute, which is why the sink MERGEs instead (docs/scenarios/songs.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clickstream.jobs import builder
from clickstream.settings import Settings
from clickstream.simulators.songs import generate_plays, play_songs
from clickstream.streaming.checkpoint import query_location
from clickstream.streaming.runner import start_job
from tests.bigquery.conftest import Emulator, bigquery_settings
from tests.conftest import read_topic
from tests.jobs.songs_support import forget_last_batch, songs_settings

pytestmark = pytest.mark.slow


def test_plays_stream_into_bigquery_once(
    spark: Any, settings: Settings, bigquery_emulator: Emulator, tmp_path: Path
) -> None:
    s = bigquery_settings(songs_settings(settings, tmp_path), bigquery_emulator, "songs")
    play_songs(s, generate_plays(["tony-allen", "fela-kuti"], seed=7), rate=0, count=150)
    sent = {
        (v["user_id"], v["artist"], v["song_id"], v["timestamp"])
        for _, v in read_topic(s, s.songs.topic)
    }
    start_job(spark, s, builder("songs"), available_now=True).await_all(300)

    client = bigquery_emulator.client()
    table_id = f"{bigquery_emulator.project}.songs.song_plays"
    schema = client.get_table(table_id).schema
    assert [(f.name, f.field_type, f.mode) for f in schema] == [
        ("play_id", "STRING", "REQUIRED"),
        ("user_id", "INTEGER", "NULLABLE"),
        ("artist", "STRING", "NULLABLE"),
        ("song_id", "INTEGER", "NULLABLE"),
        ("song_name", "STRING", "NULLABLE"),
        ("event_type", "STRING", "NULLABLE"),
        ("timestamp", "STRING", "NULLABLE"),
        ("played_at", "TIMESTAMP", "NULLABLE"),
    ]

    def stored() -> list[Any]:
        return list(
            client.query(
                f"SELECT play_id, user_id, artist, song_id, `timestamp`, played_at "
                f"FROM `{table_id}`"
            ).result()
        )

    rows = stored()
    assert len(rows) == 150
    assert {(r.user_id, r.artist, r.song_id, r.timestamp) for r in rows} == sent
    assert all(r.played_at.strftime("%Y-%m-%d %H:%M:%S") == r.timestamp for r in rows)
    assert len({r.play_id for r in rows}) == 150
    assert all(r.play_id.startswith(f"{s.songs.topic}/") for r in rows)

    forget_last_batch(Path(query_location(s, "songs", "plays")))  # a crash before the commit
    start_job(spark, s, builder("songs"), available_now=True).await_all(300)
    again = stored()
    assert sorted(r.play_id for r in again) == sorted(r.play_id for r in rows)
