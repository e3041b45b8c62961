"""Admission control arithmetic of the Kafka source."""

from __future__ import annotations

from clickstream.spark.kafka_source import _share


def test_share_is_proportional_and_exact() -> None:
    starts = {("t", 0): 0, ("t", 1): 100, ("t", 2): 5}
    ends = {("t", 0): 600, ("t", 1): 400, ("t", 2): 105}
    capped = _share(starts, ends, 100)
    taken = {k: capped[k] - starts[k] for k in starts}
    assert sum(taken.values()) == 100
    assert taken == {("t", 0): 60, ("t", 1): 30, ("t", 2): 10}


def test_share_keeps_everything_under_the_limit() -> None:
    starts = {("t", 0): 0}
    ends = {("t", 0): 10}
    assert _share(starts, ends, 100) == ends


def test_share_progresses_with_a_limit_below_partition_count() -> None:
    starts = {("t", p): 0 for p in range(4)}
    ends = {("t", p): 10 for p in range(4)}
    capped = _share(starts, ends, 1)
    assert sum(capped.values()) == 1
