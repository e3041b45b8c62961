"""The joins job end to end on a real broker and Spark: its totals equal a DuckDB query over
the same input (late, out-of-order, unmatched, re-sent users, bad records), records later than
the watermark are counted but not joined, and a replayed or killed-and-restarted run gives the
same totals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clickstream.errors import ConfigError
from clickstream.events.joins import user_id_of
from clickstream.jobs import builder
from clickstream.jobs.joins import EVENT_TYPES, NAME, QUERY, UNMATCHED, USER_EVENTS
from clickstream.settings import Settings
from clickstream.sinks.duckdb_table import connect
from clickstream.streaming.checkpoint import query_location
from clickstream.streaming.runner import start_job
from tests.conftest import cli_env, read_topic, wait_for
from tests.jobs.join_data import (
    JoinInput,
    closing,
    expected,
    join_settings,
    make_input,
    page_event,
    send,
    user_record,
)

pytestmark = pytest.mark.slow
BOUND_S = 600
WATERMARK_S = 3600


def run(spark: Any, settings: Settings) -> None:
    start_job(spark, settings, builder(NAME), available_now=True).await_all()


def warehouse(settings: Settings) -> dict[str, Any]:
    with connect(settings.duckdb_path, read_only=True) as con:
        per_user = con.execute(
            "SELECT user_id, name, email, event_count FROM user_event_counts"
        ).fetchall()
        types = con.execute("SELECT event, count FROM event_type_counts").fetchall()
        unmatched = con.execute("SELECT page FROM unmatched_events").fetchall()
    return {
        "per_user": {r[0]: (r[1], r[2], r[3]) for r in per_user},
        "types": dict(types),
        "unmatched": sorted(r[0] for r in unmatched),
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
    """The job run over shuffled input in micro-batches of 40 records."""
    job = join_settings(
        settings,
        tmp_path,
        match_bound_s=BOUND_S,
        watermark_s=WATERMARK_S,
        max_offsets_per_trigger=40,
    )
    data = make_input(seed=3, users=40, bound_s=BOUND_S)
    end = closing(data, after_s=40 * 7 + WATERMARK_S + 3 * BOUND_S + 600)
    send(job, data)
    send(job, end)
    run(spark, job)
    return job, expected([data, end], BOUND_S)


def test_totals_equal_a_duckdb_query_over_the_input(
    joined: tuple[Settings, dict[str, Any]],
) -> None:
    job, want = joined
    got = warehouse(job)
    assert got["types"] == want["types"]
    assert got["per_user"] == want["per_user"]
    assert got["unmatched"] == want["unmatched"]
    assert len(want["unmatched"]) >= 4
    with connect(job.duckdb_path, read_only=True) as con:
        where = con.execute(
            "SELECT event_key, source_topic, source_partition, source_offset FROM unmatched_events"
        ).fetchall()
    assert {r[1] for r in where} == {job.joins.events_topic}
    assert all(r[2] in (0, 1) and r[0] == (r[2] << 40) + r[3] for r in where), where
    shown = topic_totals(job)
    assert shown["per_user"] == want["per_user"]
    assert shown["types"] == want["types"]
    assert shown["unmatched"] == len(want["unmatched"])
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
    assert warehouse(job) == {**want}


def test_killed_and_restarted_job_gives_the_same_totals(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """``clickstream jobs run joins`` in a child process, SIGKILLed (with its Spark) after a few
    micro-batches of the join; the job restarted from its checkpoints ends with exact totals."""
    job = join_settings(
        settings,
        tmp_path,
        match_bound_s=BOUND_S,
        watermark_s=WATERMARK_S,
        max_offsets_per_trigger=30,
        trigger_s=0.5,
    )
    data = make_input(seed=5, users=40, bound_s=BOUND_S)
    end = closing(data, after_s=40 * 7 + WATERMARK_S + 3 * BOUND_S + 600)
    send(job, data)
    send(job, end)
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
        CLICKSTREAM_JOINS_MATCH_BOUND_S=str(BOUND_S),
        CLICKSTREAM_JOINS_WATERMARK_S=str(WATERMARK_S),
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
    want = expected([data, end], BOUND_S)
    assert before["per_user"] != want["per_user"], f"the job had finished ({done} batches)"
    run(spark, job)
    # availableNow ends without the batch that only moves the watermark (a running job has
    # it): later records make one, which emits the events left unmatched.
    later = closing(data, after_s=2 * (40 * 7 + WATERMARK_S + 3 * BOUND_S + 600))
    send(job, later)
    run(spark, job)
    assert warehouse(job) == expected([data, end, later], BOUND_S)


def test_records_later_than_the_watermark_are_counted_not_joined(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """Once the watermark has passed them, a user's details still win and an event still counts
    by type, but neither joins: the event is not matched, nor kept as unmatched."""
    job = join_settings(settings, tmp_path, match_bound_s=600, watermark_s=60)
    on_time, late_user = user_id_of("on-time@example.org"), user_id_of("late@example.org")
    early = JoinInput(
        users=[user_record(5000, on_time, "on-time@example.org", "On Time")],
        events=[page_event(5000, on_time, "https://site.example/click", "click")],
    )
    send(job, early)
    run(spark, job)  # the watermark is now 5000 - 60 s
    late = JoinInput(
        users=[user_record(100, late_user, "late@example.org", "Late")],
        events=[
            page_event(100, late_user, "https://site.example/scroll", "scroll"),
            page_event(4900, on_time, "https://site.example/submit", "submit"),  # in the bound
        ],
    )
    send(job, late)
    run(spark, job)
    got = warehouse(job)
    assert got["per_user"] == {on_time: ("On Time", "on-time@example.org", 1)}
    assert got["types"] == {"click": 1, "scroll": 1, "submit": 1}
    assert got["unmatched"] == []
    with connect(job.duckdb_path, read_only=True) as con:
        names = dict(con.execute("SELECT email, name FROM join_users").fetchall())
    assert names == {"on-time@example.org": "On Time", "late@example.org": "Late"}


def test_checkpoints_of_the_three_query_version_are_refused(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """Totals in the warehouse were counted by the old queries: starting over their
    checkpoints with one new query would count everything again."""
    job = join_settings(settings, tmp_path)
    old = Path(query_location(job, NAME, "events"))
    (old / "offsets").mkdir(parents=True)
    (old / "offsets" / "0").write_text("v1\n")
    refused = r"\(events\) were written by an earlier clickstream version.*delete .*joins and the"
    with pytest.raises(ConfigError, match=refused):
        start_job(spark, job, builder(NAME), available_now=True)
