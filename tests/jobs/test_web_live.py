"""The web-live count job: events by kind, pages and referrers per second and active sessions;
a client's retry counted once, across batches, restarts and a replayed batch; bad records
dead-lettered; checkpoints of earlier versions refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clickstream.errors import ConfigError
from clickstream.jobs import builder
from clickstream.settings import Settings
from clickstream.streaming import checkpoint
from clickstream.streaming.checkpoint import query_location
from clickstream.streaming.distinct import keeps_newest
from clickstream.streaming.runner import start_job
from tests.conftest import read_topic
from tests.jobs.counts_support import (
    T0,
    checkpoint_dir,
    count_settings,
    latest_counts,
    run,
    send,
    table_counts,
    undo_batches,
    web_event,
    web_pages,
)

pytestmark = pytest.mark.slow


def test_web_live_counts(spark: Any, settings: Settings, tmp_path: Path) -> None:
    s = count_settings(settings, tmp_path)
    pageviews = [
        web_event("Pageview", T0 + 100, "/", "s1", "https://www.google.com/search?q=x"),
        web_event("Pageview", T0 + 200, "/pricing", "s1", "direct"),
        web_event("Pageview", T0 + 900, "/pricing", "s2", None),
        web_event("Pageview", T0 + 1500, "/", "s3", "https://news.ycombinator.com/"),
    ]
    pings = [web_event("PagePing", T0 + 1600, "/", "s3", None)]
    custom = [web_event("Custom", T0 + 1700, "/pricing", "s2", None)]
    send(s, s.topics.web_events, pageviews)
    send(s, s.topics.web_pings, [*pings, b"{}"])
    send(s, s.topics.web_custom, custom)
    run(spark, s, "web-live")

    got = latest_counts(s)
    per_second = {k: v for k, v in got.items() if k[0] != "web.active_sessions"}
    assert per_second == {
        ("web.pageviews", T0, "Pageview"): 3,
        ("web.pageviews", T0 + 1000, "Pageview"): 1,
        ("web.pageviews", T0 + 1000, "PagePing"): 1,
        ("web.pageviews", T0 + 1000, "Custom"): 1,
        ("web.pages", T0, "/"): 1,
        ("web.pages", T0, "/pricing"): 2,
        ("web.pages", T0 + 1000, "/"): 1,
        ("web.referrers", T0, "www.google.com"): 1,
        ("web.referrers", T0, "direct"): 2,
        ("web.referrers", T0 + 1000, "news.ycombinator.com"): 1,
        ("web.countries", T0, "unknown"): 3,  # no country: a private address, or none
        ("web.countries", T0 + 1000, "unknown"): 1,
    }
    # Every 5-minute window (sliding by 10 s) holding the events saw the 3 sessions.
    active = {k[1]: v for k, v in got.items() if k[0] == "web.active_sessions"}
    assert sorted(active) == [T0 - 290_000 + 10_000 * i for i in range(30)]
    assert set(active.values()) == {3}
    # Each says how fresh it is: the newest hit in its window (the custom event, received last).
    newest = {
        value["newest_event_ms"]
        for _, value in read_topic(s, s.topics.results)
        if value["metric"] == "web.active_sessions"
    }
    assert newest == {T0 + 1700}
    assert table_counts(s, "web.") == got
    dead = read_topic(s, s.topics.dead_letter)
    assert [value["sourceTopic"] for _, value in dead] == [s.topics.web_pings]


def test_a_retried_web_event_counts_once(spark: Any, settings: Settings, tmp_path: Path) -> None:
    """A client that got no answer (or a 503 for an event that was stored after all) sends the
    event again: same eventId, a later receive time, maybe a later micro-batch. It counts once."""
    s = count_settings(settings, tmp_path)
    first = web_event("Pageview", T0 + 100, "/", "s1", None)
    other = web_event("Pageview", T0 + 200, "/", "s2", None)
    again = msgspec.structs.replace(first, receivedAt=T0 + 900)
    send(s, s.topics.web_events, [first, other, again])
    run(spark, s, "web-live")
    retry = msgspec.structs.replace(first, receivedAt=T0 + 3_100)
    send(s, s.topics.web_events, [retry, web_event("Pageview", T0 + 3_200, "/", "s3", None)])
    run(spark, s, "web-live")

    assert web_pages(s) == {(T0, "/"): 2, (T0 + 3000, "/"): 1}


def test_a_retry_in_a_batch_replayed_after_a_crash_still_counts_once(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """Retries are removed by Spark's state on the executors: a batch Spark runs again (the
    process died before its commit) sees the ids of the batches before it, not its own."""
    s = count_settings(settings, tmp_path)
    first = web_event("Pageview", T0 + 100, "/", "s1", None)
    send(s, s.topics.web_events, [first])
    run(spark, s, "web-live")
    checkpoint = checkpoint_dir(s) / "web-live" / "counts"
    (before,) = (checkpoint / "tally").glob("*.json")
    saved = before.read_bytes()
    retry = msgspec.structs.replace(first, receivedAt=T0 + 1_300)
    send(s, s.topics.web_events, [retry, web_event("Pageview", T0 + 1_400, "/", "s2", None)])
    run(spark, s, "web-live")
    assert (checkpoint / "state" / "0").is_dir()
    # Died after writing the counts of the retry's batch, before its snapshot and commit (the
    # batches after it, without data, were never run).
    undo_batches(checkpoint, int(before.stem) + 1)
    for path in (checkpoint / "tally").glob("*.json"):
        path.unlink()
    before.write_bytes(saved)
    replay = run(spark, s, "web-live")
    assert replay.stats["web-live.counts"].input_rows == 2  # the retry's batch ran again
    assert web_pages(s) == {(T0, "/"): 1, (T0 + 1000, "/"): 1}


def test_a_batch_counted_before_a_crash_runs_again_through_spark_state_and_counts_once(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """The process died after the batch's counts and snapshot were written, before Spark's
    commit: the writer skips the batch, but Spark's retry state must still be committed for it
    (Spark fails the batch otherwise), and a retry after it is still known."""
    s = count_settings(settings, tmp_path)
    first = web_event("Pageview", T0 + 100, "/", "s1", None)
    send(s, s.topics.web_events, [first, web_event("Pageview", T0 + 200, "/", "s2", None)])
    run(spark, s, "web-live")
    checkpoint = checkpoint_dir(s) / "web-live" / "counts"
    last = max(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    assert (checkpoint / "tally" / f"{last}.json").exists()

    undo_batches(checkpoint, last)
    replay = run(spark, s, "web-live")
    assert (checkpoint / "commits" / str(last)).exists()
    assert replay.stats["web-live.counts"].last_batch_id is not None
    assert web_pages(s) == {(T0, "/"): 2}

    retry = msgspec.structs.replace(first, receivedAt=T0 + 1_300)
    send(s, s.topics.web_events, [retry, web_event("Pageview", T0 + 1_400, "/", "s3", None)])
    run(spark, s, "web-live")
    assert web_pages(s) == {(T0, "/"): 2, (T0 + 1000, "/"): 1}


def test_a_web_event_older_than_the_retry_horizon_is_late_and_bad_ones_are_kept(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """Spark's deduplication drops events behind its watermark (jobs.dedup_s) before looking at
    their ids: those are late for the counts too, and counted as late; a malformed record in
    the same batch still reaches the dead-letter topic."""
    s = count_settings(settings, tmp_path)
    send(s, s.topics.web_events, [web_event("Pageview", T0 + 200_000, "/new", "s1", None)])
    run(spark, s, "web-live")
    old = web_event("Pageview", T0, "/old", "s2", None)  # 200 s behind: past the 120 s
    send(s, s.topics.web_events, [old])
    send(s, s.topics.web_pings, [b"{}"])
    job = run(spark, s, "web-live")
    pages = {k[1:]: v for k, v in latest_counts(s).items() if k[0] == "web.pages"}
    assert pages == {(T0 + 200_000, "/new"): 1}
    assert job.stats["web-live.counts"].late_rows_dropped == 1
    dead = read_topic(s, s.topics.dead_letter)
    assert [value["sourceTopic"] for _, value in dead] == [s.topics.web_pings]


def test_a_web_live_checkpoint_without_retry_state_is_refused_with_what_to_do(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """The version before removed retries on the driver and kept no Spark state: Spark would
    fail on the state it expects for the committed batches."""
    s = count_settings(settings, tmp_path)
    query = checkpoint_dir(s) / "web-live" / "counts"
    (query / "commits").mkdir(parents=True)
    (query / "commits" / "0").write_text('v1\n{"nextBatchWatermarkMs":0}')
    with pytest.raises(ConfigError, match=r"counts was written by .*kept no Spark state.*delete"):
        start_job(spark, s, builder("web-live"), available_now=True)
    # Two versions before, the counts were Spark's stateful aggregation.
    metadata = query / "state" / "0" / "_metadata"
    metadata.mkdir(parents=True)
    info = {"operatorInfo": {"operatorId": 0, "operatorName": "stateStoreSave"}}
    (metadata / "metadata").write_text("v1\n" + json.dumps(info))
    with pytest.raises(ConfigError, match=r"kept the state of stateStoreSave.*delete"):
        start_job(spark, s, builder("web-live"), available_now=True)


def test_bots_are_counted_apart_from_humans(spark: Any, settings: Settings, tmp_path: Path) -> None:
    """Events the collector labelled a bot's count in ``web.bots`` by kind of reason, and in no
    panel metric of humans; humans' pageviews count by country too."""
    s = count_settings(settings, tmp_path)
    human = web_event("Pageview", T0 + 100, "/", "h1", None)
    human.country = "JP"
    unknown = web_event("Pageview", T0 + 150, "/", "h2", None)  # a private address: no country
    crawler = web_event("Pageview", T0 + 200, "/", "b1", None)
    crawler.bot, crawler.botReason = True, "crawler: Googlebot\\/"
    headless = web_event("Pageview", T0 + 300, "/pricing", "b2", None)
    headless.bot, headless.botReason = True, "headless browser: HeadlessChrome"
    cloud = web_event("PagePing", T0 + 400, "/", "b3", None)
    cloud.bot, cloud.botReason = True, "datacenter network: 34.64.0.0/10"
    send(s, s.topics.web_events, [human, unknown, crawler, headless])
    send(s, s.topics.web_pings, [cloud])
    run(spark, s, "web-live")

    got = {k: v for k, v in latest_counts(s).items() if k[0] != "web.active_sessions"}
    assert got == {
        ("web.pageviews", T0, "Pageview"): 2,
        ("web.pages", T0, "/"): 2,
        ("web.referrers", T0, "direct"): 2,
        ("web.countries", T0, "JP"): 1,
        ("web.countries", T0, "unknown"): 1,
        ("web.bots", T0, "crawler"): 1,
        ("web.bots", T0, "headless browser"): 1,
        ("web.bots", T0, "datacenter network"): 1,
    }
    active = {k: v for k, v in latest_counts(s).items() if k[0] == "web.active_sessions"}
    assert set(active.values()) == {2}  # the humans' sessions only


def test_with_count_bots_the_panels_count_everyone(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    s = s.model_copy(update={"jobs": s.jobs.model_copy(update={"count_bots": True})})
    human = web_event("Pageview", T0 + 100, "/", "h1", None)
    crawler = web_event("Pageview", T0 + 200, "/", "b1", None)
    crawler.bot, crawler.botReason = True, "crawler: Googlebot\\/"
    send(s, s.topics.web_events, [human, crawler])
    run(spark, s, "web-live")
    got = latest_counts(s)
    assert got[("web.pageviews", T0, "Pageview")] == 2
    assert got[("web.pages", T0, "/")] == 2
    assert got[("web.bots", T0, "crawler")] == 1


def test_an_active_sessions_checkpoint_without_the_newest_time_goes_on(
    spark: Any, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint of the version before the newest event time was kept in the active-sessions
    state (that query's shape is ``newest=False``) runs on, its counts without the time, and
    its state is not lost: a session of its first run still counts in the second."""
    from clickstream.jobs import web_live

    s = count_settings(settings, tmp_path)
    monkeypatch.setattr(web_live, "keeps_newest", lambda query: False)  # the version before
    send(s, s.topics.web_events, [web_event("Pageview", T0 + 100, "/", "s1", None)])
    run(spark, s, "web-live")
    monkeypatch.undo()
    location = query_location(s, web_live.NAME, web_live.ACTIVE_QUERY)
    assert not keeps_newest(checkpoint.store(location))
    send(s, s.topics.web_events, [web_event("Pageview", T0 + 2000, "/", "s2", None)])
    run(spark, s, "web-live")
    active = [v for _, v in read_topic(s, s.topics.results) if v["metric"] == "web.active_sessions"]
    assert {v["window_start"]: v["count"] for v in active}[T0 - 290_000 + 10_000 * 29] == 2
    assert all("newest_event_ms" not in v for v in active)
    assert all(v["written_ms"] > 0 for v in active)
