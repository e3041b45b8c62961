"""The stream-joins simulators on the real broker: users with stable ids, page events from a
consumer group that does not repeat the users it has done after a restart."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from clickstream.errors import ConfigError
from clickstream.events.joins import EVENTS, user_id_of
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings
from clickstream.simulators.joins import fake_pages, simulate_page_events, simulate_users
from tests.conftest import cli_env, read_topic


def joins_settings(settings: Settings) -> Settings:
    tag = uuid.uuid4().hex[:8]
    joins = settings.joins.model_copy(
        update={"users_topic": f"CorpAppsTopic-{tag}", "events_topic": f"test-{tag}"}
    )
    ensure_topics(settings, [joins.users_topic, joins.events_topic], partitions=2)
    return settings.model_copy(update={"joins": joins})


def test_user_id_is_a_stable_hash_of_the_email() -> None:
    assert user_id_of("Anna@Example.org ") == user_id_of("anna@example.org")
    assert user_id_of("anna@example.org") != user_id_of("ivan@example.org")
    # Another process (another hash seed) derives the same id.
    other = subprocess.run(
        [sys.executable, "-c", "from clickstream.events.joins import user_id_of as f;"
         "print(f('anna@example.org'))"],
        capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )  # fmt: skip
    assert other.stdout.strip() == user_id_of("anna@example.org")
    assert re.fullmatch(r"-?\d+", user_id_of("anna@example.org"))


def test_users_then_page_events_without_repeats_after_a_restart(settings: Settings) -> None:
    ours = joins_settings(settings)
    assert simulate_users(ours, rate=0, count=6, seed=1).users == 6
    first = simulate_page_events(ours, count=6, seed=1, group_id=f"g-{ours.joins.events_topic}")
    assert first.users == 6
    simulate_users(ours, rate=0, count=4, seed=2)
    again = simulate_page_events(
        ours, count=10, seed=1, group_id=f"g-{ours.joins.events_topic}", idle_s=5
    )
    assert again.users == 4  # the group's committed offsets: only the new users

    users = [v for _k, v in read_topic(ours, ours.joins.users_topic)]
    assert len(users) == 10
    for user in users:
        assert set(user) == {"event_timestamp", "user_id", "email", "name"}
        assert user["user_id"] == user_id_of(user["email"])
        assert re.search("[А-Яа-яЁё]", user["name"]), user["name"]  # ru_RU names
    events = [v for _k, v in read_topic(ours, ours.joins.events_topic)]
    per_user = Counter(e["user_id"] for e in events)
    assert set(per_user) == {u["user_id"] for u in users}
    assert all(1 <= n <= 10 for n in per_user.values())
    assert len(events) == first.events + again.events
    assert {e["event"] for e in events} <= set(EVENTS)
    assert {e["page"] for e in events} <= set(fake_pages(1))
    assert len(fake_pages(1)) == 100


def test_unbounded_without_endless_is_refused(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="count"):
        simulate_users(settings, rate=1)


def test_cli_simulate_users(settings: Settings, tmp_path: Path) -> None:
    ours = joins_settings(settings)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "clickstream"), "simulate", "users", "--count", "3",
         "--rate", "0"],
        env=cli_env(
            CLICKSTREAM_DATA_DIR=str(tmp_path),
            CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(ours.kafka.bootstrap_servers),
            CLICKSTREAM_JOINS_USERS_TOPIC=ours.joins.users_topic,
        ),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"sent 3 users to {ours.joins.users_topic}" in result.stdout
    assert len(read_topic(ours, ours.joins.users_topic)) == 3
