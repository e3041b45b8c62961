"""The contract every sink implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class Sink(Protocol):
    name: str

    def write(self, batch: DataFrame, batch_id: int) -> int:
        """Write one micro-batch; writing the same ``batch_id`` again replaces it, never adds.

        Returns the number of rows written.
        """
        ...


def fan_out(*sinks: Sink) -> Callable[[DataFrame, int], None]:
    """A ``foreachBatch`` function writing each micro-batch to every sink, in order."""

    def write(batch: DataFrame, batch_id: int) -> None:
        batch = batch.persist()
        try:
            for sink in sinks:
                sink.write(batch, batch_id)
        finally:
            batch.unpersist()

    return write
