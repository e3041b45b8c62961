"""`clickstream dead-letters list` and `replay`, end to end on the shop job: records refused
under `jobs.max_future_s` are listed by reason, sent back after the setting is raised, and then
count exactly once; a record that fails again is dead-lettered again; a later run does not send
back what an earlier one did."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clickstream.dead_letters import Selection, parse_since, scan
from clickstream.events.shop import ShopEvent
from clickstream.settings import Settings
from tests.conftest import cli_env
from tests.jobs.counts_support import count_settings, expected_shop, latest_counts, run, send

pytestmark = pytest.mark.slow
AHEAD = "field timestamp is more than 3600 s ahead of its arrival in Kafka"


def cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "clickstream", "dead-letters", *args],
        env=cli_env(
            CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(settings.kafka.bootstrap_servers),
            CLICKSTREAM_TOPICS_DEAD_LETTER=settings.topics.dead_letter,
        ),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def groups(settings: Settings) -> dict[str, tuple[int, int]]:
    """Reason -> (records, replayed), as `list` counts them."""
    return {g.reason: (g.count, g.replayed) for g in scan(settings).groups()}


def test_refused_records_replayed_after_the_fix_count_exactly_once(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    now = int(time.time() * 1000)
    good = [ShopEvent(user_id=i, action=0, gender=0, timestamp=now - 5_000) for i in range(5)]
    ahead = [  # a producer whose clock is two hours fast
        ShopEvent(user_id=100 + i, action=2, gender=1, timestamp=now + 7_200_000 + i)
        for i in range(4)
    ]
    send(s, s.topics.shop, [*good, *ahead, b"not json"])
    run(spark, s, "shop")
    assert latest_counts(s) == expected_shop(good)
    assert groups(s) == {AHEAD: (4, 0), "not a JSON object": (1, 0)}
    listed = cli(s, "list")
    assert AHEAD[:40] in listed
    assert "5 dead letters" in listed
    assert "1 dead letters" in cli(s, "list", "--reason", "JSON", "--source", s.topics.shop)
    assert "0 dead letters" in cli(s, "list", "--source", "elsewhere")

    # The fix: allow clocks three hours ahead. The refused records go back, and count.
    fixed = s.model_copy(update={"jobs": s.jobs.model_copy(update={"max_future_s": 10_800})})
    assert "would send 4 of 4" in cli(s, "replay", "--reason", "ahead of its arrival", "--dry-run")
    out = cli(s, "replay", "--reason", "ahead of its arrival")
    assert f"sent 4 of 4 selected dead letters back: 4 to {s.topics.shop}" in out
    run(spark, fixed, "shop")
    assert latest_counts(s) == expected_shop(good + ahead)
    assert groups(s) == {AHEAD: (4, 4), "not a JSON object": (1, 0)}

    # Run again: nothing is sent twice, and nothing counts twice.
    out = cli(s, "replay", "--reason", "ahead of its arrival")
    assert "sent 0 of 4" in out
    assert "4 were sent back by an earlier run" in out
    run(spark, fixed, "shop")
    assert latest_counts(s) == expected_shop(good + ahead)

    # A record that fails again is dead-lettered again, as a new dead letter; the next run sends
    # back that one only.
    assert "sent 1 of 1" in cli(s, "replay", "--reason", "JSON")
    run(spark, fixed, "shop")
    assert groups(s)["not a JSON object"] == (2, 1)
    assert "sent 1 of 2" in cli(s, "replay", "--reason", "JSON")
    assert latest_counts(s) == expected_shop(good + ahead)


def test_selection_and_since() -> None:
    now = 1_767_225_600_000
    assert parse_since("2h", now) == now - 7_200_000
    assert parse_since("2026-01-01T00:00:00Z") == now
    assert parse_since("2026-01-01 09:00:00+09:00") == now
    with pytest.raises(Exception, match="an age"):
        parse_since("yesterday")
    pick = Selection(reason="AHEAD", source="shop", since_ms=now)
    from clickstream.dead_letters import DeadLetter

    letter = DeadLetter(0, 1, now, AHEAD, "shop", None, b"{}", now)
    assert pick(letter)
    assert not pick(DeadLetter(0, 1, now - 1, AHEAD, "shop", None, b"{}", now))
    assert not pick(DeadLetter(0, 1, now, AHEAD, "web", None, b"{}", now))
    assert not pick(DeadLetter(0, 1, now, "not a JSON object", "shop", None, b"x", now))
