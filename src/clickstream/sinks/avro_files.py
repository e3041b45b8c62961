"""Avro files under any fsspec URL: one file per micro-batch per output partition.

Files are named ``<url>/<table>/batch=<id>/part-<partition>.avro``; a replayed batch first
removes its folder, so it replaces its files and never duplicates them. Written from the
executors, so on a cluster the URL must be reachable from them (``gs://``, ``s3://``, HDFS).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from clickstream.settings import Settings
from clickstream.sinks.base import BaseSink, Replay

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType


def avro_schema(schema: StructType, name: str) -> dict[str, Any]:
    """An Avro record schema for a Spark schema (every field nullable)."""
    return {
        "type": "record",
        "name": name,
        "namespace": "clickstream",
        "fields": [
            {
                "name": f.name,
                "type": ["null", _avro_type(f.dataType, f"{name}_{f.name}")],
                "default": None,
            }
            for f in schema.fields
        ],
    }


def _avro_type(dtype: DataType, name: str) -> Any:
    kind = dtype.typeName()
    simple = {
        "string": "string",
        "long": "long",
        "integer": "int",
        "short": "int",
        "byte": "int",
        "double": "double",
        "float": "float",
        "boolean": "boolean",
        "binary": "bytes",
    }
    if kind in simple:
        return simple[kind]
    if kind == "timestamp":
        return {"type": "long", "logicalType": "timestamp-micros"}
    if kind == "date":
        return {"type": "int", "logicalType": "date"}
    if kind == "array":
        items = _avro_type(dtype.elementType, name)  # type: ignore[attr-defined]
        # Items are a union only when they can be null: fastavro resolves a union per item,
        # which made writing sessions twice as slow, and BigQuery cannot load null items.
        return {"type": "array", "items": ["null", items] if dtype.containsNull else items}  # type: ignore[attr-defined]
    if kind == "map":
        return {"type": "map", "values": ["null", _avro_type(dtype.valueType, name)]}  # type: ignore[attr-defined]
    if kind == "struct":
        return avro_schema(dtype, name)  # type: ignore[arg-type]
    raise ValueError(f"no Avro type for Spark type {dtype.simpleString()}")


class AvroFilesSink(BaseSink):
    """Writes each micro-batch as Avro files from the executors; a replayed batch replaces its
    folder. See the module documentation."""

    replay = Replay.REPLACES

    def __init__(self, url: str, table: str) -> None:
        self.name = f"avro:{table}"
        self.url = url.rstrip("/")
        self.table = table

    @classmethod
    def from_settings(cls, settings: Settings, table: str) -> AvroFilesSink:
        """Files of ``table`` under ``files.url``."""
        return cls(settings.files_url, table)

    def batch_url(self, batch_id: int) -> str:
        return f"{self.url}/{self.table}/batch={batch_id:010d}"

    def write_frame(self, batch: DataFrame, batch_id: int) -> int:
        import fsspec

        folder = self.batch_url(batch_id)
        fs, path = fsspec.core.url_to_fs(folder)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        schema = avro_schema(batch.schema, self.table)
        written = batch.mapInArrow(_writer(folder, schema), "path string, rows long").collect()
        return sum(int(row.rows) for row in written)


def _writer(folder: str, schema: dict[str, Any]):  # type: ignore[no-untyped-def]
    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import fastavro
        import fsspec
        from pyspark import TaskContext

        rows: list[dict[str, Any]] = []
        for batch in batches:
            rows.extend(_micros(batch).to_pylist())
        if not rows:
            return
        context = TaskContext.get()
        partition = context.partitionId() if context else 0
        target = f"{folder}/part-{partition:05d}.avro"
        with fsspec.open(target, "wb", auto_mkdir=True) as out:
            fastavro.writer(out, fastavro.parse_schema(schema), rows)
        yield pa.RecordBatch.from_pydict({"path": [target], "rows": [len(rows)]})

    return write


def _micros(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps (also in lists) as integer microseconds, what Avro's ``timestamp-micros``
    stores: Python datetimes cost more to make and to encode than the rest of a session row."""
    columns = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_timestamp(kind):
            column = column.cast(pa.timestamp("us", tz=kind.tz)).cast(pa.int64())
        elif pa.types.is_list(kind) and pa.types.is_timestamp(kind.value_type):
            unit = pa.timestamp("us", tz=kind.value_type.tz)
            column = column.cast(pa.list_(unit)).cast(pa.list_(pa.int64()))
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def read_avro(url: str) -> list[dict[str, Any]]:
    """Every record of every Avro file under ``url`` (for tests and ``clickstream`` tools)."""
    import fastavro
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    records: list[dict[str, Any]] = []
    for name in sorted(fs.glob(f"{path}/**/*.avro")):
        with fs.open(name, "rb") as fh:
            records.extend(dict(record) for record in fastavro.reader(fh))  # type: ignore[arg-type]
    return records
