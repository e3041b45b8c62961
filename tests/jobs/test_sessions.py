"""The sessionization job end to end: topic -> Spark -> Parquet (or Avro) files + DuckDB
`sessions`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from clickstream.errors import JobFailedError
from clickstream.events.web import EnrichedWebEvent
from clickstream.jobs import builder
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.sinks.avro_files import read_avro
from clickstream.sinks.duckdb_table import connect
from clickstream.sinks.parquet_files import read_parquet
from clickstream.streaming.runner import RunningJob, start_job
from tests.conftest import read_topic

pytestmark = pytest.mark.slow
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000


def job_settings(settings: Settings, tmp_path: Path, **warehouse: Any) -> Settings:
    topic = f"web-{uuid.uuid4().hex[:8]}"
    dead = f"{topic}.dead"
    ensure_topics(settings, [topic, dead], partitions=2)
    topics = settings.topics.model_copy(update={"web_events": topic, "dead_letter": dead})
    return settings.model_copy(
        update={
            "data_dir": tmp_path,
            "topics": topics,
            "warehouse": settings.warehouse.model_copy(update=warehouse),
        }
    )


def pageview(uiud: str, session: str, at_ms: int, page: str, **extra: Any) -> EnrichedWebEvent:
    return EnrichedWebEvent(
        eventId=extra.pop("eventId", str(uuid.uuid4())),
        eventType="Pageview",
        timestamp=at_ms,
        receivedAt=at_ms,
        uiud=uiud,
        sessionId=session,
        pageUrl=f"https://shop.example.com{page}",
        referrer=extra.pop("referrer", "direct"),
        landingPage=extra.pop("landingPage", 0),
        **extra,
    )


def send(settings: Settings, events: list[EnrichedWebEvent | bytes]) -> None:
    producer = make_producer(settings)
    for event in events:
        if isinstance(event, bytes):
            producer.produce(settings.topics.web_events, event, key=b"junk")
        else:
            producer.produce(settings.topics.web_events, msgspec.json.encode(event), key=event.uiud)
    producer.flush()


def run(spark, settings: Settings) -> RunningJob:  # type: ignore[no-untyped-def]
    job = start_job(spark, settings, builder("sessions"), available_now=True)
    job.await_all(300)
    return job


def sessions(settings: Settings) -> list[dict[str, Any]]:
    with connect(settings.duckdb_path, read_only=True) as con:
        cursor = con.execute("SELECT * FROM sessions ORDER BY session_start")
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_sessions_gaps_late_events_and_dead_letters(  # type: ignore[no-untyped-def]
    spark, settings: Settings, tmp_path: Path
) -> None:
    ours = job_settings(settings, tmp_path)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    send(
        ours,
        [
            pageview(a, "s1", T0, "/", landingPage=1, referrer="https://www.google.com/"),
            pageview(a, "s1", T0 + 1 * MIN, "/products/shoes"),
            pageview(b, "s9", T0 + 2 * MIN, "/blog", landingPage=1),
            pageview(a, "s1", T0 + 5 * MIN, "/cart"),
            pageview(str(uuid.uuid4()), "c", T0 + 37 * MIN, "/"),  # watermark: T0 + 33:40
            b"{not json",
            json.dumps({"eventType": "Pageview", "timestamp": T0, "pageUrl": "/x"}).encode(),
        ],
    )
    run(spark, ours)
    # The watermark is now T0 + 37 min - 200 s = T0 + 33:40. With session windows an event is
    # too late when its time + the 30-minute gap is behind the watermark.
    send(
        ours,
        [
            pageview(a, "s1", T0 + 4 * MIN, "/products/socks"),  # late, within the watermark
            pageview(b, "s9", T0 + 2 * MIN + 10_000, "/too-late"),  # ends 32:10: dropped
            pageview(a, "s1", T0 + 5 * MIN + 31 * MIN, "/again"),  # 31 idle minutes: new session
        ],
    )
    second = run(spark, ours)
    assert second.stats["sessions.sessions"].late_rows_dropped == 1
    # Close every open session: an event far in the future moves the watermark past them.
    send(ours, [pageview(str(uuid.uuid4()), "z", T0 + 300 * MIN, "/")])
    run(spark, ours)
    run(spark, ours)

    rows = sessions(ours)
    mine = [r for r in rows if r["visitor_id"] in (a, b)]
    assert [(r["visitor_id"], r["session_id"], r["pageviews"]) for r in mine] == [
        (a, "s1", 4),
        (b, "s9", 1),
        (a, "s1", 1),
    ]
    first = mine[0]
    assert [p.removeprefix("https://shop.example.com") for p in first["pages"]] == [
        "/",
        "/products/shoes",
        "/products/socks",
        "/cart",
    ]
    assert first["landing_page_codes"] == [1, 0, 0, 0]
    assert first["referrers"][0] == "https://www.google.com/"
    assert first["duration_ms"] == 5 * MIN
    assert first["entry_page"] == "https://shop.example.com/"
    assert first["exit_page"] == "https://shop.example.com/cart"
    assert len(first["hit_timestamps"]) == 4
    assert mine[2]["pages"] == ["https://shop.example.com/again"]

    # The warehouse loaded the Parquet files the executors wrote: the same sessions.
    files = read_parquet(f"{ours.files_url}/sessions")
    in_files = [r for r in files if r["visitor_id"] in (a, b)]
    assert sorted(r["session_key"] for r in in_files) == sorted(r["session_key"] for r in mine)
    in_file = {r["session_key"]: r for r in in_files}[first["session_key"]]
    assert in_file["session_start"] == first["session_start"]
    assert in_file["session_start"] == datetime.fromtimestamp(T0 / 1000, UTC)
    assert in_file["hit_timestamps"] == first["hit_timestamps"]
    assert in_file["pages"] == first["pages"]
    assert not list(Path(ours.files_url, "sessions").rglob("*.avro"))

    dead = [value for _, value in read_topic(ours, ours.topics.dead_letter)]
    assert sorted(d["reason"] for d in dead) == [
        "missing or invalid field uiud",
        "not a JSON object",
    ]
    assert {d["sourceTopic"] for d in dead} == {ours.topics.web_events}
    assert all(isinstance(d["sourceOffset"], int) for d in dead)


def test_retried_event_counts_once(spark, settings: Settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ours = job_settings(settings, tmp_path)
    v = str(uuid.uuid4())
    twice = pageview(v, "s", T0 + MIN, "/a", eventId="same")
    send(ours, [pageview(v, "s", T0, "/"), twice, twice, pageview(v, "s", T0 + 300 * MIN, "/z")])
    run(spark, ours)
    run(spark, ours)
    (row,) = [r for r in sessions(ours) if r["visitor_id"] == v and r["pageviews"] > 1]
    assert row["pageviews"] == 2


def test_sessions_and_dead_letters_come_from_one_read_and_parse(  # type: ignore[no-untyped-def]
    spark, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One query: its plan parses the topic once, and the dead letters' side reuses the
    shuffle the session windows read (no second read, no second shuffle)."""
    ours = job_settings(settings, tmp_path)
    v = str(uuid.uuid4())
    send(ours, [pageview(v, "s", T0, "/"), b"{not json", pageview(v, "s", T0 + 300 * MIN, "/z")])
    job = run(spark, ours)
    assert [q.name for q in job.queries] == ["sessions.sessions"]
    capsys.readouterr()
    job.queries[0].explain()
    plan = capsys.readouterr().out
    assert plan.count("from_json(") == 1, plan
    assert plan.count("ReusedExchange") == 1, plan
    assert len(re.findall(r"\+- Exchange hashpartitioning", plan)) == 1, plan
    assert [r["reason"] for _, r in read_topic(ours, ours.topics.dead_letter)] == [
        "not a JSON object"
    ]
    assert [r["pageviews"] for r in sessions(ours) if r["visitor_id"] == v] == [1]


HOLD_LOCK = (
    "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
    "sys.stdin.read()"
)


@pytest.mark.parametrize("files", ["parquet", "avro"])
def test_replayed_batch_leaves_no_duplicates(  # type: ignore[no-untyped-def]
    spark, settings: Settings, tmp_path: Path, files: str
) -> None:
    """The warehouse is locked by another process, so the batch fails after writing its files
    (Parquet, or Avro with ``files.format``) and before Spark commits it. The restart replays
    it: no duplicate file or row."""
    ours = job_settings(settings, tmp_path, lock_timeout_s=1.0)
    ours = ours.model_copy(update={"files": ours.files.model_copy(update={"format": files})})
    read_files = read_parquet if files == "parquet" else read_avro
    visitors = [str(uuid.uuid4()) for _ in range(5)]
    send(ours, [pageview(v, "s", T0 + i * MIN, "/") for i, v in enumerate(visitors)])
    run(spark, ours)  # the sessions are open: they stay in Spark's state
    send(ours, [pageview(str(uuid.uuid4()), "z", T0 + 300 * MIN, "/")])  # closes them

    with connect(ours.duckdb_path) as con:  # create the file so the other process can lock it
        con.execute("SELECT 1")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(ours.duckdb_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JobFailedError, match="cannot open the warehouse"):
            run(spark, ours)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    written = read_files(f"{ours.files_url}/sessions")
    assert sorted(r["visitor_id"] for r in written) == sorted(visitors)

    run(spark, ours)
    time.sleep(0.1)
    rows = sessions(ours)
    assert sorted(r["visitor_id"] for r in rows) == sorted(visitors)
    again = read_files(f"{ours.files_url}/sessions")
    assert sorted(r["session_key"] for r in again) == sorted(r["session_key"] for r in rows)
    in_file = {r["session_key"]: r for r in again}
    for row in rows:
        assert in_file[row["session_key"]]["session_start"] == row["session_start"]
        assert in_file[row["session_key"]]["pages"] == row["pages"]
    if files == "avro":
        # No array item is ever null: plain arrays (BigQuery cannot load null items).
        items = avro_array_items(f"{ours.files_url}/sessions")
        assert items["pages"] == "string"
        assert items["hit_timestamps"]["logicalType"] == "timestamp-micros"
        assert items["referrers"] == "string"
        assert items["landing_page_codes"] == "int"


def avro_array_items(url: str) -> dict[str, Any]:
    """The item type of each array column in the first Avro file under ``url``."""
    import fastavro
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    first = sorted(fs.glob(f"{path}/**/*.avro"))[0]
    with fs.open(first, "rb") as fh:
        schema = cast(dict[str, Any], fastavro.reader(fh).writer_schema)
    items = {}
    for field in schema["fields"]:
        kind = field["type"][1]
        if isinstance(kind, dict) and kind.get("type") == "array":
            items[field["name"]] = kind["items"]
    return items


def test_bigquery_with_local_files_leaves_out_the_sessions_load_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from clickstream.jobs import sessions
    from clickstream.settings import load_settings

    env = {"CLICKSTREAM_DATA_DIR": str(tmp_path), "CLICKSTREAM_WAREHOUSE_BIGQUERY_PROJECT": "p"}
    with caplog.at_level("WARNING", logger="clickstream.jobs.sessions"):
        local = sessions.sinks(load_settings(environ=env))
    assert [sink.name for sink in local] == [s.name for s in local if "bigquery" not in s.name]
    assert len(local) == 2
    (warning,) = caplog.records
    assert "not a gs:// URL" in warning.getMessage()
    assert "CLICKSTREAM_FILES_URL=gs://" in warning.getMessage()
    caplog.clear()
    on_gcs = sessions.sinks(load_settings(environ=env | {"CLICKSTREAM_FILES_URL": "gs://b/f"}))
    assert [sink.name for sink in on_gcs][-1] == "bigquery:sessions"
    assert caplog.records == []
