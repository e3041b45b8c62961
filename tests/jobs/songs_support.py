"""Helpers of the songs tests: settings with fresh topics, the seed's producer re-created, what
the counts should be."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from clickstream.jobs.songs import ALL_TIME_END
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings

Expected = dict[tuple[str, int, str], int]


def songs_settings(settings: Settings, tmp_path: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    topics = {"results": f"results-{tag}", "dead_letter": f"dead-{tag}"}
    songs = f"plays-{tag}"
    ensure_topics(settings, [*topics.values(), songs], partitions=2)
    return settings.model_copy(
        update={
            "data_dir": tmp_path,
            "topics": settings.topics.model_copy(update=topics),
            "songs": settings.songs.model_copy(update={"topic": songs}),
        }
    )


def seed_producer(bootstrap: str, topic: str, plays: int) -> list[dict[str, Any]]:
    """The seed's producer.py, re-created: confluent_kafka's Producer, Faker's payload, a receipt
    callback, poll(1) and flush() after each play (without its 3-s sleep). Returns the payloads."""
    from confluent_kafka import Producer
    from faker import Faker

    fake = Faker()
    songs = [
        "zombie", "lady", "secret-agent", "kindness", "soldiers",
        "asiko", "the-same-blood", "upside-down", "african-man", "vip",
    ]  # fmt: skip
    p = Producer({"bootstrap.servers": bootstrap})
    receipts: list[str] = []
    sent = []

    def receipt(err: Any, msg: Any) -> None:
        receipts.append("failed" if err is not None else msg.value().decode("utf-8"))

    for _ in range(plays):
        random_song_id = fake.random_int(min=0, max=9)
        data = {
            "user_id": fake.random_int(min=20000, max=100000),
            "artist": "tony-allen",
            "song_id": random_song_id,
            "song_name": songs[random_song_id],
            "event_type": "song_completed",
            "timestamp": str(fake.date_time_this_month()),
        }
        m = json.dumps(data)
        p.produce(topic, m.encode("utf-8"), callback=receipt)
        p.poll(1)
        p.flush()
        sent.append(data)
    assert len(receipts) == plays
    assert "failed" not in receipts
    return sent


def played_ms(play: dict[str, Any], zone: str = "UTC") -> int:
    """When ``play`` was played: its ``timestamp``, a local time in ``zone``."""
    moment = datetime.fromisoformat(play["timestamp"]).replace(tzinfo=ZoneInfo(zone))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def expected_counts(plays: list[dict[str, Any]], zone: str = "UTC") -> Expected:
    counts: Counter[tuple[str, int, str]] = Counter()
    for play in plays:
        key = f"{play['artist']}/{play['song_name']}"
        at = played_ms(play, zone)
        counts["songs.minute", at // 60_000 * 60_000, key] += 1
        counts["songs.hour", at // 3_600_000 * 3_600_000, key] += 1
        counts["songs.all", 0, key] += 1
    return dict(counts)


def latest_song_counts(records: list[Any]) -> Expected:
    found: Expected = {}
    for _, value in records:
        if not value["metric"].startswith("songs."):
            continue
        size = {"songs.minute": 60_000, "songs.hour": 3_600_000}.get(value["metric"])
        end = ALL_TIME_END if size is None else value["window_start"] + size
        assert value["window_end"] == end
        found[(value["metric"], value["window_start"], value["key"])] = value["count"]
    return found


def forget_last_batch(checkpoint: Path) -> int:
    """Delete the newest commit of a query's checkpoint: Spark runs that batch again."""
    commits = sorted(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    (checkpoint / "commits" / str(commits[-1])).unlink()
    (checkpoint / "commits" / f".{commits[-1]}.crc").unlink(missing_ok=True)
    return commits[-1]
