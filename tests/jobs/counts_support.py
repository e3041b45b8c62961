"""Shared by the count-job tests: topics of their own, the counts read back from the result
topic and the warehouse, the events sent, and a crash simulated on a query's checkpoint."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec

from clickstream.events.shop import ACTIONS, GENDERS, ShopEvent
from clickstream.events.web import EnrichedWebEvent
from clickstream.jobs import builder
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import connect
from clickstream.streaming import checkpoint
from clickstream.streaming.runner import start_job
from tests.conftest import read_topic

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z

Expected = dict[tuple[str, int, str], int]


def checkpoint_dir(settings: Settings) -> Path:
    """The local folder of the jobs' checkpoints."""
    found = checkpoint.local_root(settings)
    assert found is not None
    return found


def count_settings(settings: Settings, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    names = {
        "shop": f"shop-{tag}",
        "shop_genders": f"sex-{tag}",
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
    job = start_job(spark, settings, builder(name), available_now=True)
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


def web_pages(settings: Settings) -> dict[tuple[int, str], int]:
    """The newest ``web.pages`` counts of the result topic, (window start, page) -> count, once
    checked to equal the warehouse's."""
    pages = {k[1:]: v for k, v in latest_counts(settings).items() if k[0] == "web.pages"}
    assert table_counts(settings, "web.pages") == {("web.pages", *k): v for k, v in pages.items()}
    return pages


def undo_batches(query: Path, batch: int) -> None:
    """As if the process died before Spark committed ``batch`` of the query whose checkpoint is
    ``query``: its commit and those of the batches after it, and the offsets of those after it,
    are gone (Spark runs ``batch`` again on the next start)."""
    for log in ("commits", "offsets"):
        for path in (query / log).iterdir():
            number = path.name.removeprefix(".").removesuffix(".crc")
            if number.isdigit() and int(number) > batch - (log == "commits"):
                path.unlink()
