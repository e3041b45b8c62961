"""Counts aggregated on the executors, checkpoints on a URL, and a lost tally refused."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pytest

from clickstream.errors import ConfigError
from clickstream.settings import Settings
from clickstream.streaming import checkpoint
from clickstream.streaming.reduce import PARTIAL, Reduced, TallyPart, partial_counts
from tests.jobs.counts_support import (
    T0,
    checkpoint_dir,
    count_settings,
    expected_shop,
    latest_counts,
    run,
    send,
    shop_events,
    table_counts,
    web_event,
)


def test_a_task_sends_one_row_per_window_and_key_not_per_event() -> None:
    times = [T0 + i % 3000 for i in range(30_000)]  # three 1-s windows
    keys = [("a", "b", "c")[i % 3] for i in range(30_000)]
    batch = pa.RecordBatch.from_pydict(
        {"_time": pa.array(times, pa.int64()), "_m0": pa.array(keys, pa.string())}
    )
    out = pa.Table.from_batches(list(partial_counts(1, 1000, 1000, None)(iter([batch]))))
    partials = out.filter(pa.compute.equal(out["kind"], PARTIAL))
    got = {(r["start"], r["key"]): r["count"] for r in partials.to_pylist()}
    want = Counter((t // 1000 * 1000, k) for t, k in zip(times, keys, strict=True))
    assert got == dict(want)
    assert out.num_rows < 20  # 9 partials, a late count and the newest time


def test_a_batch_size_is_read_from_the_offset_log_or_left_unknown(tmp_path: Path) -> None:
    (tmp_path / "offsets").mkdir()

    def log(batch: int, offsets: str) -> None:
        (tmp_path / "offsets" / str(batch)).write_text(f'v1\n{{"batchWatermarkMs":0}}\n{offsets}\n')

    store = checkpoint.LocalStore(tmp_path)
    log(0, '{"t":{"0":4,"1":5}}')
    log(1, '{"t":{"0":10,"1":5}}')
    log(2, '{"t":{"0":10,"1":7,"2":3}}')  # partition 2 is new: where it started is unknown
    log(3, '{"t":[10, 7]}')  # not Kafka's offsets
    assert checkpoint.batch_records(store, 0) is None  # starts where the log does not say
    assert checkpoint.batch_records(store, 1) == 6
    assert checkpoint.batch_records(store, 2) is None
    assert checkpoint.batch_records(store, 3) is None
    assert checkpoint.batch_records(store, 9) is None


def reduced_view(reduced: Reduced) -> dict[str, Any]:
    """What the driver reads of a reduced batch, independent of how many partitions made it."""
    partials: Counter[tuple[str, int, str]] = Counter()
    for row in reduced.partials(["m"]).to_pylist():
        partials[(row["metric"], row["start"], row["key"])] += row["count"]
    return {
        "partials": dict(partials),
        "late": reduced.late(),
        "newest": reduced.newest(),
        "dead": sorted(map(tuple, reduced.dead_letters().to_pylist())),
    }


@pytest.mark.slow
def test_small_batches_are_reduced_on_the_driver_to_the_same_rows(spark: Any) -> None:
    """Below ``jobs.driver_reduce_max`` records a batch is collected and reduced on the driver
    (no Python task's fixed cost); the rows the driver reads are those of the executors'."""
    n = 3000
    rows = [
        (
            None if i % 97 == 0 else T0 - 5000 + i * 7,  # bad ones have no time; some late
            ("a", "b", "c", None)[i % 4],
            f"k{i}" if i % 97 == 0 else None,
            f"bad {i}" if i % 97 == 0 else None,
        )
        for i in range(n)
    ]
    schema = "_time long, _m0 string, _dead_key string, _dead_value string"
    batch = spark.createDataFrame(rows, schema).repartition(3)
    parts = [TallyPart(("_m0",), 1000, 1000, T0)]
    on_executors = reduced_view(Reduced.of(batch, parts, driver_max=0, records=n))
    on_driver = reduced_view(Reduced.of(batch, parts, driver_max=n, records=n))
    too_big_for_driver = reduced_view(Reduced.of(batch, parts, driver_max=n - 1, records=n))
    size_unknown = reduced_view(Reduced.of(batch, parts, driver_max=n, records=None))
    assert on_driver == on_executors == too_big_for_driver == size_unknown
    assert on_executors["late"] > 0
    assert len(on_executors["dead"]) == len(range(0, n, 97))
    assert on_executors["newest"] == T0 - 5000 + (n - 1) * 7
    assert sum(on_executors["partials"].values()) > 1000
    empty = reduced_view(Reduced.of(batch.limit(0), parts, driver_max=n, records=0))
    assert empty == {"partials": {}, "late": 0, "newest": None, "dead": []}


@pytest.mark.slow
@pytest.mark.parametrize("driver_max", [150, 1000])
def test_each_batch_is_read_once_whichever_side_reduces_it(
    spark: Any, settings: Settings, tmp_path: Path, driver_max: int
) -> None:
    """The size of a batch comes from the offset log, not from reading it: a batch too big
    for the driver (150) or small enough (1000) is read once (Spark's numInputRows), and the
    counts are exact either way."""
    s = count_settings(settings, tmp_path)
    s = s.model_copy(
        update={
            "jobs": s.jobs.model_copy(update={"driver_reduce_max": driver_max}),
            "spark": s.spark.model_copy(update={"max_offsets_per_trigger": 400}),
        }
    )
    events = shop_events(1200, seed=14)
    send(s, s.topics.shop, events)
    job = run(spark, s, "shop")
    stats = job.stats["shop.counts"]
    assert stats.batches >= 3
    assert stats.input_rows == len(events)
    assert table_counts(s, "shop.") == expected_shop(events)
    store = checkpoint.store(checkpoint.query_location(s, "shop", "counts"))
    sizes = [checkpoint.batch_records(store, b) for b in checkpoint.committed_batches(store)]
    assert sizes[0] is None  # the first batch: its start is not in the log
    assert all(size is not None and size <= 400 for size in sizes[1:])
    assert sum(size or 0 for size in sizes[1:]) == len(events) - 400


@pytest.mark.slow
def test_a_checkpoint_with_commits_but_no_tally_is_refused_with_what_to_do(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    s = count_settings(settings, tmp_path)
    send(s, s.topics.shop, shop_events(20, seed=11))
    run(spark, s, "shop")
    shutil.rmtree(checkpoint_dir(s) / "shop" / "counts" / "tally")
    with pytest.raises(
        ConfigError,
        match=r"shop/counts has \d+ committed batches but no count tally .*Restore .*delete the "
        "checkpoint",
    ):
        run(spark, s, "shop")


@pytest.mark.slow
def test_a_checkpoint_url_keeps_spark_and_the_tally_on_its_filesystem(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """A URL goes through Spark's Hadoop FileSystem (``file://`` here: the code path of
    ``hdfs://`` and ``s3a://``); the counts resume from the tally it wrote."""
    s = count_settings(settings, tmp_path)
    folder = tmp_path / "remote"
    url = f"file://{folder}"
    s = s.model_copy(update={"spark": s.spark.model_copy(update={"checkpoint_dir": url})})
    assert checkpoint.query_location(s, "shop", "counts") == f"{url}/shop/counts"
    store = checkpoint.store(checkpoint.query_location(s, "shop", "counts"), spark)
    assert isinstance(store, checkpoint.HadoopStore)

    first, second = shop_events(100, seed=12), shop_events(100, seed=13)
    send(s, s.topics.shop, first)
    run(spark, s, "shop")
    send(s, s.topics.shop, second)
    run(spark, s, "shop")
    assert latest_counts(s) == expected_shop(first + second)
    assert table_counts(s, "shop.") == expected_shop(first + second)
    tally = checkpoint.tally_store(store)
    (snapshot,) = tally.list("")
    assert snapshot == f"{max(checkpoint.committed_batches(store))}.json"
    assert not list((folder / "shop" / "counts" / "tally").glob("*.tmp"))

    shutil.rmtree(folder / "shop" / "counts" / "tally")
    with pytest.raises(ConfigError, match="no count tally"):
        run(spark, s, "shop")


@pytest.mark.slow
def test_a_retry_alone_in_its_window_writes_no_count(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """A retry is removed before anything is counted: a window that only a retry touched gets
    no count at all (not a 0)."""
    s = count_settings(settings, tmp_path)
    first = web_event("Pageview", T0 + 100, "/a", "s1", None)
    send(s, s.topics.web_events, [first, msgspec.structs.replace(first, receivedAt=T0 + 200)])
    run(spark, s, "web-live")
    send(s, s.topics.web_events, [msgspec.structs.replace(first, receivedAt=T0 + 5_100)])
    run(spark, s, "web-live")
    pages = {k[1:]: v for k, v in latest_counts(s).items() if k[0] == "web.pages"}
    assert pages == {(T0, "/a"): 1}


@pytest.mark.slow
def test_a_first_offset_write_cut_by_a_kill_does_not_stop_the_query_for_good(
    spark: Any, settings: Settings, tmp_path: Path
) -> None:
    """A SIGKILL while Spark writes a query's first offset leaves only its temporary file
    (``.0.<uuid>.tmp``) in ``offsets/``; Spark 4.2 then refuses the query on every start
    (``STATE_STORE_CHECKPOINT_LOCATION_NOT_EMPTY``) unless the runner clears it first."""
    s = count_settings(settings, tmp_path)
    send(s, s.topics.shop, shop_events(20, seed=12))
    offsets = checkpoint_dir(s) / "shop" / "counts" / "offsets"
    offsets.mkdir(parents=True)
    (offsets / ".0.7e6a6b54-84dd-4f14-ad56-e04750a038ac.tmp").write_text('v1\n{"batchW')
    (offsets / "..0.7e6a6b54-84dd-4f14-ad56-e04750a038ac.tmp.crc").write_bytes(b"crc")
    run(spark, s, "shop")
    assert sorted(p.name for p in offsets.iterdir() if not p.name.startswith(".")) == ["0"]
    assert latest_counts(s)
