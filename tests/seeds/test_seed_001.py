"""Seed 001 as written: its producer sends the gender byte alone to topic ``sex``; the shop job
counts it per second in ``shop.gender`` (and nothing else); ``clickstream results tail`` prints
what the seed's console consumer printed, from a result topic named ``result``."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clickstream.events.shop import ShopEvent
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings
from clickstream.simulators.shop import generate_shop_rows, write_shop_csv
from tests.conftest import cli_env, read_topic
from tests.jobs.counts_support import T0, count_settings, latest_counts, run, send, table_counts
from tests.seeds.producers import KafkaProducer, records_with_times, seed_001

pytestmark = pytest.mark.slow

ROWS = 300


def seed_lines(records: list[tuple[int, bytes, bytes | None]]) -> list[str]:
    """What the seed computed and printed: per second (of arrival), the count of each gender
    word, as json4s wrote ``rdd.collect`` (``[{"0":5},{"1":3}]``). An empty gender is left out:
    the seed's own consumer app reads only "0" and "1", and the job dead-letters it."""
    per_second: dict[int, Counter[str]] = {}
    for at, value, _ in records:
        if value:
            per_second.setdefault(at // 1000, Counter())[value.decode()] += 1
    return [
        msgspec.json.encode([{k: n} for k, n in sorted(per_second[s].items())]).decode()
        for s in sorted(per_second)
    ]


def test_the_seeds_producer_counted_per_second_and_tailed_as_the_seed_printed(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    s = s.model_copy(update={"topics": s.topics.model_copy(update={"results": "result"})})
    ensure_topics(s, ["result"], partitions=2)
    log = tmp_path / "user_log.csv"
    rows = list(itertools.islice(generate_shop_rows(seed=11), ROWS))
    write_shop_csv(log, rows)
    assert log.read_text().startswith(
        "user_id,item_id,cat_id,merchant_id,brand_id,month,day,action,age_range,gender,province\n"
    )

    producer = KafkaProducer(bootstrap_servers=str(s.kafka.bootstrap_servers))
    seed_001(producer, log, topic=s.topics.shop_genders, pause_s=0.004)
    sent = records_with_times(s, s.topics.shop_genders)
    assert len(sent) == ROWS
    assert all(key is None for *_, key in sent)
    assert Counter(v for _, v, _ in sent) == Counter(
        b"" if r.gender is None else str(r.gender).encode() for r in rows
    )

    run(spark, s, "shop")

    counts = latest_counts(s)
    labels = {b"0": "female", b"1": "male", b"2": "unknown"}
    expected: Counter[tuple[str, int, str]] = Counter()
    for at, value, _ in sent:
        if value:
            expected["shop.gender", at // 1000 * 1000, labels[value]] += 1
    assert counts == dict(expected)  # gender only: no shop.action count
    assert table_counts(s, "shop.action") == {}
    empties = sum(1 for _, v, _ in sent if not v)
    reasons = [value["reason"] for _, value in read_topic(s, s.topics.dead_letter)]
    assert reasons == ["empty value"] * empties

    want = seed_lines(sent)
    tail = subprocess.run(
        [sys.executable, "-m", "clickstream", "results", "tail", "--from-beginning",
         "--count", str(len(want)), "--settle", "0.5"],
        env=cli_env(
            CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(s.kafka.bootstrap_servers),
            CLICKSTREAM_TOPICS_RESULTS="result",
        ),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout.splitlines() == want


def test_either_form_on_either_topic(spark: Any, settings: Settings, tmp_path: Path) -> None:
    """Shop events and gender bytes mixed on the shop topic and on ``sex``: each event counts
    in both metrics, each gender byte in ``shop.gender`` only (at its arrival second)."""
    s = count_settings(settings, tmp_path)
    at = T0 + 5_000
    events = [ShopEvent(user_id=i, action=i % 4, gender=i % 3, timestamp=at) for i in range(6)]
    send(s, s.topics.shop, [*events, b"1", b" 0\n"])
    send(s, s.topics.shop_genders, [*events[:2], b"2", b"3", b"01"])
    run(spark, s, "shop")

    counts = latest_counts(s)
    arrived = {t // 1000 * 1000 for t, v, _ in records_with_times(s, s.topics.shop) if len(v) < 4}
    arrived |= {t // 1000 * 1000 for t, v, _ in records_with_times(s, s.topics.shop_genders)}
    event_counts = {k: v for k, v in counts.items() if k[1] == at}
    assert event_counts == {
        ("shop.gender", at, "female"): 3,
        ("shop.gender", at, "male"): 3,
        ("shop.gender", at, "unknown"): 2,
        ("shop.action", at, "click"): 3,
        ("shop.action", at, "cart"): 3,
        ("shop.action", at, "purchase"): 1,
        ("shop.action", at, "favourite"): 1,
    }
    bare: Counter[str] = Counter()
    for key, n in counts.items():
        if key[1] != at:
            assert key[0] == "shop.gender"
            assert key[1] in arrived
            bare[key[2]] += n
    assert bare == {"male": 1, "female": 1, "unknown": 1}
    reasons = sorted(value["reason"] for _, value in read_topic(s, s.topics.dead_letter))
    assert reasons == ["not a JSON object", "not a JSON object"]  # 3 and 01


def test_simulate_shop_seed_format_sends_the_gender_byte_to_sex(
    settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    log = tmp_path / "user_log.csv"
    rows = list(itertools.islice(generate_shop_rows(seed=12), 80))
    write_shop_csv(log, rows)
    result = subprocess.run(
        [sys.executable, "-m", "clickstream", "simulate", "shop", str(log), "--seed-format",
         "--rate", "0"],
        env=cli_env(
            CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(s.kafka.bootstrap_servers),
            CLICKSTREAM_TOPICS_SHOP_GENDERS=s.topics.shop_genders,
        ),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"sent 80 events to {s.topics.shop_genders}" in result.stdout
    sent = records_with_times(s, s.topics.shop_genders)
    assert all(key is None for *_, key in sent)
    assert Counter(v for _, v, _ in sent) == Counter(
        b"" if r.gender is None else str(r.gender).encode() for r in rows
    )
