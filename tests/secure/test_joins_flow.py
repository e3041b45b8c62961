"""The whole seed-003 flow over a secured broker: the users simulator, the page-events
simulator (a consumer group), the joins job with Spark's own Kafka source (SASL_SSL, SCRAM) and
with clickstream's Python source (mutual TLS), results and dead letters written back."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from clickstream.jobs import builder
from clickstream.jobs.joins import NAME
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.simulators.joins import simulate_page_events, simulate_users
from clickstream.sinks.duckdb_table import connect
from clickstream.streaming.runner import start_job
from tests.conftest import read_topic
from tests.secure.conftest import SecureBroker

pytestmark = pytest.mark.slow


def flow_settings(
    secure_broker: SecureBroker, tmp_path: Path, mechanism: str, source: str
) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = secure_broker.settings(
        tmp_path,
        mechanism,
        CLICKSTREAM_SPARK_KAFKA_SOURCE=source,
        CLICKSTREAM_JOINS_USERS_TOPIC=f"CorpAppsTopic-{tag}",
        CLICKSTREAM_JOINS_EVENTS_TOPIC=f"test-{tag}",
        CLICKSTREAM_TOPICS_RESULTS=f"results-{tag}",
        CLICKSTREAM_TOPICS_DEAD_LETTER=f"dead-{tag}",
    )
    joins, topics = settings.joins, settings.topics
    ensure_topics(
        settings,
        [joins.users_topic, joins.events_topic, topics.results, topics.dead_letter],
        partitions=2,
    )
    return settings


@pytest.mark.parametrize(("mechanism", "source"), [("SCRAM-SHA-256", "native"), ("mTLS", "python")])
def test_seed_flow_over_a_secured_broker(
    spark: Any, secure_broker: SecureBroker, tmp_path: Path, mechanism: str, source: str
) -> None:
    settings = flow_settings(secure_broker, tmp_path, mechanism, source)
    users = simulate_users(settings, rate=0, count=12, seed=7)
    events = simulate_page_events(settings, count=12, seed=7, idle_s=30)
    assert (users.users, events.users) == (12, 12)
    assert 12 <= events.events <= 120
    producer = make_producer(settings)
    producer.produce(settings.joins.events_topic, b'{"user_id": 1}')
    producer.flush()

    start_job(spark, settings, builder(NAME), available_now=True).await_all()

    sent = [v for _k, v in read_topic(settings, settings.joins.events_topic)]
    per_user = Counter(e["user_id"] for e in sent if "event" in e)
    per_type = Counter(e["event"] for e in sent if "event" in e)
    assert sum(per_user.values()) == events.events
    with connect(settings.duckdb_path, read_only=True) as con:
        got_users = dict(
            con.execute("SELECT user_id, event_count FROM user_event_counts").fetchall()
        )
        got_types = dict(con.execute("SELECT event, count FROM event_type_counts").fetchall())
        names = con.execute("SELECT count(*) FROM user_event_counts WHERE name IS NULL").fetchone()
    assert got_users == dict(per_user)
    assert got_types == dict(per_type)
    assert names == (0,)
    results = read_topic(settings, settings.topics.results)
    assert {v["metric"] for _k, v in results} >= {"joins.user_events", "joins.event_types"}
    dead = [v for _k, v in read_topic(settings, settings.topics.dead_letter)]
    assert [d["reason"] for d in dead] == ["missing field event_timestamp"]
    assert json.loads(dead[0]["value"]) == {"user_id": 1}
