"""Shared by the Spark tests: run a streaming query to the end of what Kafka holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def run_available_now(
    frame: Any, sink: Callable[[Any, int], None], checkpoint: Path, timeout: int = 300
) -> BaseException | None:
    """Run ``frame`` into ``sink`` (``foreachBatch``) with ``availableNow`` from ``checkpoint``;
    return the error that stopped it, or None."""
    query = (
        frame.writeStream.foreachBatch(sink)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    try:
        query.awaitTermination(timeout)
    except Exception as exc:
        return exc
    error: BaseException | None = query.exception()
    return error
