"""RecentWindows: the newest count per (metric, window, key), recent windows only."""

from __future__ import annotations

from clickstream.dashboard.windows import RecentWindows
from clickstream.events.results import WindowCount


def row(metric: str, start_s: int, key: str, count: int) -> WindowCount:
    return WindowCount(
        metric=metric,
        window_start=start_s * 1000,
        window_end=(start_s + 1) * 1000,
        key=key,
        count=count,
    )


def test_newest_count_wins_and_unchanged_counts_are_not_reported() -> None:
    held = RecentWindows(history_ms=60_000)
    changed = held.apply([row("shop.gender", 100, "male", 1), row("shop.gender", 100, "male", 4)])
    assert [(r.key, r.count) for r in changed] == [("male", 4)]
    assert held.apply([row("shop.gender", 100, "male", 4)]) == []
    assert held.apply([row("shop.gender", 100, "female", 2)]) == [
        row("shop.gender", 100, "female", 2)
    ]
    assert held.rows() == [row("shop.gender", 100, "female", 2), row("shop.gender", 100, "male", 4)]
    assert len(held) == 2


def test_windows_older_than_history_of_the_newest_window_are_dropped_per_metric() -> None:
    held = RecentWindows(history_ms=10_000)
    held.apply([row("shop.gender", s, "male", 1) for s in range(100, 105)])
    held.apply([row("web.pages", 50, "/", 3)])
    changed = held.apply([row("shop.gender", 112, "male", 7)])
    assert changed == [row("shop.gender", 112, "male", 7)]
    # 112 - 10 s: windows starting at 102 or before are gone; web.pages has its own newest.
    assert [r.window_start // 1000 for r in held.rows() if r.metric == "shop.gender"] == [
        103,
        104,
        112,
    ]
    assert held.windows("web.pages") == 1
    # A late record for a dropped window is ignored, one for a kept window is not.
    assert held.apply([row("shop.gender", 101, "male", 9)]) == []
    assert held.apply([row("shop.gender", 103, "male", 9)]) == [row("shop.gender", 103, "male", 9)]
    assert held.newest_end() == {"shop.gender": 113_000, "web.pages": 51_000}


def test_a_batch_that_moves_the_newest_window_returns_only_rows_still_held() -> None:
    held = RecentWindows(history_ms=5_000)
    changed = held.apply([row("m", 1, "a", 1), row("m", 20, "a", 2), row("m", 18, "a", 3)])
    assert changed == [row("m", 20, "a", 2), row("m", 18, "a", 3)]
    assert held.rows() == [row("m", 18, "a", 3), row("m", 20, "a", 2)]
