"""The web scenario's sessions loader (sinks/bigquery.py) against the BigQuery emulator: the
Avro files of a batch loaded from "Cloud Storage" into a staging table, MERGEd into
``sessions`` on ``session_key``; a replayed batch adds nothing.

What the emulator lacks: a load job into a table that does not exist yet takes its schema from
the Avro files in BigQuery; the emulator creates the destination only from an explicit schema
(or autodetected CSV/JSON). The test creates the staging table first, with the schema BigQuery
derives from the files; everything after that (WRITE_TRUNCATE load from gs://, CREATE TABLE
LIKE, MERGE) is the loader's own calls."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from clickstream.settings import Settings
from clickstream.sinks.avro_files import AvroFilesSink
from clickstream.sinks.bigquery import BigQuerySessions
from tests.bigquery.conftest import Emulator

pytestmark = pytest.mark.slow
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def bigquery_settings(settings: Settings, emulator: Emulator, dataset: str) -> Settings:
    warehouse = settings.warehouse.model_copy(
        update={
            "bigquery_project": emulator.project,
            "bigquery_dataset": dataset,
            "bigquery_endpoint": emulator.endpoint,
        }
    )
    return settings.model_copy(update={"warehouse": warehouse})


def sessions_frame(spark: Any, rows: list[Any]) -> Any:
    return spark.createDataFrame(
        rows,
        "session_key string, visitor_id string, pages array<string>, pageviews bigint, "
        "session_start timestamp, duration_ms bigint",
    )


def test_sessions_load_and_merge_once(
    spark: Any, settings: Settings, bigquery_emulator: Emulator, tmp_path: Path
) -> None:
    client = bigquery_emulator.client()
    from google.cloud import bigquery

    client.create_dataset(f"{bigquery_emulator.project}.web", exists_ok=True)
    field = bigquery.SchemaField
    client.create_table(  # what BigQuery would take from the Avro files (see above)
        bigquery.Table(
            f"{bigquery_emulator.project}.web.sessions_staging",
            schema=[
                field("session_key", "STRING"),
                field("visitor_id", "STRING"),
                field("pages", "STRING", mode="REPEATED"),
                field("pageviews", "INTEGER"),
                field("session_start", "TIMESTAMP"),
                field("duration_ms", "INTEGER"),
            ],
        )
    )
    local = AvroFilesSink(str(bigquery_emulator.gcs_root / "bucket" / "files"), "sessions")
    loader = BigQuerySessions(
        bigquery_settings(settings, bigquery_emulator, "web"),
        AvroFilesSink("gs://bucket/files", "sessions"),
    )
    first = sessions_frame(
        spark,
        [
            ("k1", "v1", ["/", "/a"], 2, T0, 1000),
            ("k2", "v2", ["/b"], 1, T0 + dt.timedelta(minutes=1), 0),
        ],
    )
    local.write(first, 0)
    assert loader.write(first, 0) == 2
    assert loader.write(first, 0) == 2  # Spark replays batch 0 after a crash
    second = sessions_frame(
        spark,
        [
            ("k2", "v2", ["/b", "/c"], 2, T0 + dt.timedelta(minutes=1), 5000),
            ("k3", "v3", ["/"], 1, T0 + dt.timedelta(minutes=2), 0),
        ],
    )
    local.write(second, 1)
    loader.write(second, 1)

    table = client.get_table(f"{bigquery_emulator.project}.web.sessions")
    assert {f.name: f.field_type for f in table.schema} == {
        "session_key": "STRING",
        "visitor_id": "STRING",
        "pages": "STRING",
        "pageviews": "INTEGER",
        "session_start": "TIMESTAMP",
        "duration_ms": "INTEGER",
    }
    assert next(f for f in table.schema if f.name == "pages").mode == "REPEATED"
    rows = client.query(
        "SELECT session_key, pageviews, duration_ms, session_start "
        f"FROM `{bigquery_emulator.project}.web.sessions` ORDER BY session_key"
    ).result()
    assert [(r.session_key, r.pageviews, r.duration_ms, r.session_start) for r in rows] == [
        ("k1", 2, 1000, T0),
        ("k2", 2, 5000, T0 + dt.timedelta(minutes=1)),
        ("k3", 1, 0, T0 + dt.timedelta(minutes=2)),
    ]
