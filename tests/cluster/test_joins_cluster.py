"""The joins job on the standalone cluster (two workers, so its tasks run in two executor
processes), in client mode: its totals equal a DuckDB query over the input, as on `local[2]`
(tests/jobs/test_joins.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clickstream.jobs.joins import NAME
from clickstream.settings import Settings
from tests.cluster.conftest import BIN, WORKERS, Cluster, alive_workers
from tests.conftest import JARS_DIR
from tests.jobs.join_data import expected, join_settings, make_input, send
from tests.jobs.test_joins import warehouse

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_joins_job_on_two_workers_gives_the_same_totals(
    cluster: Cluster, settings: Settings, tmp_path: Path
) -> None:
    job = join_settings(settings, tmp_path, max_offsets_per_trigger=60)
    data = make_input(seed=11, users=30)
    send(job, data)
    env = dict(cluster.env)
    env.update(
        CLICKSTREAM_JARS_DIR=str(JARS_DIR),
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(job.kafka.bootstrap_servers),
        CLICKSTREAM_DATA_DIR=str(tmp_path),
        CLICKSTREAM_SPARK_SHUFFLE_PARTITIONS="2",
        CLICKSTREAM_SPARK_DRIVER_MEMORY="1g",
        CLICKSTREAM_JOBS_DRIVER_REDUCE_MAX="0",  # every batch aggregated by the executors
        CLICKSTREAM_TOPICS_RESULTS=job.topics.results,
        CLICKSTREAM_TOPICS_DEAD_LETTER=job.topics.dead_letter,
        CLICKSTREAM_JOINS_USERS_TOPIC=job.joins.users_topic,
        CLICKSTREAM_JOINS_EVENTS_TOPIC=job.joins.events_topic,
        CLICKSTREAM_JOINS_MAX_OFFSETS_PER_TRIGGER="60",
    )
    result = subprocess.run(
        [str(BIN / "clickstream"), "jobs", "run", NAME, "--available-now",
         "--master", cluster.url],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"queries started on {cluster.url}" in result.stdout
    assert alive_workers(cluster.ui) == WORKERS == 2
    assert warehouse(job) == expected([data])
