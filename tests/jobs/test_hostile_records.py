"""Records produced straight to Kafka (no collector in front) that once stopped a job for good:
each is dead-lettered with a reason that says what is wrong, the query keeps running, and the
normal events after it are counted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clickstream.events.shop import ShopEvent
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.sinks.kafka_topic import MAX_RECORD_BYTES, KafkaTopic, records
from tests.conftest import read_topic
from tests.jobs.counts_support import (
    count_settings,
    expected_shop,
    latest_counts,
    run,
    table_counts,
    web_event,
)
from tests.jobs.test_sessions import job_settings, pageview, sessions
from tests.jobs.test_sessions import run as run_sessions
from tests.jobs.test_sessions import send as send_pageviews

pytestmark = pytest.mark.slow
YEAR_2999 = 32_472_144_000_000
NOW = int(time.time() * 1000) // 1000 * 1000


def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(settings, **{"message.max.bytes": 2_000_000})
    for value in values:
        producer.produce(topic, value, key=b"k")
    producer.flush()


def reasons(settings: Settings) -> list[str]:
    return sorted(value["reason"] for _, value in read_topic(settings, settings.topics.dead_letter))


def shop(**fields: Any) -> bytes:
    return json.dumps({"user_id": 1, "action": 0, "gender": 1, "timestamp": NOW, **fields}).encode()


def test_shop_dead_letters_wrong_types_bad_bytes_and_impossible_times(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    first = [ShopEvent(user_id=i, action=0, gender=i % 2, timestamp=NOW - 3000) for i in range(5)]
    hostile = [
        shop(user_id="abc"),
        shop(timestamp=1.5e12),
        shop(action=[1]),
        b'{"user_id": 1, "action": 0, "province": "\xff\xfe", "timestamp": 1}',
        shop(timestamp=YEAR_2999),
        shop(timestamp=-1000),
        shop(province="x" * 65),
    ]
    produce(s, s.topics.shop, [msgspec.json.encode(e) for e in first] + hostile)
    run(spark, s, "shop")
    # Next events, a second later: counted (a year-2999 event would have moved the watermark
    # 973 years ahead, and made them late).
    second = [ShopEvent(user_id=9, action=2, gender=0, timestamp=NOW - 2000) for _ in range(3)]
    produce(s, s.topics.shop, [msgspec.json.encode(e) for e in second])
    job = run(spark, s, "shop")

    assert latest_counts(s) == expected_shop(first + second)
    assert table_counts(s, "shop.") == expected_shop(first + second)
    assert job.stats["shop.counts"].late_rows_dropped == 0
    assert reasons(s) == sorted(
        [
            "field user_id: expected an integer",
            "field timestamp: expected epoch milliseconds or a time yyyy-MM-dd HH:mm:ss",
            "field action: expected an integer",
            "value is not valid UTF-8",
            "field timestamp is more than 3600 s ahead of its arrival in Kafka",
            "field timestamp is before 1970",
            "field province is longer than 64 characters",
        ]
    )
    letters = [value for _, value in read_topic(s, s.topics.dead_letter)]
    (binary,) = [v for v in letters if v["reason"] == "value is not valid UTF-8"]
    assert "value" not in binary  # the bytes are in base64
    assert binary["valueBase64"]
    assert all(v["sourceTopic"] == s.topics.shop for v in letters)


def test_web_live_survives_oversized_fields(spark: Any, settings: Settings, tmp_path: Path) -> None:
    """A 600 KB referrer or a 900 KB page URL once made a result key larger than Kafka takes:
    the query died, and died again on every replay of the batch."""
    s = count_settings(settings, tmp_path)
    huge_referrer = web_event(
        "Pageview", NOW - 2000, "/", "s1", "https://x.example/" + "r" * 600_000
    )
    huge_url = web_event("Pageview", NOW - 2000, "/" + "p" * 900_000, "s2", None)
    custom = web_event("Custom", NOW - 2000, "/", "s3", None)
    custom.name = "n" * 300_000
    fine = [web_event("Pageview", NOW - 2000, "/ok", f"s{i}", None) for i in range(4)]
    enc = msgspec.json.encode
    produce(s, s.topics.web_events, [enc(huge_referrer), enc(huge_url), *map(enc, fine)])
    produce(s, s.topics.web_custom, [enc(custom)])
    run(spark, s, "web-live")
    later = [web_event("Pageview", NOW - 1000, "/next", "s9", None)]
    produce(s, s.topics.web_events, list(map(enc, later)))
    run(spark, s, "web-live")

    got = latest_counts(s)
    pages = {k[1:]: v for k, v in got.items() if k[0] == "web.pages"}
    assert pages == {(NOW - 2000, "/ok"): 4, (NOW - 1000, "/next"): 1}
    # Pageviews are dead-lettered by the sessions job; this one dead-letters custom events.
    letters = [value for _, value in read_topic(s, s.topics.dead_letter)]
    assert [v["reason"] for v in letters] == ["field name is longer than 256 characters"]
    assert letters[0]["valueBytes"] > 300_000
    assert len(letters[0]["value"]) == 65_536


def test_sessions_ignore_a_pageview_from_year_2999(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """One far-future pageview once pushed the watermark 973 years ahead: every later pageview
    was dropped as late, every open session closed early, and the checkpoint kept it so."""
    s = job_settings(settings, tmp_path)
    s = s.model_copy(update={"jobs": s.jobs.model_copy(update={"session_gap_s": 60})})
    start = NOW - 3_600_000
    future = pageview("v0", "x", YEAR_2999, "/future")
    send_pageviews(s, [pageview("v1", "a", start, "/"), future])
    run_sessions(spark, s)
    later = [pageview("v1", "a", start + 10_000 * i, f"/p{i}") for i in range(1, 4)]
    closing = pageview("v2", "b", start + 1_800_000, "/")  # moves the watermark past session a
    send_pageviews(s, [*later, closing])
    job = run_sessions(spark, s)

    (first,) = [row for row in sessions(s) if row["visitor_id"] == "v1"]
    assert first["pageviews"] == 4
    assert first["pages"] == [f"https://shop.example.com{p}" for p in ("/", "/p1", "/p2", "/p3")]
    assert job.stats["sessions.sessions"].late_rows_dropped == 0
    assert reasons(s) == ["field timestamp is more than 3600 s ahead of its arrival in Kafka"]


def test_an_oversized_result_is_dead_lettered_not_fatal(settings: Settings, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic, dead = new_topic(partitions=1), new_topic(partitions=1)
    s = settings.model_copy(
        update={"topics": settings.topics.model_copy(update={"dead_letter": dead})}
    )
    sink = KafkaTopic.from_settings(s, topic, small=True)
    big = b'"' + b"v" * MAX_RECORD_BYTES + b'"'
    sent = records([(b"a", b'"small"'), (b"b" * 100, big), (b"c", b'"small too"')])
    assert sink.write(sent, 0) == 3
    assert sink.too_large == 1
    assert [value for _, value in read_topic(s, topic)] == ["small", "small too"]
    ((_, letter),) = read_topic(s, dead)
    assert letter["reason"].startswith(f"record of {len(big) + 100} bytes is larger than Kafka")
    assert letter["targetTopic"] == topic
    assert len(letter["value"]) == 65_536
