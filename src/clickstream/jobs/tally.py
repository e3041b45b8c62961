"""Windowed counts kept on the driver between micro-batches, with a snapshot per batch.

The count queries are stateless in Spark: each micro-batch's events come to the driver (a few
narrow columns, as Arrow), and a :class:`WindowTally` adds them to the counts of the windows
still open. Counts are sums, so nothing else is needed; it saves Spark's stateful aggregation
(a shuffle, a second stage and a state store per partition), which was most of a count
micro-batch's time.

Semantics are those of Spark's windowed aggregation with a watermark, in update mode:

* windows start at multiples of the slide (of the size for tumbling windows) from the epoch;
  an event counts in every window ``[start, start + size)`` holding its event time;
* the watermark is the newest event time of the batches before, minus the delay; a window
  that ended at or before it is closed: its count is final and leaves the tally;
* an event whose every window is closed is late: it is dropped and counted in
  :attr:`WindowTally.late_events`;
* each batch yields the counts of the windows it changed, as counted so far;
* with event ids, an event whose id was counted in the last ``dedup_ms`` (of event time) is a
  client's retry and is not counted again (:attr:`TallyUpdate.duplicates`).

**Exactly once.** :meth:`WindowTally.count` works out a batch's result without changing the
tally; :meth:`WindowTally.commit` applies it once the results are written and saves a snapshot
(open windows, watermark, batch id) in the query's checkpoint directory, and the ids the batch
counted in ``ids/<batch id>.json`` (so a snapshot never holds more than a batch's ids). After a
restart the
tally is the last snapshot: a batch Spark runs again is either newer (counted again from the
state before it, so its writes repeat the same counts) or already in the snapshot (skipped).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from clickstream.errors import ConfigError
from clickstream.events.results import WindowCount

Slot = tuple[str, int, str]
"""(metric, window start in epoch ms, key)."""


class _Snapshot(msgspec.Struct):
    batch_id: int
    size_ms: int
    slide_ms: int
    newest_ms: int | None
    counts: list[tuple[str, int, str, int]]


class _Ids(msgspec.Struct):
    newest: int
    ids: dict[str, int]


@dataclass
class TallyUpdate:
    batch_id: int
    changed: dict[Slot, int]
    """New count of every window and key the batch added to."""
    newest_ms: int | None
    late_events: int
    new_ids: dict[str, int] = field(default_factory=dict)
    """Event id -> event time of the events counted by this batch."""
    duplicates: int = 0
    """Events not counted: their id was counted before."""

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
    directory: Path | None = None
    """Where snapshots go; ``None`` keeps the tally in memory only."""
    counts: dict[Slot, int] = field(default_factory=dict)
    batch_id: int = -1
    """The last batch committed."""
    newest_ms: int | None = None
    """The newest event time seen."""
    late_events: int = 0
    """Events dropped as late since this tally was created."""
    dedup_ms: int = 120_000
    """How long (event time) an event id is remembered."""
    seen: dict[str, int] = field(default_factory=dict)
    id_files: dict[int, int] = field(default_factory=dict)
    """Batch id -> newest event time of each file of ids kept (no file is read again to know)."""
    """Event id -> event time of the ids remembered."""
    duplicates: int = 0
    """Retried events not counted again since this tally was created."""

    @classmethod
    def open(
        cls, size_s: int, slide_s: int | None, delay_s: int, directory: Path, dedup_s: int = 120
    ) -> WindowTally:
        """The tally saved in ``directory`` (empty when there is none yet)."""
        tally = cls(size_s * 1000, (slide_s or size_s) * 1000, delay_s * 1000, directory)
        tally.dedup_ms = dedup_s * 1000
        latest = max(_snapshots(directory), default=None)
        if latest is None:
            return tally
        path = directory / f"{latest}.json"
        try:
            snap = msgspec.json.decode(path.read_bytes(), type=_Snapshot)
        except (OSError, msgspec.DecodeError) as exc:
            raise ConfigError(f"cannot read the count snapshot {path}: {exc}") from exc
        if (snap.size_ms, snap.slide_ms) != (tally.size_ms, tally.slide_ms):
            raise ConfigError(
                f"the checkpoint {directory.parent} holds counts of {snap.size_ms // 1000}-s "
                f"windows sliding by {snap.slide_ms // 1000} s, not {size_s}-s windows sliding "
                f"by {(slide_s or size_s)} s: delete it (counts start again) or keep the settings"
            )
        tally.batch_id = snap.batch_id
        tally.newest_ms = snap.newest_ms
        tally.counts = {(m, s, k): c for m, s, k, c in snap.counts}
        tally._load_ids()
        return tally

    @property
    def watermark_ms(self) -> int | None:
        return None if self.newest_ms is None else self.newest_ms - self.delay_ms

    def count(
        self,
        batch_id: int,
        times_ms: pa.Array,
        keys: Sequence[tuple[str, pa.Array]],
        ids: pa.Array | None = None,
    ) -> TallyUpdate | None:
        """The result of adding a batch (``None`` if it was committed before): its events'
        times, per metric the key of each event (null: not counted for that metric), and the
        events' ids when they have one (null: always counted)."""
        if batch_id <= self.batch_id:
            return None
        times = pc.cast(times_ms, pa.int64())
        new_ids: dict[str, int] = {}
        duplicates = 0
        if ids is not None and len(times):
            fresh = []
            for event, at in zip(ids.to_pylist(), times.to_pylist(), strict=True):
                again = event is not None and (event in self.seen or event in new_ids)
                fresh.append(not again)
                if event is not None and not again:
                    new_ids[event] = at
            duplicates = fresh.count(False)
            if duplicates:
                mask = pa.array(fresh)
                times = times.filter(mask)
                keys = [(metric, key.filter(mask)) for metric, key in keys]
        if len(times) == 0:
            return TallyUpdate(batch_id, {}, self.newest_ms, 0, new_ids, duplicates)
        last_start = pc.cast(
            pc.floor_temporal(
                pc.cast(times, pa.timestamp("ms")), multiple=self.slide_ms, unit="millisecond"
            ),
            pa.int64(),
        )
        watermark = self.watermark_ms
        late = 0
        if watermark is not None:
            # The newest window of a late event ended by the watermark.
            is_late = pc.less_equal(pc.add(last_start, self.size_ms), watermark)
            late = pc.sum(pc.cast(is_late, pa.int64())).as_py() or 0
        parts = []
        for back in range(-(-self.size_ms // self.slide_ms)):
            start = pc.subtract(last_start, back * self.slide_ms)
            end = pc.add(start, self.size_ms)
            holds = pc.greater(end, times)
            if watermark is not None:
                holds = pc.and_(holds, pc.greater(end, watermark))
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
        added = pa.concat_tables(parts).group_by(["metric", "start", "key"])
        changed: dict[Slot, int] = {}
        for row in added.aggregate([([], "count_all")]).to_pylist():
            slot = (row["metric"], row["start"], row["key"])
            changed[slot] = self.counts.get(slot, 0) + row["count_all"]
        newest = pc.max(times).as_py()
        if self.newest_ms is not None:
            newest = max(newest, self.newest_ms)
        return TallyUpdate(batch_id, changed, newest, late, new_ids, duplicates)

    def commit(self, update: TallyUpdate) -> None:
        """Apply ``update`` (its results are written), close the windows the watermark passed,
        and save a snapshot."""
        self.counts.update(update.changed)
        self.newest_ms = update.newest_ms
        self.batch_id = update.batch_id
        self.late_events += update.late_events
        self.duplicates += update.duplicates
        watermark = self.watermark_ms
        if watermark is not None:
            closed = [slot for slot in self.counts if slot[1] + self.size_ms <= watermark]
            for slot in closed:
                del self.counts[slot]
        self.seen.update(update.new_ids)
        if self.directory is not None and update.new_ids:
            self._save_ids(update.batch_id, update.new_ids)
        forget = self._forget_before()
        if forget is not None:
            self.seen = {event: at for event, at in self.seen.items() if at >= forget}
        if self.directory is not None:
            self._save()

    def _save(self) -> None:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        snap = _Snapshot(
            self.batch_id,
            self.size_ms,
            self.slide_ms,
            self.newest_ms,
            [(m, s, k, c) for (m, s, k), c in self.counts.items()],
        )
        path = self.directory / f"{self.batch_id}.json"
        temp = path.with_suffix(".tmp")
        temp.write_bytes(msgspec.json.encode(snap))
        os.replace(temp, path)
        for older in _snapshots(self.directory):
            if older < self.batch_id:
                (self.directory / f"{older}.json").unlink(missing_ok=True)

    def _forget_before(self) -> int | None:
        """Ids of events older than this (event time) are forgotten."""
        return None if self.newest_ms is None else self.newest_ms - self.dedup_ms

    def _save_ids(self, batch_id: int, ids: dict[str, int]) -> None:
        assert self.directory is not None
        folder = self.directory / "ids"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{batch_id}.json"
        temp = path.with_suffix(".tmp")
        temp.write_bytes(msgspec.json.encode({"newest": max(ids.values()), "ids": ids}))
        os.replace(temp, path)
        self.id_files[batch_id] = max(ids.values())
        forget = self._forget_before()
        if forget is None:
            return
        for older, newest in list(self.id_files.items()):
            if older < batch_id and newest < forget:
                (folder / f"{older}.json").unlink(missing_ok=True)
                del self.id_files[older]

    def _load_ids(self) -> None:
        """The ids counted by the committed batches still remembered; the files of batches
        after the snapshot (counted, then not committed) are dropped."""
        assert self.directory is not None
        folder = self.directory / "ids"
        forget = self._forget_before()
        for batch in sorted(_snapshots(folder)):
            path = folder / f"{batch}.json"
            if batch > self.batch_id:
                path.unlink(missing_ok=True)
                continue
            saved = msgspec.json.decode(path.read_bytes(), type=_Ids)
            self.id_files[batch] = saved.newest
            self.seen.update(
                (e, at) for e, at in saved.ids.items() if forget is None or at >= forget
            )


def _snapshots(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return [int(p.stem) for p in directory.glob("*.json") if p.stem.isdigit()]
