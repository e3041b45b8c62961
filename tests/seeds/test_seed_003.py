"""Seed 003 as written: its first app publishes users to ``CorpAppsTopic``, its second reads
them and publishes each one's page events to ``test``, both stamping the local time of their
host. The joins job's views answer what the seed's third app computed with pandas: events per
known user (with name and email) and events per type."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from clickstream.settings import Settings
from tests.conftest import read_topic
from tests.jobs.join_data import join_settings
from tests.jobs.test_joins import run, warehouse
from tests.seeds.producers import host_clock, seed_003_aggregates, seed_003_events, seed_003_users

pytestmark = pytest.mark.slow
USERS = 25


def test_the_seeds_apps_feed_the_join_and_it_answers_as_pandas_did(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """On a host at UTC+9 (seed 000's test and seed 004's cover UTC-5)."""
    zone = "Asia/Tokyo"
    s = join_settings(settings, tmp_path)
    s = s.model_copy(update={"jobs": s.jobs.model_copy(update={"source_timezone": zone})})
    servers = str(s.kafka.bootstrap_servers)
    with host_clock(zone):
        users = seed_003_users(servers, USERS, topic=s.joins.users_topic, pause_s=0.01)
        events = seed_003_events(
            servers, USERS, s.joins.users_topic, s.joins.events_topic, random.Random(3)
        )
    per_user, per_type = seed_003_aggregates(users, events)
    assert len(per_user) == USERS
    assert sum(per_type.values()) == len(events)

    run(spark, s)

    found = warehouse(s)
    assert read_topic(s, s.topics.dead_letter) == []  # no local time is "ahead of arrival"
    assert {(uid, n, e): c for uid, (n, e, c) in found["per_user"].items()} == per_user
    assert found["types"] == per_type
    assert found["unmatched"] == {}
