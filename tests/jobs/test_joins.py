"""The joins job end to end on a real broker and Spark: its totals equal a DuckDB query over
the same input (out of order, users re-sent with new details, events before their user, users
an hour and a year older than their events, unknown users, bad records), and a replayed or
killed-and-restarted run gives the same totals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clickstream.errors import ConfigError, JobFailedError
from clickstream.events.joins import user_id_of
from clickstream.jobs import builder
from clickstream.jobs.joins import EVENT_TYPES, NAME, QUERY, UNMATCHED, USER_EVENTS
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import connect, writing
from clickstream.streaming.checkpoint import query_location
from clickstream.streaming.runner import start_job
from tests.conftest import cli_env, read_topic, wait_for
from tests.jobs.join_data import (
    JoinInput,
    expected,
    join_settings,
    make_input,
    newest_time_ms,
    page_event,
    send,
    user_record,
)

pytestmark = pytest.mark.slow


def run(spark: Any, settings: Settings) -> None:
    start_job(spark, settings, builder(NAME), available_now=True).await_all()


def warehouse(settings: Settings) -> dict[str, Any]:
    with connect(settings.duckdb_path, read_only=True) as con:
        per_user = con.execute(
            "SELECT user_id, name, email, event_count FROM user_event_counts"
        ).fetchall()
        types = con.execute("SELECT event, count FROM event_type_counts").fetchall()
        unmatched = con.execute(
            "SELECT user_id, event_count FROM unmatched_event_counts"
        ).fetchall()
    return {
        "per_user": {r[0]: (r[1], r[2], r[3]) for r in per_user},
        "types": dict(types),
        "unmatched": dict(unmatched),
    }


def topic_totals(settings: Settings) -> dict[str, Any]:
    """The newest result of each key in the result topic, shaped as :func:`warehouse`."""
    newest: dict[tuple[str, str], int] = {}
    for _key, value in read_topic(settings, settings.topics.results):
        newest[(value["metric"], value["key"])] = value["count"]
    per_user = {}
    for (metric, key), count in newest.items():
        if metric == USER_EVENTS and count:
            uid, name, email = key.split("\t")
            per_user[uid] = (name, email, count)
    return {
        "per_user": per_user,
        "types": {k: c for (m, k), c in newest.items() if m == EVENT_TYPES},
        "unmatched": newest.get((UNMATCHED, "all")),
    }


@pytest.fixture
def joined(spark: Any, settings: Settings, tmp_path: Path) -> tuple[Settings, dict[str, Any]]:
    """The job run over shuffled input in micro-batches of 40 records, each reduced by its tasks
    on the executors (``jobs.driver_reduce_max`` 0; the other tests reduce their small batches
    on the driver)."""
    job = join_settings(settings, tmp_path, max_offsets_per_trigger=40)
    job = job.model_copy(update={"jobs": job.jobs.model_copy(update={"driver_reduce_max": 0})})
    data = make_input(seed=3, users=40)
    send(job, data)
    run(spark, job)
    return job, {**expected([data]), "newest_event_ms": newest_time_ms([data])}


def test_totals_equal_a_duckdb_query_over_the_input(
    joined: tuple[Settings, dict[str, Any]],
) -> None:
    job, want = joined
    got = warehouse(job)
    assert got["types"] == want["types"]
    assert got["per_user"] == want["per_user"]
    assert got["unmatched"] == want["unmatched"]
    assert len(want["unmatched"]) == 4
    shown = topic_totals(job)
    assert shown["per_user"] == want["per_user"]
    assert shown["types"] == want["types"]
    assert shown["unmatched"] == sum(want["unmatched"].values())
    # Each total says how fresh it is: the newest event (or user) time counted so far.
    results = [value for _key, value in read_topic(job, job.topics.results)]
    assert max(r["newest_event_ms"] for r in results) == want["newest_event_ms"]
    assert all(0 < r["newest_event_ms"] <= want["newest_event_ms"] for r in results)
    dead = [value for _key, value in read_topic(job, job.topics.dead_letter)]
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 9
    assert "field user_id: expected a string, not BIGINT" in reasons
    assert "missing field event" in reasons
    assert any("event_timestamp is not a time" in r for r in reasons)
    assert {d["sourceTopic"] for d in dead} == {job.joins.users_topic, job.joins.events_topic}
    assert all(d["sourcePartition"] in (0, 1) and d["sourceOffset"] >= 0 for d in dead)


def test_replayed_batches_count_once(spark: Any, joined: tuple[Settings, dict[str, Any]]) -> None:
    """Forget the last commit, as a crash after the warehouse write and before Spark's commit
    would: the last batch runs again and the totals stay."""
    job, want = joined
    commits = Path(query_location(job, NAME, QUERY)) / "commits"
    done = sorted(int(p.name) for p in commits.iterdir() if p.name.isdigit())
    assert len(done) >= 2, f"expected several micro-batches, got {done}"
    (commits / str(done[-1])).unlink()
    (commits / f".{done[-1]}.crc").unlink(missing_ok=True)
    run(spark, job)
    assert (commits / str(done[-1])).exists(), "the forgotten batch did not run again"
    assert warehouse(job) == {k: want[k] for k in ("per_user", "types", "unmatched")}


def test_killed_and_restarted_job_gives_the_same_totals(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """``clickstream jobs run joins`` in a child process, SIGKILLed (with its Spark) after a few
    micro-batches of the join; the job restarted from its checkpoints ends with exact totals."""
    job = join_settings(settings, tmp_path, max_offsets_per_trigger=30, trigger_s=0.5)
    data = make_input(seed=5, users=40)
    send(job, data)
    env = cli_env(
        CLICKSTREAM_DATA_DIR=str(tmp_path),
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(job.kafka.bootstrap_servers),
        CLICKSTREAM_SPARK_MASTER="local[1]",
        CLICKSTREAM_SPARK_SHUFFLE_PARTITIONS="2",
        CLICKSTREAM_SPARK_DRIVER_MEMORY="1g",
        CLICKSTREAM_JOBS_STAGGERED_START_S="0",
        CLICKSTREAM_TOPICS_RESULTS=job.topics.results,
        CLICKSTREAM_TOPICS_DEAD_LETTER=job.topics.dead_letter,
        CLICKSTREAM_JOINS_USERS_TOPIC=job.joins.users_topic,
        CLICKSTREAM_JOINS_EVENTS_TOPIC=job.joins.events_topic,
        CLICKSTREAM_JOINS_MAX_OFFSETS_PER_TRIGGER="30",
        CLICKSTREAM_JOINS_TRIGGER_S="0.5",
    )
    child = subprocess.Popen(
        [str(Path(sys.executable).parent / "clickstream"), "jobs", "run", NAME],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "child.log").open("w"),
    )
    commits = Path(query_location(job, NAME, QUERY)) / "commits"
    try:
        wait_for(
            lambda: (
                commits.is_dir() and len([p for p in commits.iterdir() if p.name.isdigit()]) >= 2
            ),
            timeout=180,
            interval=0.05,
        )
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    done = len([p for p in commits.iterdir() if p.name.isdigit()])
    before = warehouse(job)
    want = expected([data])
    assert before["per_user"] != want["per_user"], f"the job had finished ({done} batches)"
    run(spark, job)
    assert warehouse(job) == want


def test_users_an_hour_and_a_year_older_than_their_events_and_after_them_are_joined(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """The seed merges over all time: a user who signed up an hour or a year before their
    events is joined to them, and events that came before their user count for them once the
    user arrives (meanwhile they are unmatched)."""
    job = join_settings(settings, tmp_path)
    hour, year = user_id_of("hour@example.org"), user_id_of("year@example.org")
    late = user_id_of("late@example.org")
    now = 4 * 86_400.0  # T0 + 4 days: in the past, not ahead of its arrival
    send(
        job,
        JoinInput(
            users=[
                user_record(now - 3600, hour, "hour@example.org", "Hour"),
                user_record(now - 365 * 86_400, year, "year@example.org", "Year"),
            ],
            events=[
                *(page_event(now, hour, f"https://site.example/h{n}", "click") for n in range(3)),
                *(page_event(now, year, f"https://site.example/y{n}", "scroll") for n in range(2)),
                page_event(now, late, "https://site.example/l", "submit"),
            ],
        ),
    )
    run(spark, job)
    got = warehouse(job)
    assert got["per_user"] == {
        hour: ("Hour", "hour@example.org", 3),
        year: ("Year", "year@example.org", 2),
    }
    assert got["unmatched"] == {late: 1}
    send(job, JoinInput(users=[user_record(now + 60, late, "late@example.org", "Late")]))
    run(spark, job)
    got = warehouse(job)
    assert got["per_user"][late] == ("Late", "late@example.org", 1)
    assert got["unmatched"] == {}
    assert got["types"] == {"click": 3, "scroll": 2, "submit": 1}
    assert topic_totals(job)["unmatched"] == 0


@pytest.mark.parametrize("query", ["events", "all"])
def test_checkpoints_of_the_stream_join_versions_are_refused(
    spark: Any, settings: Settings, tmp_path: Path, query: str
) -> None:
    """Totals in the warehouse were counted by the old queries (three, then one stream-stream
    join): starting over their checkpoints with the count query would count everything again."""
    job = join_settings(settings, tmp_path)
    old = Path(query_location(job, NAME, query))
    (old / "offsets").mkdir(parents=True)
    (old / "offsets" / "0").write_text("v1\n")
    refused = rf"\({query}\) were written by an earlier clickstream version.*delete .*joins and"
    with pytest.raises(ConfigError, match=refused):
        start_job(spark, job, builder(NAME), available_now=True)


def test_tables_of_the_stream_join_version_are_refused_with_what_to_drop(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    job = join_settings(settings, tmp_path)
    with writing(job.duckdb_path) as con:
        con.execute("CREATE TABLE join_user_totals (user_id VARCHAR, event_count BIGINT)")
        con.execute("CREATE TABLE event_type_counts (event VARCHAR, count BIGINT)")
    send(job, make_input(seed=1, users=2))
    with pytest.raises(JobFailedError, match="DROP TABLE event_type_counts; DROP TABLE join_"):
        run(spark, job)
