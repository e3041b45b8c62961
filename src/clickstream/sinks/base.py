"""The contract every sink implements, and the one way jobs write through sinks.

A sink has a ``name``, says what a replay does (:class:`Replay`), names the sinks whose output
of the same batch it reads (``needs``), and writes a batch with ``write(batch, batch_id)``:

* a micro-batch (a Spark ``DataFrame``) is written from the executors where the sink can (files,
  Kafka, Cassandra); a sink that can only write from one process (the DuckDB warehouse, a
  BigQuery MERGE) collects it to the driver as Arrow, and says so in its documentation;
* an Arrow table (rows made on the driver: counts, dead letters of a reduction) is written
  from the driver.

Jobs write only through ``write`` (or :func:`fan_out`, which writes one micro-batch to several
sinks, each after those it needs). The table in docs/architecture.md lists every sink with its
replay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import pyarrow as pa

from clickstream.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

Batch = Any
"""A micro-batch (``pyspark.sql.DataFrame``) or rows on the driver (``pyarrow.Table``)."""


class Replay(StrEnum):
    REPLACES = "replaces"
    """Writing a batch id again replaces what it wrote (rows upserted on their key, the batch's
    files rewritten, a transaction keyed by the batch id): a replay never adds."""
    AT_LEAST_ONCE = "at least once"
    """Writing a batch id again writes its records again (Kafka topics). Readers keep the newest
    record per key (the result topic), or tell copies apart by where their record came from
    (dead letters carry the source topic, partition and offset)."""


class Sink(Protocol):
    name: str

    @property
    def replay(self) -> Replay:
        """What writing a batch id again does."""
        ...

    @property
    def needs(self) -> Sequence[Sink]:
        """Sinks whose output of the same batch this one reads: written before it."""
        ...

    def write(self, batch: Batch, batch_id: int) -> int:
        """Write one batch (see the module's doc); returns the number of rows written."""
        ...


class BaseSink:
    """What most sinks share: ``write`` takes either kind of batch and hands it to
    :meth:`write_frame` (a micro-batch) or :meth:`write_table` (Arrow on the driver); a sink
    is also a ``foreachBatch`` function."""

    name: str
    replay: ClassVar[Replay]
    needs: Sequence[Sink] = ()

    def write(self, batch: Batch, batch_id: int) -> int:
        if isinstance(batch, pa.Table):
            return self.write_table(batch, batch_id)
        return self.write_frame(batch, batch_id)

    def write_frame(self, frame: DataFrame, batch_id: int) -> int:
        """A micro-batch. By default collected to the driver as Arrow (for sinks written from
        one process); sinks that write from the executors override this."""
        return self.write_table(frame.toArrow(), batch_id)

    def write_table(self, rows: pa.Table, batch_id: int) -> int:
        raise ConfigError(
            f"{self.name} writes micro-batches from the executors: give it a DataFrame"
        )

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self.write(batch, batch_id)


def in_order(sinks: Sequence[Sink]) -> list[Sink]:
    """``sinks`` in an order where each comes after the sinks it needs; :class:`ConfigError`
    when a sink needs one that is not among them."""
    ordered: list[Sink] = []
    placed: set[int] = set()

    def place(sink: Sink, path: tuple[int, ...]) -> None:
        if id(sink) in placed:
            return
        if id(sink) in path:
            raise ConfigError(f"sink {sink.name} needs itself (through {len(path)} sinks)")
        for need in sink.needs:
            if not any(need is s for s in sinks):
                raise ConfigError(f"sink {sink.name} needs the output of {need.name}: add it")
            place(need, (*path, id(sink)))
        placed.add(id(sink))
        ordered.append(sink)

    for sink in sinks:
        place(sink, ())
    return ordered


def fan_out(*sinks: Sink, cached: bool = False) -> Callable[[DataFrame, int], None]:
    """A ``foreachBatch`` function writing each micro-batch to every sink, each after the sinks
    it needs (:func:`in_order`); the batch is computed once for all of them (cached here,
    unless ``cached``: the caller hands a batch read from a cache of its own)."""
    ordered = in_order(sinks)

    def write(batch: DataFrame, batch_id: int) -> None:
        if len(ordered) == 1 or cached:
            for sink in ordered:
                sink.write(batch, batch_id)
            return
        batch = batch.persist()
        try:
            for sink in ordered:
                sink.write(batch, batch_id)
        finally:
            batch.unpersist()

    return write
