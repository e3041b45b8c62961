"""Long-running jobs start their queries one at a time: each after the one before finished its
first micro-batch, dead-letter queries last (a cold start reaches its first data point sooner)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clickstream.jobs import pick
from clickstream.settings import Settings
from clickstream.streaming.runner import RunningJob, start_jobs
from tests.jobs.counts_support import count_settings

pytestmark = pytest.mark.slow


def test_queries_start_after_the_first_batch_of_the_one_before(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    ours = count_settings(settings, tmp_path)
    ours = ours.model_copy(
        update={"jobs": ours.jobs.model_copy(update={"trigger_s": 1.0, "staggered_start_s": 60})}
    )
    running: list[RunningJob] = []
    said: list[str] = []
    try:
        start_jobs(spark, ours, pick(["sessions", "web-live"]), running, say=said.append)
        queries = {q.name: q for job in running for q in job.queries}
        foreground = ["sessions.sessions", "web-live.counts", "web-live.active-sessions"]
        assert said == [f"query {name} started" for name in foreground] + [
            f"all {len(queries)} queries started"
        ]
        for name in foreground:  # start_jobs waited for each one's first batch
            assert queries[name].lastProgress is not None, name
        first_batch = {name: _first_batch(queries[name]) for name in foreground}
        for before, after in itertools.pairwise(foreground):
            assert first_batch[before][1] <= first_batch[after][0], (before, after)
    finally:
        for job in running:
            job.stop()


def _first_batch(query) -> tuple[datetime, datetime]:  # type: ignore[no-untyped-def]
    """(start, end) of batch 0, from the query's progress reports."""
    progress = next(p for p in query.recentProgress if p["batchId"] == 0)
    started = datetime.fromisoformat(progress["timestamp"].replace("Z", "+00:00"))
    took = progress["durationMs"]["triggerExecution"] / 1000
    return started, started + timedelta(seconds=took)
