"""The songs counts are reduced on the executors: a task sends partial counts per tally, not
plays, to the driver."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from clickstream.jobs.songs import tallies as song_tallies
from clickstream.settings import load_settings
from clickstream.streaming.checkpoint import LocalStore
from clickstream.streaming.counts import CountsWriter
from clickstream.streaming.reduce import DEAD, LATE, PARTIAL, Reduced, reduce_partition
from clickstream.streaming.tally import PARTIALS

T0 = int(datetime(2026, 11, 2, tzinfo=UTC).timestamp() * 1000)
SONGS = [f"tony-allen/song-{i}" for i in range(10)]
DAY_MS = 86_400_000


def plays(times: list[int], keys: list[str], dead: int = 0) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "_time": pa.array(times + [None] * dead, pa.int64()),
            "_key": pa.array(keys + [None] * dead, pa.string()),
            "_dead_key": pa.array([None] * len(times) + ["k"] * dead, pa.string()),
            "_dead_value": pa.array([None] * len(times) + ["bad"] * dead, pa.string()),
        }
    )


def test_a_songs_task_sends_partials_per_tally_not_plays(tmp_path: Path) -> None:
    settings = load_settings(environ={"CLICKSTREAM_DATA_DIR": str(tmp_path)})
    writer = CountsWriter.open(
        LocalStore(tmp_path / "counts"), song_tallies(settings), settings, committed=0
    )
    tallies, parts = writer.parts(0)
    metrics = [m for spec, _ in tallies for m in spec.metrics]
    assert metrics == ["songs.minute", "songs.hour", "songs.all"]

    n = 30_000
    times = [T0 + (i * 7919) % 7_200_000 for i in range(n)]  # two hours, 120 minutes
    keys = [SONGS[i % len(SONGS)] for i in range(n)]
    task = reduce_partition(parts)
    out = Reduced(pa.Table.from_batches(list(task(iter([plays(times, keys, dead=5)])))))
    partials = out.partials(metrics)

    def got(metric: str) -> dict[tuple[int, str], int]:
        mine = partials.filter(pc.equal(partials["metric"], metric)).to_pylist()
        return {(r["start"], r["key"]): r["count"] for r in mine}

    pairs = list(zip(times, keys, strict=True))
    assert got("songs.minute") == dict(Counter((t // 60_000 * 60_000, k) for t, k in pairs))
    assert got("songs.hour") == dict(Counter((t // 3_600_000 * 3_600_000, k) for t, k in pairs))
    assert got("songs.all") == dict(Counter((0, k) for k in keys))
    assert out.newest() == max(times)
    assert out.dead_letters().to_pylist() == [{"key": "k", "value": "bad"}] * 5
    # 1200 + 20 + 10 partials, a late count per tally, the newest time, 5 dead letters
    assert out.rows.num_rows == 1200 + 20 + 10 + 3 + 1 + 5
    assert pc.sum(pc.equal(out.rows["kind"], PARTIAL)).as_py() == 1230
    assert pc.sum(pc.equal(out.rows["kind"], DEAD)).as_py() == 5

    # Each task counts against the watermarks as of the batch start: once plays 41 days on
    # are committed, an old play is late for the minute and hour (kept 40 days), not all time.
    for spec, tally in tallies:  # all time: every play at time 0, as the writer merges it
        newest = 0 if spec.metrics == ("songs.all",) else T0 + 41 * DAY_MS
        tally.commit(tally.merge(0, PARTIALS.empty_table(), 0, newest))
    tallies, parts = writer.parts(1)
    assert len(parts) == 3
    task = reduce_partition(parts)
    out = Reduced(pa.Table.from_batches(list(task(iter([plays([T0, T0], SONGS[:2])])))))
    assert [out.late(i) for i in range(3)] == [2, 2, 0]
    assert out.rows.filter(pc.equal(out.rows["kind"], LATE)).num_rows == 3
    partials = out.partials([m for spec, _ in tallies for m in spec.metrics])
    assert partials.to_pylist() == [
        {"metric": "songs.all", "start": 0, "key": SONGS[0], "count": 1},
        {"metric": "songs.all", "start": 0, "key": SONGS[1], "count": 1},
    ]
    assert writer.parts(0) == ([], [])  # a committed batch is not counted again
