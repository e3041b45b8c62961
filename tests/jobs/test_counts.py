"""The count jobs end to end: topic -> Spark (update mode) -> result topic + `window_counts`."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clickstream.errors import ConfigError
from clickstream.events.shop import ACTIONS, GENDERS, ShopEvent
from clickstream.events.web import EnrichedWebEvent
from clickstream.jobs.runner import start_job
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import connect
from tests.conftest import read_topic

pytestmark = pytest.mark.slow
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

Expected = dict[tuple[str, int, str], int]


def count_settings(settings: Settings, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    names = {
        "shop": f"shop-{tag}",
        "results": f"results-{tag}",
        "dead_letter": f"dead-{tag}",
        "web_events": f"web-{tag}",
        "web_pings": f"ping-{tag}",
        "web_custom": f"custom-{tag}",
    }
    ensure_topics(settings, list(names.values()), partitions=2)
    # The executors' reduction, however small the batch (the driver's is tested against it in
    # test_checkpoints.py).
    jobs = settings.jobs.model_copy(update={"driver_reduce_max": 0})
    return settings.model_copy(
        update={
            "data_dir": tmp_path,
            "topics": settings.topics.model_copy(update=names),
            "jobs": jobs,
        }
    )


def latest_counts(settings: Settings) -> Expected:
    """The newest count of each (metric, window_start, key) in the result topic."""
    found: Expected = {}
    for key, value in read_topic(settings, settings.topics.results):
        metric, start, name = key.decode().split("|", 2)
        assert (value["metric"], value["window_start"], value["key"]) == (metric, int(start), name)
        length = 300_000 if metric == "web.active_sessions" else 1000
        assert value["window_end"] == value["window_start"] + length
        found[(metric, int(start), name)] = value["count"]
    return found


def table_counts(settings: Settings, metric_prefix: str) -> Expected:
    with connect(settings.duckdb_path, read_only=True) as con:
        rows = con.execute(
            "SELECT metric, epoch_ms(window_start), key, count FROM window_counts"
            " WHERE metric LIKE ? || '%'",
            [metric_prefix],
        ).fetchall()
    return {(metric, start, key): count for metric, start, key, count in rows}


def run(spark: Any, settings: Settings, name: str) -> Any:
    job = start_job(spark, settings, name, available_now=True)
    job.await_all(300)
    return job


def shop_events(n: int, seed: int) -> list[ShopEvent]:
    rng = random.Random(seed)
    return [
        ShopEvent(
            user_id=rng.randrange(50),
            action=rng.choice([0, 0, 0, 1, 2, 3]),
            gender=rng.choice([0, 0, 1, 2, None]),
            timestamp=T0 + rng.randrange(4000),
        )
        for _ in range(n)
    ]


def expected_shop(events: list[ShopEvent]) -> Expected:
    counts: Counter[tuple[str, int, str]] = Counter()
    for e in events:
        second = e.timestamp // 1000 * 1000
        counts["shop.gender", second, GENDERS.get(e.gender, "unknown")] += 1  # type: ignore[arg-type]
        counts["shop.action", second, ACTIONS[e.action]] += 1
    return dict(counts)


def send(settings: Settings, topic: str, records: list[Any]) -> None:
    producer = make_producer(settings)
    for record in records:
        value = record if isinstance(record, bytes) else msgspec.json.encode(record)
        producer.produce(topic, value, key=b"k")
    producer.flush()


def test_shop_counts_per_second_by_gender_and_action(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    first = shop_events(300, seed=1)
    bad = [
        b"not json",
        b'{"user_id": 1, "action": 7, "timestamp": 1767225600000}',
        b'{"action": 1, "timestamp": 1767225600000}',
        b'{"user_id": 1, "action": 1, "gender": 5, "timestamp": 1767225600000}',
    ]
    send(s, s.topics.shop, [*first, *bad])
    job = run(spark, s, "shop")

    assert latest_counts(s) == expected_shop(first)
    assert table_counts(s, "shop.") == expected_shop(first)
    reasons = sorted(value["reason"] for _, value in read_topic(s, s.topics.dead_letter))
    assert reasons == [
        "action must be 0, 1, 2 or 3",
        "gender must be 0, 1 or 2",
        "missing or invalid field user_id",
        "not a JSON object",
    ]
    assert job.stats["shop.counts"].input_rows == len(first) + len(bad)

    # More events in the same windows, in a later micro-batch: the counts grow (update mode),
    # the table holds one row per window and key, and a run with nothing new changes nothing.
    second = shop_events(200, seed=2)
    send(s, s.topics.shop, second)
    run(spark, s, "shop")
    assert latest_counts(s) == expected_shop(first + second)
    assert table_counts(s, "shop.") == expected_shop(first + second)
    records = len(read_topic(s, s.topics.results))
    run(spark, s, "shop")
    assert len(read_topic(s, s.topics.results)) == records
    assert table_counts(s, "shop.") == expected_shop(first + second)


def test_shop_events_later_than_the_watermark_are_dropped(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    on_time = [ShopEvent(user_id=1, action=0, gender=0, timestamp=T0 + 60_000)]
    send(s, s.topics.shop, on_time)
    run(spark, s, "shop")
    # 60 s behind the newest event: past the 10 s watermark, so not counted.
    too_late = ShopEvent(user_id=2, action=0, gender=1, timestamp=T0)
    send(s, s.topics.shop, [too_late])
    job = run(spark, s, "shop")
    assert ("shop.gender", T0, "male") not in latest_counts(s)
    assert job.stats["shop.counts"].late_rows_dropped == 1


def web_event(
    kind: str, at_ms: int, page: str, session: str, referrer: str | None
) -> EnrichedWebEvent:
    return EnrichedWebEvent(
        eventId=str(uuid.uuid4()),
        eventType=kind,  # type: ignore[arg-type]
        timestamp=at_ms - 5_000,
        receivedAt=at_ms,
        uiud=f"visitor-{session}",
        sessionId=session,
        pageUrl=f"https://shop.example.com{page}?utm_source=x",
        referrer=referrer,
        engagedMs=10_000 if kind == "PagePing" else None,
        name="signup" if kind == "Custom" else None,
    )


def test_web_live_counts(spark: Any, settings: Settings, tmp_path: Path) -> None:
    s = count_settings(settings, tmp_path)
    pageviews = [
        web_event("Pageview", T0 + 100, "/", "s1", "https://www.google.com/search?q=x"),
        web_event("Pageview", T0 + 200, "/pricing", "s1", "direct"),
        web_event("Pageview", T0 + 900, "/pricing", "s2", None),
        web_event("Pageview", T0 + 1500, "/", "s3", "https://news.ycombinator.com/"),
    ]
    pings = [web_event("PagePing", T0 + 1600, "/", "s3", None)]
    custom = [web_event("Custom", T0 + 1700, "/pricing", "s2", None)]
    send(s, s.topics.web_events, pageviews)
    send(s, s.topics.web_pings, [*pings, b"{}"])
    send(s, s.topics.web_custom, custom)
    run(spark, s, "web-live")

    got = latest_counts(s)
    per_second = {k: v for k, v in got.items() if k[0] != "web.active_sessions"}
    assert per_second == {
        ("web.pageviews", T0, "Pageview"): 3,
        ("web.pageviews", T0 + 1000, "Pageview"): 1,
        ("web.pageviews", T0 + 1000, "PagePing"): 1,
        ("web.pageviews", T0 + 1000, "Custom"): 1,
        ("web.pages", T0, "/"): 1,
        ("web.pages", T0, "/pricing"): 2,
        ("web.pages", T0 + 1000, "/"): 1,
        ("web.referrers", T0, "www.google.com"): 1,
        ("web.referrers", T0, "direct"): 2,
        ("web.referrers", T0 + 1000, "news.ycombinator.com"): 1,
    }
    # Every 5-minute window (sliding by 10 s) holding the events saw the 3 sessions.
    active = {k[1]: v for k, v in got.items() if k[0] == "web.active_sessions"}
    assert sorted(active) == [T0 - 290_000 + 10_000 * i for i in range(30)]
    assert set(active.values()) == {3}
    assert table_counts(s, "web.") == got
    dead = read_topic(s, s.topics.dead_letter)
    assert [value["sourceTopic"] for _, value in dead] == [s.topics.web_pings]


def test_a_retried_web_event_counts_once(spark: Any, settings: Settings, tmp_path: Path) -> None:
    """A client that got no answer (or a 503 for an event that was stored after all) sends the
    event again: same eventId, a later receive time, maybe a later micro-batch. It counts once."""
    s = count_settings(settings, tmp_path)
    first = web_event("Pageview", T0 + 100, "/", "s1", None)
    other = web_event("Pageview", T0 + 200, "/", "s2", None)
    again = msgspec.structs.replace(first, receivedAt=T0 + 900)
    send(s, s.topics.web_events, [first, other, again])
    run(spark, s, "web-live")
    retry = msgspec.structs.replace(first, receivedAt=T0 + 3_100)
    send(s, s.topics.web_events, [retry, web_event("Pageview", T0 + 3_200, "/", "s3", None)])
    run(spark, s, "web-live")

    pages = {k[1:]: v for k, v in latest_counts(s).items() if k[0] == "web.pages"}
    assert pages == {(T0, "/"): 2, (T0 + 3000, "/"): 1}
    assert table_counts(s, "web.pages") == {("web.pages", *k): v for k, v in pages.items()}


def test_a_retry_in_a_batch_replayed_after_a_crash_still_counts_once(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """Retries are removed by Spark's state on the executors: a batch Spark runs again (the
    process died before its commit) sees the ids of the batches before it, not its own."""
    s = count_settings(settings, tmp_path)
    first = web_event("Pageview", T0 + 100, "/", "s1", None)
    send(s, s.topics.web_events, [first])
    run(spark, s, "web-live")
    checkpoint = s.checkpoint_dir / "web-live" / "counts"
    (before,) = (checkpoint / "tally").glob("*.json")
    saved = before.read_bytes()
    retry = msgspec.structs.replace(first, receivedAt=T0 + 1_300)
    send(s, s.topics.web_events, [retry, web_event("Pageview", T0 + 1_400, "/", "s2", None)])
    run(spark, s, "web-live")
    assert (checkpoint / "state" / "0").is_dir()
    # Died after writing the counts of the retry's batch, before its snapshot and commit (the
    # batches after it, without data, were never run).
    retried = int(before.stem) + 1
    for log in ("commits", "offsets"):
        for path in (checkpoint / log).iterdir():
            number = path.name.removeprefix(".").removesuffix(".crc")
            if number.isdigit() and int(number) > retried - (log == "commits"):
                path.unlink()
    for path in (checkpoint / "tally").glob("*.json"):
        path.unlink()
    before.write_bytes(saved)
    replay = run(spark, s, "web-live")
    assert replay.stats["web-live.counts"].input_rows == 2  # the retry's batch ran again
    pages = {k[1:]: v for k, v in latest_counts(s).items() if k[0] == "web.pages"}
    assert pages == {(T0, "/"): 1, (T0 + 1000, "/"): 1}
    assert table_counts(s, "web.pages") == {("web.pages", *k): v for k, v in pages.items()}


def test_a_web_event_older_than_the_retry_horizon_is_late_and_bad_ones_are_kept(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """Spark's deduplication drops events behind its watermark (jobs.dedup_s) before looking at
    their ids: those are late for the counts too, and counted as late; a malformed record in
    the same batch still reaches the dead-letter topic."""
    s = count_settings(settings, tmp_path)
    send(s, s.topics.web_events, [web_event("Pageview", T0 + 200_000, "/new", "s1", None)])
    run(spark, s, "web-live")
    old = web_event("Pageview", T0, "/old", "s2", None)  # 200 s behind: past the 120 s
    send(s, s.topics.web_events, [old])
    send(s, s.topics.web_pings, [b"{}"])
    job = run(spark, s, "web-live")
    pages = {k[1:]: v for k, v in latest_counts(s).items() if k[0] == "web.pages"}
    assert pages == {(T0 + 200_000, "/new"): 1}
    assert job.stats["web-live.counts"].late_rows_dropped == 1
    dead = read_topic(s, s.topics.dead_letter)
    assert [value["sourceTopic"] for _, value in dead] == [s.topics.web_pings]


def test_a_web_live_checkpoint_without_retry_state_is_refused_with_what_to_do(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """The version before removed retries on the driver and kept no Spark state: Spark would
    fail on the state it expects for the committed batches."""
    s = count_settings(settings, tmp_path)
    query = s.checkpoint_dir / "web-live" / "counts"
    (query / "commits").mkdir(parents=True)
    (query / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}')
    with pytest.raises(ConfigError, match=r"counts was written by .*kept no Spark state.*delete"):
        start_job(spark, s, "web-live", available_now=True)
    # Two versions before, the counts were Spark's stateful aggregation.
    metadata = query / "state" / "0" / "_metadata"
    metadata.mkdir(parents=True)
    info = {"operatorInfo": {"operatorId": 0, "operatorName": "stateStoreSave"}}
    (metadata / "metadata").write_text("v1\n" + json.dumps(info))
    with pytest.raises(ConfigError, match=r"kept the state of stateStoreSave.*delete"):
        start_job(spark, s, "web-live", available_now=True)


SHOP_CSV = """\
user_id,item_id,cat_id,merchant_id,brand_id,month,day,action,age_range,gender,province
{rows}
"""


def test_replayed_csv_counts_match_the_file(spark: Any, settings: Settings, tmp_path: Path) -> None:
    """The seed's flow: a user_log.csv replayed by `clickstream simulate shop` (malformed lines
    skipped, genders missing), counted per second by the shop job; the result topic's counts
    equal those computed from the file alone."""
    import csv
    import subprocess
    import sys

    from tests.conftest import cli_env

    s = count_settings(settings, tmp_path)
    rng = random.Random(5)
    lines = []
    for i in range(57):
        gender = rng.choice(["0", "0", "1", "2", ""])
        action = rng.choice(["0", "0", "0", "1", "2", "3"])
        lines.append(f"{1000 + i % 9},{i},833,2882,2661,08,29,{action},3,{gender},Zhejiang")
    lines[10] = "1009,5,833,2882,2661,08,29,0,3,x,Zhejiang"  # bad gender
    lines[20] = "1009,5,833,2882,08,29,0,3,1,Zhejiang"  # a column short
    lines[30] = "abc,5,833,2882,2661,08,29,0,3,1,Zhejiang"  # bad user id
    path = tmp_path / "user_log.csv"
    path.write_text(SHOP_CSV.format(rows="\n".join(lines)))

    start_ms = T0 + 3_600_000
    replay = subprocess.run(
        [sys.executable, "-m", "clickstream", "simulate", "shop", str(path), "--rate", "10",
         "--start", "2026-01-01T01:00:00Z", "--topic", s.topics.shop],
        env=cli_env(CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(s.kafka.bootstrap_servers)),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    for line in (12, 22, 32):
        assert f"line {line}:" in replay.stderr
    run(spark, s, "shop")

    # Expected, from the file alone: the k-th good row's event time is start + k * 100 ms.
    expected: Counter[tuple[str, int, str]] = Counter()
    with path.open() as fh:
        good_rows = [
            row for row in csv.DictReader(fh)
            if len(row) == 11 and None not in row.values() and row["user_id"].isdigit()
            and row["gender"] in ("0", "1", "2", "")
        ]  # fmt: skip
    assert len(good_rows) == 54
    for k, row in enumerate(good_rows):
        second = (start_ms + k * 100) // 1000 * 1000
        gender = GENDERS[int(row["gender"])] if row["gender"] else "unknown"
        expected["shop.gender", second, gender] += 1
        expected["shop.action", second, ACTIONS[int(row["action"])]] += 1
    assert latest_counts(s) == dict(expected)
    assert table_counts(s, "shop.") == dict(expected)


def test_spark_submit_runs_the_jobs(settings: Settings, tmp_path: Path) -> None:
    """The documented production path: spark-submit with the `clickstream.jobs.submit` module."""
    import os
    import subprocess
    import sys

    import clickstream.jobs.submit
    from clickstream.spark.java import find_java_home
    from tests.conftest import cli_env

    s = count_settings(settings, tmp_path)
    events = shop_events(50, seed=3)
    send(s, s.topics.shop, events)
    java_home = find_java_home(None, os.environ)
    assert java_home is not None
    result = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[1]",
         clickstream.jobs.submit.__file__, "shop", "--available-now"],
        env=cli_env(
            JAVA_HOME=str(java_home),
            PYSPARK_PYTHON=sys.executable,
            CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(s.kafka.bootstrap_servers),
            CLICKSTREAM_DATA_DIR=str(tmp_path),
            CLICKSTREAM_TOPICS_SHOP=s.topics.shop,
            CLICKSTREAM_TOPICS_RESULTS=s.topics.results,
            CLICKSTREAM_TOPICS_DEAD_LETTER=s.topics.dead_letter,
        ),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "queries started on local[1]" in result.stdout
    assert latest_counts(s) == expected_shop(events)


def test_a_batch_replayed_after_a_crash_is_counted_once(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """Spark runs a micro-batch again when the process died before it committed it. Whether the
    counts of that batch were kept (the tally's snapshot) or not, the counts come out the same."""
    s = count_settings(settings, tmp_path)
    first, second = shop_events(150, seed=6), shop_events(150, seed=7)
    send(s, s.topics.shop, first)
    run(spark, s, "shop")
    checkpoint = s.checkpoint_dir / "shop" / "counts"
    snapshots = checkpoint / "tally"
    (before,) = snapshots.iterdir()
    saved = before.read_bytes()
    send(s, s.topics.shop, second)
    run(spark, s, "shop")
    last = max(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    assert (snapshots / f"{last}.json").exists()

    def uncommit() -> None:
        for name in (str(last), f".{last}.crc"):
            (checkpoint / "commits" / name).unlink(missing_ok=True)

    # Died after writing the batch's counts and its snapshot, before Spark's commit.
    uncommit()
    run(spark, s, "shop")
    assert (checkpoint / "commits" / str(last)).exists()
    assert table_counts(s, "shop.") == expected_shop(first + second)

    # Died after writing the batch's counts, before its snapshot and Spark's commit.
    uncommit()
    (snapshots / f"{last}.json").unlink()
    before.write_bytes(saved)
    run(spark, s, "shop")
    assert table_counts(s, "shop.") == expected_shop(first + second)
    assert latest_counts(s) == expected_shop(first + second)


def test_a_checkpoint_of_the_stateful_count_query_is_refused_with_what_to_do(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """Earlier versions counted with Spark state; Spark's own error on such a checkpoint
    (STREAMING_STATEFUL_OPERATOR_NOT_MATCH_IN_STATE_METADATA) does not say what to do."""
    s = count_settings(settings, tmp_path)
    (s.checkpoint_dir / "shop" / "counts" / "state" / "0").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"checkpoint .*shop/counts was written by .*delete it"):
        start_job(spark, s, "shop", available_now=True)
