"""The jobs on a real Spark standalone cluster (master + one worker, `spark://127.0.0.1`),
in client mode (`clickstream jobs run --master`) and through `spark-submit`: their results equal
those of `local[2]` on the same input."""

from __future__ import annotations

import random
import subprocess
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

import clickstream.jobs.submit
from clickstream.events.shop import ShopEvent
from clickstream.jobs import builder
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import connect
from clickstream.streaming.runner import start_job
from tests.cluster.conftest import BIN, Cluster
from tests.conftest import JARS_DIR, read_topic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # the local run and the cluster: setup
T0 = 1_767_225_600_000
MIN = 60_000
JOBS = ["sessions", "shop", "web-live"]
PER_BATCH = 25
"""Records per micro-batch: several batches per job, so the watermark moves and sessions
close within one run."""


def web(rng: random.Random, visitor: int, at_ms: int, kind: str = "Pageview") -> bytes:
    return msgspec.json.encode(
        {
            "eventId": str(uuid.UUID(int=rng.getrandbits(128))),
            "eventType": kind,
            "timestamp": at_ms,
            "receivedAt": at_ms,
            "uiud": f"visitor-{visitor}",
            "sessionId": f"s{visitor}",
            "pageUrl": f"https://shop.example.com/p{rng.randrange(4)}",
            "referrer": rng.choice([None, "https://www.google.com/x"]),
            "landingPage": 0,
        }
    )


@pytest.fixture(scope="module")
def inputs(settings: Settings) -> dict[str, str]:
    """Input topics, filled once: shop events, pageviews whose sessions close (an event far
    later moves the watermark), pings, and a few bad records."""
    tag = uuid.uuid4().hex[:8]
    names = {"shop": f"shop-{tag}", "shop_genders": f"sex-{tag}", "web_events": f"web-{tag}",
             "web_pings": f"ping-{tag}", "web_custom": f"custom-{tag}"}  # fmt: skip
    # The shop job reads the gender topic too: its own, made before the query starts (a topic
    # made by another test while the query runs fails Spark's Kafka source).
    ensure_topics(settings, [names["shop"], names["shop_genders"]], partitions=2)
    ensure_topics(settings, [names[k] for k in ("web_events", "web_pings", "web_custom")], 1)
    rng = random.Random(17)
    producer = make_producer(settings)
    for i in range(60):
        event = ShopEvent(
            user_id=rng.randrange(9),
            action=rng.randrange(4),
            gender=rng.choice([0, 1, 2, None]),
            timestamp=T0 + rng.randrange(5000),
        )
        producer.produce(names["shop"], msgspec.json.encode(event), key=str(i).encode())
    producer.produce(names["shop"], b"not json", key=b"bad")
    pageviews = [web(rng, v, T0 + rng.randrange(5 * MIN)) for v in range(8) for _ in range(3)]
    pageviews.append(web(rng, 99, T0 + 300 * MIN))  # closes the sessions before
    pageviews += [web(rng, 100 + v, T0 + 300 * MIN + v * 1000) for v in range(20)]
    for value in pageviews:
        producer.produce(names["web_events"], value, key=b"k")
    for v in range(15):
        producer.produce(names["web_pings"], web(rng, v, T0 + 300 * MIN + v, "PagePing"))
    producer.produce(names["web_pings"], b"{broken", key=b"bad")
    producer.flush()
    return names


def run_settings(settings: Settings, inputs: dict[str, str], data: Path) -> Settings:
    tag = uuid.uuid4().hex[:8]
    outputs = {"results": f"results-{tag}", "dead_letter": f"dead-{tag}"}
    ensure_topics(settings, list(outputs.values()), partitions=1)
    return settings.model_copy(
        update={
            "data_dir": data,
            "topics": settings.topics.model_copy(update={**inputs, **outputs}),
            "spark": settings.spark.model_copy(update={"max_offsets_per_trigger": PER_BATCH}),
        }
    )


def env_of(s: Settings, cluster: Cluster) -> dict[str, str]:
    env = dict(cluster.env)
    env.update(
        CLICKSTREAM_JARS_DIR=str(JARS_DIR),
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(s.kafka.bootstrap_servers),
        CLICKSTREAM_DATA_DIR=str(s.data_dir),
        CLICKSTREAM_SPARK_MAX_OFFSETS_PER_TRIGGER=str(PER_BATCH),
        CLICKSTREAM_SPARK_SHUFFLE_PARTITIONS="2",
        CLICKSTREAM_SPARK_DRIVER_MEMORY="1g",
        CLICKSTREAM_JOBS_DRIVER_REDUCE_MAX="0",  # the executors reduce; local[2] the driver
    )
    for name in ("shop", "web_events", "web_pings", "web_custom", "results", "dead_letter"):
        env[f"CLICKSTREAM_TOPICS_{name.upper()}"] = getattr(s.topics, name)
    return env


def results(s: Settings) -> dict[str, Any]:
    """Everything the jobs wrote: newest count per result key, the two warehouse tables, and
    the dead letters' reasons."""
    counts = {key: value["count"] for key, value in read_topic(s, s.topics.results)}
    with connect(s.duckdb_path, read_only=True) as con:
        query = "SELECT metric, epoch_ms(window_start), key, count FROM window_counts"
        table = sorted(con.execute(query).fetchall())
        cursor = con.execute("SELECT * FROM sessions ORDER BY session_key")
        names = [d[0] for d in cursor.description]
        sessions = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    dead = sorted(value["reason"] for _, value in read_topic(s, s.topics.dead_letter))
    return {"counts": counts, "table": table, "sessions": sessions, "dead": dead}


@pytest.fixture(scope="module")
def local_results(
    spark: Any, settings: Settings, inputs: dict[str, str], tmp_path_factory: Any
) -> dict[str, Any]:
    s = run_settings(settings, inputs, tmp_path_factory.mktemp("local"))
    for name in JOBS:
        start_job(spark, s, builder(name), available_now=True).await_all(300)
    found = results(s)
    # Enough to compare: every job wrote something.
    assert len(found["sessions"]) == 8
    metrics = {k.decode().split("|")[0] for k in found["counts"]}
    assert metrics >= {"shop.gender", "shop.action", "web.pages", "web.active_sessions"}
    assert found["dead"] == ["not a JSON object"] * 2
    return found


def check(result: subprocess.CompletedProcess[str], s: Settings, local: dict[str, Any]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert results(s) == local


def test_client_mode_on_the_cluster_equals_local(
    cluster: Cluster, settings: Settings, inputs: dict[str, str], local_results: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    s = run_settings(settings, inputs, tmp_path)
    result = subprocess.run(
        [str(BIN / "clickstream"), "jobs", "run", *JOBS, "--available-now",
         "--master", cluster.url],
        env=env_of(s, cluster), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert f"queries started on {cluster.url}" in result.stdout
    check(result, s, local_results)


def test_spark_submit_to_the_cluster_equals_local(
    cluster: Cluster, settings: Settings, inputs: dict[str, str], local_results: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """As docs/deployment.md shows it, with the Kafka connector given to spark-submit (the jars
    `clickstream jars fetch` cached, as `--jars` instead of `--packages`: no network)."""
    s = run_settings(settings, inputs, tmp_path)
    jars = sorted(JARS_DIR.glob("spark-sql-kafka-*/*.jar"))
    assert jars, "the connector is cached by the local run first"
    result = subprocess.run(
        [str(BIN / "spark-submit"), "--master", cluster.url, "--driver-memory", "1g",
         "--executor-memory", "768m", "--jars", ",".join(map(str, jars)),
         clickstream.jobs.submit.__file__, *JOBS, "--available-now"],
        env=env_of(s, cluster), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert f"queries started on {cluster.url}" in result.stdout
    check(result, s, local_results)
