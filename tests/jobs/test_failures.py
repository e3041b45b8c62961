"""A query that fails says why in one line: the Python error of its writer, the deepest Java
error under a call the writer made into Spark, or the cause under an error of Spark's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clickstream.errors import JobFailedError
from clickstream.settings import Settings
from clickstream.streaming.checkpoint import root as checkpoint_root
from clickstream.streaming.runner import RunningJob
from clickstream.streaming.spec import JobSpec, QuerySpec
from tests.jobs.counts_support import T0, count_settings, run, send, web_event

pytestmark = pytest.mark.slow


def test_a_state_file_lost_from_a_checkpoint_is_named(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    send(s, s.topics.web_events, [web_event("Pageview", T0 + 100, "/", "s1", None)])
    run(spark, s, "web-live")
    state = Path(checkpoint_root(s)) / "web-live" / "counts" / "state" / "0" / "0"
    lost = state / "1.delta"
    lost.unlink()
    send(s, s.topics.web_events, [web_event("Pageview", T0 + 200, "/", "s2", None)])
    with pytest.raises(JobFailedError) as failed:
        run(spark, s, "web-live")
    message = str(failed.value)
    assert message.startswith("query web-live.counts failed: java.io.FileNotFoundException: ")
    assert f"{lost} does not exist" in message
    assert "\n" not in message


def test_an_error_of_sparks_own_names_its_cause(spark: Any, tmp_path: Path) -> None:
    """Spark fails a batch whose stateful tasks did not all commit (a writer that read one row of
    it); its error says only ``Exception thrown in awaitResult``."""
    frame = (
        spark.readStream.format("rate").option("rowsPerSecond", 10).load()
        .withWatermark("timestamp", "10 seconds")
        .dropDuplicatesWithinWatermark(["value"])
    )  # fmt: skip
    spec = JobSpec("t", [QuerySpec("q", frame, lambda batch, _: batch.limit(1).collect())])
    query = (
        frame.writeStream.queryName("t.q")
        .foreachBatch(spec.queries[0].write_batch)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(processingTime="1 second")
        .start()
    )
    job = RunningJob(spec, [query])
    try:
        with pytest.raises(JobFailedError) as failed:
            job.await_all(120)
    finally:
        query.stop()
    message = str(failed.value)
    assert message.startswith("query t.q failed: [STREAM_FAILED]")
    assert "Exception thrown in awaitResult" in message
    assert "(caused by org.apache.spark.sql.execution.streaming.state." in message
    assert "[STATE_STORE_COMMIT_VALIDATION_FAILED]" in message
    assert "commits but got " in message
