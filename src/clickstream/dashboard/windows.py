"""The recent windows the dashboard holds: the newest count of each (metric, window, key).

Count jobs write in update mode, so one window's count arrives several times while the window
fills; the newest record wins. Per metric, only windows that start within ``history_ms`` of the
metric's newest window are kept; a record for an older window is ignored. Each metric's
freshness (the newest ``newest_event_ms`` and ``written_ms`` of its records) is kept too, and
given with the rows of its newest window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from clickstream.events.results import WindowCount, later

RowKey = tuple[str, int, str]


@dataclass
class _Window:
    end: int
    counts: dict[str, int] = field(default_factory=dict)


class RecentWindows:
    """Latest counts of the recent windows of every metric (not thread-safe: one owner)."""

    def __init__(self, history_ms: int) -> None:
        if history_ms <= 0:
            raise ValueError("history_ms must be positive")
        self.history_ms = history_ms
        self._metrics: dict[str, dict[int, _Window]] = {}
        self._newest: dict[str, int] = {}
        self._fresh: dict[str, tuple[int | None, int | None]] = {}

    def apply(self, rows: Iterable[WindowCount]) -> list[WindowCount]:
        """Merge ``rows`` (oldest first); return those that changed what is held.

        A row whose window is too old, or whose count equals the one held, is not returned.
        """
        changed: dict[RowKey, WindowCount] = {}
        advanced: set[str] = set()
        for row in rows:
            if row.newest_event_ms is not None or row.written_ms is not None:
                event, written = self._fresh.get(row.metric, (None, None))
                self._fresh[row.metric] = (
                    later(event, row.newest_event_ms),
                    later(written, row.written_ms),
                )
            newest = self._newest.get(row.metric)
            if newest is not None and row.window_start <= newest - self.history_ms:
                continue
            windows = self._metrics.setdefault(row.metric, {})
            window = windows.get(row.window_start)
            if window is None:
                window = windows[row.window_start] = _Window(row.window_end)
            elif window.counts.get(row.key) == row.count and window.end == row.window_end:
                continue
            window.end = row.window_end
            window.counts[row.key] = row.count
            changed[(row.metric, row.window_start, row.key)] = row
            if newest is None or row.window_start > newest:
                self._newest[row.metric] = row.window_start
                advanced.add(row.metric)
        for metric in advanced:
            self._prune(metric)
        return [
            row
            for (metric, start, _), row in changed.items()
            if start in self._metrics.get(metric, {})
        ]

    def _prune(self, metric: str) -> None:
        cutoff = self._newest[metric] - self.history_ms
        windows = self._metrics[metric]
        for start in [start for start in windows if start <= cutoff]:
            del windows[start]

    def rows(self) -> list[WindowCount]:
        """Every count held, by metric, then window, then key; the rows of a metric's newest
        window carry its freshness."""
        found = []
        for metric in sorted(self._metrics):
            event, written = self._fresh.get(metric, (None, None))
            top = self._newest.get(metric)
            for start, window in sorted(self._metrics[metric].items()):
                fresh = start == top
                found += [
                    WindowCount(
                        metric=metric,
                        window_start=start,
                        window_end=window.end,
                        key=key,
                        count=count,
                        newest_event_ms=event if fresh else None,
                        written_ms=written if fresh else None,
                    )
                    for key, count in sorted(window.counts.items())
                ]
        return found

    def newest_end(self) -> dict[str, int]:
        """The end of each metric's newest window (epoch ms)."""
        return {
            metric: self._metrics[metric][start].end
            for metric, start in sorted(self._newest.items())
            if start in self._metrics.get(metric, {})
        }

    def freshness(self) -> dict[str, tuple[int | None, int | None]]:
        """Per metric: (newest event time counted, last written), epoch ms, as far as known."""
        return dict(self._fresh)

    def windows(self, metric: str) -> int:
        """How many windows of ``metric`` are held."""
        return len(self._metrics.get(metric, {}))

    def __len__(self) -> int:
        return sum(len(w.counts) for windows in self._metrics.values() for w in windows.values())

    def clear(self) -> None:
        self._metrics.clear()
        self._newest.clear()
        self._fresh.clear()
