"""The web scenario's sessions into BigQuery, as a user runs them: `clickstream jobs run
sessions` with `files.url` on `gs://` (a fake Cloud Storage server, reached through gcsfs) and
`warehouse.bigquery_project` set (the BigQuery emulator). The executors write each micro-batch's
sessions as Avro to `gs://`; the loader loads those files into a staging table and MERGEs them
into `sessions` on `session_key`.

Checked: all of the job's 16 columns arrive with their types, a pageview without referrer or
landing code gives no null item in an array (BigQuery refuses one), a micro-batch that closes
no session loads nothing (BigQuery fails a load whose URI matches no file), and a micro-batch
run again after a crash replaces instead of adding.

Where the emulators differ from Google's services (docs/scenarios/web.md says the same): the
BigQuery emulator makes a load job's destination only from an explicit schema, where BigQuery
would take it from the Avro files (the loader makes both tables from the batch's schema, so it
does the same on both); the fake Cloud Storage server speaks JSON only, so gcsfs's gRPC probe
of a bucket's type is turned off (`GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clickstream.events.web import EnrichedWebEvent
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.streaming.checkpoint import query_location
from tests.bigquery.conftest import Emulator, FakeGcs
from tests.conftest import cli_env, read_topic
from tests.jobs.counts_support import undo_batches
from tests.jobs.test_sessions import sessions

pytestmark = pytest.mark.slow
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
COLUMNS = {
    "session_key": ("STRING", "NULLABLE"),
    "visitor_id": ("STRING", "NULLABLE"),
    "session_id": ("STRING", "NULLABLE"),
    "pages": ("STRING", "REPEATED"),
    "referrers": ("STRING", "REPEATED"),
    "landing_page_codes": ("INTEGER", "REPEATED"),
    "hit_timestamps": ("TIMESTAMP", "REPEATED"),
    "pageviews": ("INTEGER", "NULLABLE"),
    "session_start": ("TIMESTAMP", "NULLABLE"),
    "session_end": ("TIMESTAMP", "NULLABLE"),
    "duration_ms": ("INTEGER", "NULLABLE"),
    "entry_page": ("STRING", "NULLABLE"),
    "exit_page": ("STRING", "NULLABLE"),
    "referrer": ("STRING", "NULLABLE"),
    "bot": ("BOOLEAN", "NULLABLE"),
    "country": ("STRING", "NULLABLE"),
}


def hit(visitor: str, session: str, at_ms: int, page: str, **extra: Any) -> bytes:
    event = EnrichedWebEvent(
        eventId=str(uuid.uuid4()),
        eventType="Pageview",
        timestamp=at_ms,
        receivedAt=at_ms,
        uiud=visitor,
        sessionId=session,
        pageUrl=f"https://shop.example.com{page}",
        **extra,
    )
    return msgspec.json.encode(event)


def send(settings: Settings, records: list[bytes]) -> None:
    producer = make_producer(settings)
    for record in records:
        producer.produce(settings.topics.web_events, record, key=b"v")
    producer.flush()


def run_sessions(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clickstream", "jobs", "run", "sessions", "--available-now"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def comparable(row: dict[str, Any]) -> tuple[Any, ...]:
    """A session row of DuckDB or BigQuery, times as epoch microseconds."""
    values = []
    for name in COLUMNS:
        value = row[name]
        if isinstance(value, datetime):
            value = micros(value.replace(tzinfo=value.tzinfo or UTC))
        elif name == "hit_timestamps":
            value = [micros(v.replace(tzinfo=v.tzinfo or UTC)) for v in value]
        values.append(value)
    return tuple(values)


def test_the_sessions_job_loads_its_own_output_from_gs_into_bigquery(
    settings: Settings, bigquery_emulator: Emulator, fake_gcs: FakeGcs, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic, dead, dataset = f"web-{tag}", f"dead-{tag}", f"web_{tag}"
    ensure_topics(settings, [topic, dead], partitions=2)
    s = settings.model_copy(
        update={
            "data_dir": tmp_path,
            "topics": settings.topics.model_copy(update={"web_events": topic, "dead_letter": dead}),
        }
    )
    env = cli_env(
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(s.kafka.bootstrap_servers),
        CLICKSTREAM_DATA_DIR=str(tmp_path),
        CLICKSTREAM_TOPICS_WEB_EVENTS=topic,
        CLICKSTREAM_TOPICS_DEAD_LETTER=dead,
        CLICKSTREAM_FILES_URL=f"gs://{fake_gcs.bucket}/runs/{tag}",
        CLICKSTREAM_WAREHOUSE_BIGQUERY_PROJECT=bigquery_emulator.project,
        CLICKSTREAM_WAREHOUSE_BIGQUERY_DATASET=dataset,
        CLICKSTREAM_WAREHOUSE_BIGQUERY_ENDPOINT=bigquery_emulator.endpoint,
        CLICKSTREAM_JOBS_SESSION_GAP_S="300",
        CLICKSTREAM_JOBS_WATERMARK_S="10",
        CLICKSTREAM_SPARK_SHUFFLE_PARTITIONS="2",
        **fake_gcs.env(),
    )
    client = bigquery_emulator.client()
    table = f"{bigquery_emulator.project}.{dataset}.sessions"
    files = bigquery_emulator.gcs_root / fake_gcs.bucket / "runs" / tag / "sessions"

    # Two sessions, one of them with pageviews that lack a referrer and a landing code (sent
    # straight to Kafka), then a later pageview that moves the watermark. Four records a
    # micro-batch: the first closes no session, so it loads nothing (a load of no file would
    # fail the job); the batches after the watermark moved close both sessions and load them.
    send(s, [
        hit("a", "1", T0, "/", referrer="https://www.google.com/", landingPage=1, country="BR"),
        hit("a", "1", T0 + MIN, "/pricing"),
        hit("a", "1", T0 + 2 * MIN, "/signup", referrer=None, landingPage=None),
        hit("b", "7", T0 + 30_000, "/blog", landingPage=1, bot=True, botReason="crawler: ^curl"),
        hit("c", "9", T0 + 60 * MIN, "/"),
    ])  # fmt: skip
    run_sessions({**env, "CLICKSTREAM_SPARK_MAX_OFFSETS_PER_TRIGGER": "4"})
    assert read_topic(s, dead) == []
    written = {path.parent.name for path in files.rglob("*.avro")}  # through gs://, not a folder
    assert written, "no session file written"
    assert "batch=0000000000" not in written  # the first batch closed no session
    location = Path(query_location(s, "sessions", "sessions"))
    assert (location / "commits" / "1").exists()  # it was more than one batch

    bq = client.get_table(table)
    assert {f.name: (f.field_type, f.mode) for f in bq.schema} == COLUMNS
    ours = {r["session_key"]: comparable(r) for r in sessions(s)}
    assert len(ours) == 2
    loaded = [dict(r.items()) for r in client.query(f"SELECT * FROM `{table}`").result()]
    assert {r["session_key"]: comparable(r) for r in loaded} == ours
    a = next(r for r in loaded if r["visitor_id"] == "a")
    assert a["referrers"] == ["https://www.google.com/", "direct", "direct"]
    assert a["landing_page_codes"] == [1, 0, 0]
    assert a["bot"] is False
    assert a["country"] == "BR"  # the first hit's
    assert next(r for r in loaded if r["visitor_id"] == "b")["bot"] is True

    # As if the process died after the load but before Spark committed the batch: Spark runs
    # it again, and the MERGE replaces what the first run loaded.
    last = max(int(p.name) for p in (location / "commits").iterdir() if p.name.isdigit())
    undo_batches(location, last)
    run_sessions(env)
    again = [dict(r.items()) for r in client.query(f"SELECT * FROM `{table}`").result()]
    assert {r["session_key"]: comparable(r) for r in again} == ours
    assert len(again) == 2
