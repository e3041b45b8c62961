"""Windowed counts kept on the driver between micro-batches, with a snapshot per batch.

The count queries are stateless in Spark: the executors reduce each micro-batch to partial
counts per (metric, window, key) with :func:`window_partials` (see
:mod:`clickstream.streaming.counts`), and a :class:`WindowTally` on the driver adds those to the
counts of the windows still open (:meth:`WindowTally.merge`). Counts are sums, so nothing else
is needed; it saves Spark's stateful aggregation (a shuffle, a second stage and a state store
per partition), which was most of a count micro-batch's time.

Semantics are those of Spark's windowed aggregation with a watermark, in update mode:

* windows start at multiples of the slide (of the size for tumbling windows) from the epoch;
  an event counts in every window ``[start, start + size)`` holding its event time;
* the watermark is the newest event time of the batches before, minus the delay; a window
  that ended at or before it is closed: its count is final and leaves the tally;
* an event whose every window is closed is late: it is dropped and counted in
  :attr:`WindowTally.late_events`;
* each batch yields the counts of the windows it changed, as counted so far.

Retried events (``web-live``) are removed before the tally, on the executors (see
:func:`clickstream.streaming.counts.drop_retries`).

**Exactly once.** :meth:`WindowTally.count` works out a batch's result without changing the
tally; :meth:`WindowTally.commit` applies it once the results are written and saves a snapshot
(open windows, watermark, batch id) beside the query's checkpoint, on its filesystem
(:mod:`clickstream.streaming.checkpoint`). After a restart the tally is the last
snapshot: a batch Spark runs again is either newer (counted again from the state before it, so
its writes repeat the same counts) or already in the snapshot (not counted or written again,
but still run through Spark: see :func:`clickstream.streaming.reduce.run_again`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from clickstream.errors import ConfigError
from clickstream.events.results import WindowCount
from clickstream.streaming.checkpoint import LocalStore, Store, batch_numbers

Slot = tuple[str, int, str]
"""(metric, window start in epoch ms, key)."""


class _Snapshot(msgspec.Struct):
    batch_id: int
    size_ms: int
    slide_ms: int
    newest_ms: int | None
    counts: list[tuple[str, int, str, int]]


@dataclass
class TallyUpdate:
    batch_id: int
    changed: dict[Slot, int]
    """New count of every window and key the batch added to."""
    newest_ms: int | None
    late_events: int

    def results(self, size_ms: int) -> list[WindowCount]:
        return [
            WindowCount(metric=m, window_start=s, window_end=s + size_ms, key=k, count=c)
            for (m, s, k), c in self.changed.items()
        ]


@dataclass
class WindowTally:
    size_ms: int
    slide_ms: int
    delay_ms: int
    store: Store | None = None
    """Where snapshots go; ``None`` keeps the tally in memory only."""
    counts: dict[Slot, int] = field(default_factory=dict)
    batch_id: int = -1
    """The last batch committed."""
    newest_ms: int | None = None
    """The newest event time seen."""
    late_events: int = 0
    """Events dropped as late since this tally was created."""

    @classmethod
    def open(
        cls,
        size_s: int,
        slide_s: int | None,
        delay_s: int,
        directory: Path | Store,
    ) -> WindowTally:
        """The tally saved in ``directory`` (empty when there is none yet)."""
        store = LocalStore(directory) if isinstance(directory, Path) else directory
        tally = cls(size_s * 1000, (slide_s or size_s) * 1000, delay_s * 1000, store)
        latest = max(batch_numbers(_stems(store.list(""))), default=None)
        if latest is None:
            return tally
        path = f"{store.location}/{latest}.json"
        try:
            snap = msgspec.json.decode(store.read(f"{latest}.json") or b"", type=_Snapshot)
        except (OSError, msgspec.DecodeError) as exc:
            raise ConfigError(f"cannot read the count snapshot {path}: {exc}") from exc
        if (snap.size_ms, snap.slide_ms) != (tally.size_ms, tally.slide_ms):
            parent = store.location.rstrip("/").rpartition("/")[0]
            raise ConfigError(
                f"the checkpoint {parent} holds counts of {snap.size_ms // 1000}-s "
                f"windows sliding by {snap.slide_ms // 1000} s, not {size_s}-s windows sliding "
                f"by {(slide_s or size_s)} s: delete it (counts start again) or keep the settings"
            )
        tally.batch_id = snap.batch_id
        tally.newest_ms = snap.newest_ms
        tally.counts = {(m, s, k): c for m, s, k, c in snap.counts}
        return tally

    @property
    def has_snapshot(self) -> bool:
        """True when a snapshot was read or written."""
        return self.batch_id >= 0

    @property
    def watermark_ms(self) -> int | None:
        return None if self.newest_ms is None else self.newest_ms - self.delay_ms

    def count(
        self,
        batch_id: int,
        times_ms: pa.Array,
        keys: Sequence[tuple[str, pa.Array]],
    ) -> TallyUpdate | None:
        """The result of adding a batch (``None`` if it was committed before): its events'
        times, and per metric the key of each event (null: not counted for that metric)."""
        if batch_id <= self.batch_id:
            return None
        times = pc.cast(times_ms, pa.int64())
        if len(times) == 0:
            return TallyUpdate(batch_id, {}, self.newest_ms, 0)
        added, late = window_partials(times, keys, self.size_ms, self.slide_ms, self.watermark_ms)
        return self.merge(batch_id, added, late, pc.max(times).as_py())

    def merge(
        self,
        batch_id: int,
        partials: pa.Table,
        late: int,
        newest_ms: int | None,
    ) -> TallyUpdate:
        """The result of adding a batch's partial counts (``metric``, ``start``, ``key``,
        ``count``: several rows of one slot add up), made by :func:`window_partials` against
        this tally's :attr:`watermark_ms`, to the open windows."""
        changed: dict[Slot, int] = {}
        if partials.num_rows:
            summed = partials.group_by(["metric", "start", "key"]).aggregate([("count", "sum")])
            for m, s, k, c in zip(
                summed["metric"].to_pylist(),
                summed["start"].to_pylist(),
                summed["key"].to_pylist(),
                summed["count_sum"].to_pylist(),
                strict=True,
            ):
                changed[m, s, k] = self.counts.get((m, s, k), 0) + c
        newest = newest_ms
        if self.newest_ms is not None:
            newest = self.newest_ms if newest is None else max(newest, self.newest_ms)
        return TallyUpdate(batch_id, changed, newest, late)

    def commit(self, update: TallyUpdate) -> None:
        """Apply ``update`` (its results are written), close the windows the watermark passed,
        and save a snapshot."""
        self.counts.update(update.changed)
        self.newest_ms = update.newest_ms
        self.batch_id = update.batch_id
        self.late_events += update.late_events
        watermark = self.watermark_ms
        if watermark is not None:
            closed = [slot for slot in self.counts if slot[1] + self.size_ms <= watermark]
            for slot in closed:
                del self.counts[slot]
        if self.store is not None:
            self._save()

    def _save(self) -> None:
        assert self.store is not None
        snap = _Snapshot(
            self.batch_id,
            self.size_ms,
            self.slide_ms,
            self.newest_ms,
            [(m, s, k, c) for (m, s, k), c in self.counts.items()],
        )
        self.store.write(f"{self.batch_id}.json", msgspec.json.encode(snap))
        for older in batch_numbers(_stems(self.store.list(""))):
            if older < self.batch_id:
                self.store.delete(f"{older}.json")


def _stems(names: list[str]) -> list[str]:
    return [n.removesuffix(".json") for n in names if n.endswith(".json")]


def window_partials(
    times: pa.Array,
    keys: Sequence[tuple[str, pa.Array]],
    size_ms: int,
    slide_ms: int,
    watermark_ms: int | None,
) -> tuple[pa.Table, int]:
    """Events -> (count per ``metric``, window ``start``, ``key``; events late against
    ``watermark_ms``). Pure arithmetic on Arrow arrays: it runs on the executors, per
    partition, and on the driver alike."""
    times = pc.cast(times, pa.int64())
    last_start = pc.cast(
        pc.floor_temporal(
            pc.cast(times, pa.timestamp("ms")), multiple=slide_ms, unit="millisecond"
        ),
        pa.int64(),
    )
    late = 0
    if watermark_ms is not None:
        # The newest window of a late event ended by the watermark.
        is_late = pc.less_equal(pc.add(last_start, size_ms), watermark_ms)
        late = pc.sum(pc.cast(is_late, pa.int64())).as_py() or 0
    parts = []
    for back in range(-(-size_ms // slide_ms)):
        start = pc.subtract(last_start, back * slide_ms)
        end = pc.add(start, size_ms)
        holds = pc.greater(end, times)
        if watermark_ms is not None:
            holds = pc.and_(holds, pc.greater(end, watermark_ms))
        for metric, key in keys:
            mask = pc.and_(holds, pc.is_valid(key))
            starts = start.filter(mask)
            parts.append(
                pa.table(
                    {
                        "metric": pa.array([metric] * len(starts), pa.string()),
                        "start": starts,
                        "key": pc.cast(key, pa.string()).filter(mask),
                    }
                )
            )
    if not parts:
        return PARTIALS.empty_table(), late
    added = pa.concat_tables(parts).group_by(["metric", "start", "key"])
    counted = added.aggregate([([], "count_all")]).rename_columns(
        ["metric", "start", "key", "count"]
    )
    return counted.select(["metric", "start", "key", "count"]).cast(PARTIALS), late


PARTIALS = pa.schema(
    [("metric", pa.string()), ("start", pa.int64()), ("key", pa.string()), ("count", pa.int64())]
)
