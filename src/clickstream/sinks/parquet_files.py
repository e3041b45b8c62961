"""Parquet files under any fsspec URL, written by Spark's own writer on the executors.

Files are ``<url>/<table>/batch=<id>/part-*.parquet``; a replayed batch overwrites its folder,
so it replaces its files and never duplicates them. On a cluster the URL must be reachable from
the executors (``gs://``, ``s3a://``, HDFS). Timestamps are stored as UTC microseconds
(``spark.sql.parquet.outputTimestampType``), which DuckDB and BigQuery read as timestamps with a
time zone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clickstream.settings import Settings
from clickstream.sinks.base import BaseSink, Replay

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


class ParquetFilesSink(BaseSink):
    """Writes each non-empty micro-batch as Parquet from the executors; see the module doc."""

    replay = Replay.REPLACES

    def __init__(self, url: str, table: str) -> None:
        self.name = f"parquet:{table}"
        self.url = url.rstrip("/")
        self.table = table

    @classmethod
    def from_settings(cls, settings: Settings, table: str) -> ParquetFilesSink:
        """Files of ``table`` under ``files.url``."""
        return cls(settings.files_url, table)

    def batch_url(self, batch_id: int) -> str:
        return f"{self.url}/{self.table}/batch={batch_id:010d}"

    @property
    def local_folder(self) -> str | None:
        """The folder of the files when they are on this machine (a path or ``file://``), which
        a warehouse on this machine can read; None for a remote URL."""
        if self.url.startswith("file://"):
            return self.url[len("file://") :]
        return None if "://" in self.url else self.url

    def write_frame(self, frame: DataFrame, batch_id: int) -> int:
        if frame.isEmpty():
            return 0
        target = self.batch_url(batch_id)
        if "://" not in target:
            target = f"file://{_absolute(target)}"
        frame.write.mode("overwrite").parquet(target)
        return frame.count()


def _absolute(path: str) -> str:
    from pathlib import Path

    return str(Path(path).absolute())


def read_parquet(url: str) -> list[dict[str, Any]]:
    """Every row of every Parquet file under ``url`` (for tests and ``clickstream`` tools)."""
    import fsspec
    import pyarrow.parquet as pq

    fs, path = fsspec.core.url_to_fs(url)
    rows: list[dict[str, Any]] = []
    for name in sorted(fs.glob(f"{path}/**/*.parquet")):
        with fs.open(name, "rb") as fh:
            rows.extend(pq.read_table(fh).to_pylist())
    return rows
