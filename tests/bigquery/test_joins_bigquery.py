"""The joins job into BigQuery (the emulator): the same facts, dimension and views as in DuckDB,
loaded through MERGEs in one transaction per batch; the totals equal a DuckDB query over the
input, a replayed batch adds nothing, and the dashboard's totals come from the views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clickstream.jobs import builder
from clickstream.jobs.joins import NAME, QUERY
from clickstream.settings import Settings
from clickstream.streaming.checkpoint import query_location
from clickstream.streaming.runner import start_job
from tests.bigquery.conftest import Emulator, bigquery_settings
from tests.jobs.join_data import expected, join_settings, make_input, send
from tests.jobs.songs_support import forget_last_batch
from tests.jobs.test_joins import topic_totals

pytestmark = pytest.mark.slow


def views(client: Any, dataset: str) -> dict[str, Any]:
    def rows(sql: str) -> list[Any]:
        return list(client.query(sql).result())

    per_user = rows(f"SELECT user_id, name, email, event_count FROM `{dataset}.user_event_counts`")
    types = rows(f"SELECT event, count FROM `{dataset}.event_type_counts`")
    unmatched = rows(f"SELECT user_id, event_count FROM `{dataset}.unmatched_event_counts`")
    return {
        "per_user": {r.user_id: (r.name, r.email, r.event_count) for r in per_user},
        "types": {r.event: r.count for r in types},
        "unmatched": {r.user_id: r.event_count for r in unmatched},
    }


def test_joins_load_into_bigquery_once(
    spark: Any, settings: Settings, bigquery_emulator: Emulator, tmp_path: Path
) -> None:
    job = bigquery_settings(
        join_settings(settings, tmp_path, max_offsets_per_trigger=60), bigquery_emulator, "joins"
    )
    data = make_input(seed=9, users=25)
    send(job, data)
    start_job(spark, job, builder(NAME), available_now=True).await_all(300)
    client = bigquery_emulator.client()
    dataset = f"{bigquery_emulator.project}.joins"
    want = expected([data])
    assert views(client, dataset) == want
    shown = topic_totals(job)
    assert shown["per_user"] == want["per_user"]
    assert shown["types"] == want["types"]
    assert shown["unmatched"] == sum(want["unmatched"].values())
    assert not job.duckdb_path.exists()  # BigQuery instead of the DuckDB file

    forget_last_batch(Path(query_location(job, NAME, QUERY)))  # a crash before the commit
    start_job(spark, job, builder(NAME), available_now=True).await_all(300)
    assert views(client, dataset) == want
