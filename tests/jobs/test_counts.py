"""The count jobs end to end: topic -> Spark (update mode) -> result topic + `window_counts`."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clickstream.errors import ConfigError
from clickstream.events.shop import ACTIONS, GENDERS, ShopEvent
from clickstream.jobs import builder
from clickstream.settings import Settings
from clickstream.streaming.runner import start_job
from tests.conftest import read_topic
from tests.jobs.counts_support import (
    T0,
    checkpoint_dir,
    count_settings,
    expected_shop,
    latest_counts,
    run,
    send,
    shop_events,
    table_counts,
    undo_batches,
)

pytestmark = pytest.mark.slow


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
            CLICKSTREAM_TOPICS_SHOP_GENDERS=s.topics.shop_genders,
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
    checkpoint = checkpoint_dir(s) / "shop" / "counts"
    snapshots = checkpoint / "tally"
    (before,) = snapshots.iterdir()
    saved = before.read_bytes()
    send(s, s.topics.shop, second)
    run(spark, s, "shop")
    last = max(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    assert (snapshots / f"{last}.json").exists()

    # Died after writing the batch's counts and its snapshot, before Spark's commit.
    undo_batches(checkpoint, last)
    run(spark, s, "shop")
    assert (checkpoint / "commits" / str(last)).exists()
    assert table_counts(s, "shop.") == expected_shop(first + second)

    # Died after writing the batch's counts, before its snapshot and Spark's commit.
    undo_batches(checkpoint, last)
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
    (checkpoint_dir(s) / "shop" / "counts" / "state" / "0").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"checkpoint .*shop/counts was written by .*delete it"):
        start_job(spark, s, builder("shop"), available_now=True)


def test_shop_times_written_as_local_times_are_read_in_the_source_time_zone(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """``jobs.source_timezone`` (here UTC-5): a shop event's ``timestamp`` written as a local
    time counts in the window of the instant it names; epoch milliseconds are read as they
    are; a time that is neither is dead-lettered with what was expected."""
    s = count_settings(settings, tmp_path)
    s = s.model_copy(
        update={"jobs": s.jobs.model_copy(update={"source_timezone": "America/Bogota"})}
    )
    local = b'{"user_id": 1, "action": 2, "gender": 1, "timestamp": "2025-12-31 19:00:02"}'
    digits = b'{"user_id": 2, "action": 2, "gender": 1, "timestamp": "1767225602500"}'
    zoned = b'{"user_id": 3, "action": 2, "gender": 1, "timestamp": "2026-01-01 00:00:02Z"}'
    send(s, s.topics.shop, [local, digits, zoned])
    send(s, s.topics.shop, [ShopEvent(user_id=4, action=2, gender=1, timestamp=T0 + 2_000)])
    run(spark, s, "shop")
    assert latest_counts(s) == {
        ("shop.gender", T0 + 2_000, "male"): 3,
        ("shop.action", T0 + 2_000, "purchase"): 3,
    }
    reasons = [value["reason"] for _, value in read_topic(s, s.topics.dead_letter)]
    assert reasons == ["field timestamp: expected epoch milliseconds or a time yyyy-MM-dd HH:mm:ss"]


def test_each_count_says_how_fresh_it_is(spark: Any, settings: Settings, tmp_path: Path) -> None:
    """Every record on the result topic carries the newest event time its job had counted and
    when it was written (the dashboard's panel ages and `clickstream status` read them)."""
    import time

    s = count_settings(settings, tmp_path)
    first = shop_events(50, seed=3)
    send(s, s.topics.shop, first)
    before = int(time.time() * 1000)
    run(spark, s, "shop")
    after = int(time.time() * 1000)
    records = [value for _, value in read_topic(s, s.topics.results)]
    assert records
    assert {r["newest_event_ms"] for r in records} == {max(e.timestamp for e in first)}
    assert all(before <= r["written_ms"] <= after for r in records)

    # A later batch of older events (still within the watermark): the newest stays the newest.
    older = [ShopEvent(user_id=1, action=0, gender=0, timestamp=T0 + 1_000)]
    send(s, s.topics.shop, older)
    run(spark, s, "shop")
    newer = [value for _, value in read_topic(s, s.topics.results)][len(records) :]
    assert newer
    assert {r["newest_event_ms"] for r in newer} == {max(e.timestamp for e in first)}
