"""Shared by the benchmarks: time a streaming DataFrame read to its end."""

from __future__ import annotations

import tempfile
import time
from typing import Any


def time_count(frame: Any) -> tuple[float, int]:
    """Run ``frame`` with ``availableNow``, counting each micro-batch: (seconds, rows)."""
    counted: list[int] = []
    with tempfile.TemporaryDirectory() as checkpoint:
        started = time.perf_counter()
        query = (
            frame.writeStream.foreachBatch(lambda batch, _id: counted.append(batch.count()))
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        elapsed = time.perf_counter() - started
    if query.exception() is not None:
        raise RuntimeError(str(query.exception()))
    return elapsed, sum(counted)
