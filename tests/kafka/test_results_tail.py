"""`clickstream results tail` prints windows in window order: a window whose last count came in
later (its partition answered later) holds back the windows after it until it has settled
(seed 001's test once got the second second's line first on a busy machine)."""

from __future__ import annotations

import time

import msgspec

from clickstream.events.results import WindowCount
from clickstream.settings import load_settings
from clickstream.tail import ResultsTail


def count(window_start: int, key: str, n: int) -> bytes:
    window = WindowCount(
        metric="shop.gender", window_start=window_start, window_end=window_start + 1000,
        key=key, count=n,
    )  # fmt: skip
    return msgspec.json.encode(window)


def test_a_window_still_settling_holds_back_the_later_ones() -> None:
    tail = ResultsTail(load_settings(environ={}), from_beginning=True, settle_s=0.3)
    printed: list[tuple[int, str]] = []

    def emit(start: int, line: str) -> None:
        printed.append((start, line))

    tail._take(count(2000, "female", 5))
    tail._take(count(1000, "female", 2))
    time.sleep(0.35)  # both settled, the first second's count not final yet:
    tail._take(count(1000, "male", 3))  # its other key, from the partition that answered later
    tail._emit(emit, None, settled_only=True)
    assert printed == []
    time.sleep(0.35)
    tail._emit(emit, None, settled_only=True)
    assert printed == [(1000, '[{"0":2},{"1":3}]'), (2000, '[{"0":5}]')]
    tail._take(count(1000, "male", 4))  # a late count prints its window again, whole
    tail._emit(emit, None, settled_only=False)
    assert printed[2:] == [(1000, '[{"0":2},{"1":4}]')]
