"""Seed 000 as written: its Flask API put every hit on topic ``webevent`` with every field a
string and ``timestamp`` the API host's local time (``%Y-%m-%d %H:%M:%S``). The sessions job
reads those records in ``jobs.source_timezone`` and makes the sessions the seed's job made."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clickstream.settings import Settings
from tests.conftest import read_topic
from tests.jobs.counts_support import count_settings, latest_counts
from tests.jobs.counts_support import run as run_job
from tests.jobs.test_sessions import job_settings, run, sessions
from tests.seeds.producers import host_clock, records_with_times, seed_000, seed_000_record

pytestmark = pytest.mark.slow
SITE = "https://kickassdataprojects.com"


def snippet_hit(at_ms: int, uiud: str, session: int, page: str, landing: int) -> dict[str, Any]:
    """What the seed's JavaScript snippet posted for a pageview."""
    return {
        "timestamp": at_ms,
        "lastPageVisited": "",
        "pageUrl": f"{SITE}{page}",
        "pageTitle": page.strip("/").title(),
        "eventType": "Pageview",
        "landingPage": landing,
        "referrer": "direct",
        "uiud": uiud,
        "sessionId": session,
    }


def visits(now_ms: int) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Two closed sessions an hour ago and one open now; the closed ones by uiud."""
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    first = [
        snippet_hit(now_ms - 3_600_000, a, 101, "/", 1),
        snippet_hit(now_ms - 3_540_000, a, 101, "/about-me/", 0),
        snippet_hit(now_ms - 3_480_000, a, 101, "/bigquery-guide/", 0),
    ]
    second = [snippet_hit(now_ms - 3_000_000, b, 202, "/spark/", 1)]
    last = [snippet_hit(now_ms - 5_000, c, 303, "/", 1)]  # moves the watermark past the others
    return [*first, *second, *last], {a: first, b: second}


def quick(settings: Settings, tmp_path: Path, zone: str) -> Settings:
    s = job_settings(settings, tmp_path)
    jobs = s.jobs.model_copy(
        update={"session_gap_s": 300, "watermark_s": 10, "source_timezone": zone}
    )
    return s.model_copy(update={"jobs": jobs})


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Bogota"])  # UTC+9, UTC-5
def test_the_apis_records_make_the_seeds_sessions(
    spark: Any, settings: Settings, tmp_path: Path, zone: str
) -> None:
    s = quick(settings, tmp_path, zone)
    now_ms = int(time.time() * 1000)
    hits, closed = visits(now_ms)
    with host_clock(zone):
        record = seed_000_record(hits[0])
        seed_000(str(s.kafka.bootstrap_servers), hits, topic=s.topics.web_events)
    assert record["landingPage"] == "1"
    assert record["sessionId"] == "101"
    assert len(record["timestamp"]) == 19
    assert "pageTitle" not in record

    run(spark, s)

    assert read_topic(s, s.topics.dead_letter) == []
    rows = {row["visitor_id"]: row for row in sessions(s)}
    assert set(rows) == set(closed)
    for uiud, made in closed.items():
        row = rows[uiud]
        seconds = [hit["timestamp"] // 1000 * 1000 for hit in made]  # the API drops the ms
        assert row["session_id"] == str(made[0]["sessionId"])
        assert row["pages"] == [hit["pageUrl"] for hit in made]
        assert row["landing_page_codes"] == [hit["landingPage"] for hit in made]
        assert row["referrers"] == ["direct"] * len(made)
        assert row["pageviews"] == len(made)
        assert int(row["session_start"].timestamp() * 1000) == seconds[0]
        assert int(row["session_end"].timestamp() * 1000) == seconds[-1]
        assert row["duration_ms"] == seconds[-1] - seconds[0]


def test_read_as_utc_the_records_of_a_host_east_of_utc_are_ahead_of_their_arrival(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """The problem ``jobs.source_timezone`` solves: left at UTC, the newest local times of a host
    at UTC+9 are 9 hours ahead of when they reached Kafka, and are dead-lettered as such."""
    s = quick(settings, tmp_path, "UTC")
    hits, _ = visits(int(time.time() * 1000))
    with host_clock("Asia/Tokyo"):
        seed_000(str(s.kafka.bootstrap_servers), hits, topic=s.topics.web_events)
    run(spark, s)
    reasons = [value["reason"] for _, value in read_topic(s, s.topics.dead_letter)]
    assert reasons == ["field timestamp is more than 3600 s ahead of its arrival in Kafka"] * len(
        hits
    )
    assert not s.duckdb_path.exists() or sessions(s) == []  # no batch had a session


def test_web_live_counts_the_apis_records_in_the_second_they_arrived(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """The API's records have no ``receivedAt`` (the collector's receive time) and no
    ``eventId``: ``web-live`` counts each at its Kafka timestamp, none merged as a retry."""
    s = count_settings(settings, tmp_path)
    jobs = s.jobs.model_copy(update={"source_timezone": "Asia/Tokyo"})
    s = s.model_copy(update={"jobs": jobs})
    now_ms = int(time.time() * 1000)
    hits, _ = visits(now_ms)
    with host_clock("Asia/Tokyo"):
        seed_000(str(s.kafka.bootstrap_servers), hits, topic=s.topics.web_events)
    arrived = [at for at, _, _ in records_with_times(s, s.topics.web_events)]
    assert len(arrived) == len(hits)

    run_job(spark, s, "web-live")

    counts = latest_counts(s)
    pages: Counter[tuple[int, str]] = Counter()
    for at, hit in zip(sorted(arrived), hits, strict=True):
        pages[at // 1000 * 1000, hit["pageUrl"].removeprefix(SITE)] += 1
    found = {(start, key): n for (metric, start, key), n in counts.items() if metric == "web.pages"}
    assert found == dict(pages)
    assert read_topic(s, s.topics.dead_letter) == []
