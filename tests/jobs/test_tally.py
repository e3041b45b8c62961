"""The driver-side window tally: window arithmetic, watermark, snapshots and replays."""

from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from clickstream.errors import ConfigError
from clickstream.streaming.tally import Slot, WindowTally

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def add(tally: WindowTally, batch_id: int, events: list[tuple[int, str | None]]) -> dict[Slot, int]:
    """Count and commit ``(time_ms, gender)`` events as metric ``g``; the changed counts."""
    times = pa.array([t for t, _ in events], pa.int64())
    update = tally.count(batch_id, times, [("g", pa.array([k for _, k in events], pa.string()))])
    assert update is not None
    tally.commit(update)
    return update.changed


def expected(events: list[tuple[int, str | None]], size: int, slide: int) -> Counter[Slot]:
    """Counts by the definition: every window [start, start + size) with start a multiple of
    ``slide`` that holds the event."""
    counts: Counter[Slot] = Counter()
    for t, key in events:
        if key is None:
            continue
        start = t - t % slide
        while start + size > t:
            counts["g", start, key] += 1
            start -= slide
    return counts


def random_events(n: int, seed: int, spread_ms: int) -> list[tuple[int, str | None]]:
    rng = random.Random(seed)
    return [(T0 + rng.randrange(spread_ms), rng.choice(["f", "m", "u", None])) for _ in range(n)]


@pytest.mark.parametrize(("size_s", "slide_s"), [(1, None), (3, 1), (5, 2), (10, 10)])
def test_counts_match_the_window_definition(size_s: int, slide_s: int | None) -> None:
    first, second = random_events(500, 1, 8000), random_events(300, 2, 8000)
    tally = WindowTally(size_s * 1000, (slide_s or size_s) * 1000, delay_ms=60_000)
    add(tally, 0, first)
    changed = add(tally, 1, second)
    want = expected(first + second, size_s * 1000, (slide_s or size_s) * 1000)
    assert tally.counts == dict(want)
    # The second batch reports the windows it touched, with their totals so far.
    assert changed == {
        slot: want[slot] for slot in expected(second, size_s * 1000, (slide_s or size_s) * 1000)
    }


def test_event_times_before_1970_fall_in_the_right_window() -> None:
    tally = WindowTally(1000, 1000, 10_000)
    add(tally, 0, [(-1500, "f"), (-1, "f"), (0, "m")])
    assert tally.counts == {("g", -2000, "f"): 1, ("g", -1000, "f"): 1, ("g", 0, "m"): 1}


def test_late_events_are_dropped_and_closed_windows_leave_the_tally() -> None:
    tally = WindowTally(1000, 1000, delay_ms=10_000)
    add(tally, 0, [(T0, "f"), (T0 + 60_000, "m")])
    # The watermark is now T0 + 50 s: the window at T0 closed and left the tally.
    assert tally.counts == {("g", T0 + 60_000, "m"): 1}
    # Windows ending at or before the watermark are closed; the one from T0 + 50 s is open.
    changed = add(tally, 1, [(T0 + 1000, "f"), (T0 + 49_999, "f"), (T0 + 50_000, "u")])
    assert changed == {("g", T0 + 50_000, "u"): 1}
    assert tally.late_events == 2


def test_a_sliding_window_still_open_counts_an_event_whose_older_windows_closed() -> None:
    tally = WindowTally(3000, 1000, delay_ms=0)
    add(tally, 0, [(T0 + 5000, "f")])  # watermark T0 + 5 s
    changed = add(tally, 1, [(T0 + 3500, "m")])  # windows from T0 + 1, 2, 3 s; first two closed
    assert changed == {("g", T0 + 3000, "m"): 1}
    assert tally.late_events == 0


def test_restart_resumes_from_the_snapshot_and_skips_committed_batches(tmp_path: Path) -> None:
    first, second = random_events(200, 3, 4000), random_events(200, 4, 4000)
    tally = WindowTally.open(1, None, 60, tmp_path)
    add(tally, 0, first)
    again = WindowTally.open(1, None, 60, tmp_path)
    assert again.counts == tally.counts
    assert again.batch_id == 0
    times = pa.array([t for t, _ in first], pa.int64())
    keys = [("g", pa.array([k for _, k in first], pa.string()))]
    assert again.count(0, times, keys) is None  # batch 0 was committed: not counted twice

    # Batch 1 counted (its results written) but the process died before the commit: after a
    # restart it is counted again from the state before it, giving the same counts.
    times = pa.array([t for t, _ in second], pa.int64())
    keys = [("g", pa.array([k for _, k in second], pa.string()))]
    lost = again.count(1, times, keys)
    restarted = WindowTally.open(1, None, 60, tmp_path)
    replayed = restarted.count(1, times, keys)
    assert lost is not None
    assert replayed is not None
    assert replayed.changed == lost.changed
    restarted.commit(replayed)
    assert restarted.counts == dict(expected(first + second, 1000, 1000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.json"]


def test_changed_window_settings_against_a_snapshot_are_refused(tmp_path: Path) -> None:
    add(WindowTally.open(1, None, 10, tmp_path), 0, [(T0, "f")])
    with pytest.raises(ConfigError, match=r"1-s windows.*delete it"):
        WindowTally.open(5, None, 10, tmp_path)
    shutil.rmtree(tmp_path)
    assert WindowTally.open(5, None, 10, tmp_path).counts == {}
