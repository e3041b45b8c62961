"""A DuckDB table loaded idempotently: rows are upserted on a key, so a replayed micro-batch
replaces its rows instead of adding them again.

The connection is opened per batch and closed at once: DuckDB lets one process write a file,
and ``clickstream sql`` must be able to read it between batches. Within a process the writes
take turns (:func:`writing`, one lock per file): several streaming queries write from their own
threads, and DuckDB's Python client fails when a thread opens or closes a file's connection
while another uses it (``Table Function with name python_arrow_scan does not exist``, in
``register``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickstream.errors import ClickstreamError, TransientError
from clickstream.settings import Settings
from clickstream.sinks.base import BaseSink, Replay
from clickstream.sinks.parquet_files import ParquetFilesSink

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    from pyspark.sql import DataFrame


_WRITERS: dict[Path, threading.Lock] = {}
_WRITERS_LOCK = threading.Lock()


def connect(
    path: Path, read_only: bool = False, timeout: float = 30.0
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, waiting while another process (a job's batch) holds the lock."""
    import duckdb

    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise TransientError(f"cannot open the warehouse {path}: {exc}") from None
            time.sleep(0.1)


def read_query(
    path: Path, query: str, timeout: float = 30.0
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns and rows of ``query`` on the warehouse at ``path``, read-only (``clickstream
    sql``); :class:`ClickstreamError` with DuckDB's first line when it fails."""
    import duckdb

    if not path.exists():
        raise ClickstreamError(f"no warehouse at {path} yet: run a job first (clickstream up)")
    with connect(path, read_only=True, timeout=timeout) as con:
        try:
            cursor = con.execute(query)
        except duckdb.Error as exc:
            raise ClickstreamError(f"query failed: {str(exc).splitlines()[0]}") from None
        columns = [d[0] for d in cursor.description or []]
        return columns, cursor.fetchall()


@contextmanager
def writing(path: Path, timeout: float = 30.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to write the warehouse at ``path``, the only one of this process while it
    is open (see the module's doc); closed on leaving."""
    key = path.absolute()
    with _WRITERS_LOCK:
        lock = _WRITERS.setdefault(key, threading.Lock())
    with lock, connect(path, timeout=timeout) as con:
        yield con


class DuckDBTable(BaseSink):
    """A warehouse table upserted on ``key``. A micro-batch is loaded from the Parquet files
    ``files`` wrote of it when they are on this machine (DuckDB reads them itself: no row
    passes through the driver's Python); otherwise it is collected to the driver as Arrow
    (DuckDB is written by one process)."""

    replay = Replay.REPLACES

    def __init__(
        self,
        path: Path,
        table: str,
        key: str,
        lock_timeout_s: float = 30.0,
        columns: str | None = None,
        files: ParquetFilesSink | None = None,
    ) -> None:
        self.name = f"duckdb:{table}"
        self.files = files if files is not None and files.local_folder is not None else None
        """The sink whose files of a batch this one loads (when they are local)."""
        self.needs = (self.files,) if self.files is not None else ()
        self.columns = columns
        """The table's columns as DDL (``"id" UUID, ...``); default: those of the first batch."""
        self.path = path
        self.lock_timeout_s = lock_timeout_s
        self.table = table
        self.key = key

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        table: str,
        key: str,
        columns: str | None = None,
        files: ParquetFilesSink | None = None,
    ) -> DuckDBTable:
        """Table ``table`` of the warehouse (``warehouse.duckdb_path``)."""
        timeout = settings.warehouse.lock_timeout_s
        return cls(settings.duckdb_path, table, key, timeout, columns, files)

    def write_frame(self, frame: DataFrame, batch_id: int) -> int:
        if self.files is None:
            return super().write_frame(frame, batch_id)
        folder = Path(self.files.batch_url(batch_id).removeprefix("file://"))
        parts = sorted(folder.glob("*.parquet"))
        if not parts:  # an empty batch writes no files
            return 0
        listed = ", ".join("'" + str(part).replace("'", "''") + "'" for part in parts)
        with writing(self.path, self.lock_timeout_s) as con:
            con.execute(f"CREATE OR REPLACE TEMP VIEW incoming AS FROM read_parquet([{listed}])")
            return self._upsert(con)

    def write_table(self, rows: pa.Table, batch_id: int) -> int:
        if rows.num_rows == 0:
            return 0
        with writing(self.path, self.lock_timeout_s) as con:
            con.register("incoming", rows)
            written = self._upsert(con)
            con.unregister("incoming")
        return written

    def _upsert(self, con: duckdb.DuckDBPyConnection) -> int:
        """Rows of the relation ``incoming`` into the table, replacing those of the same key."""
        self._ensure_table(con)
        (written,) = con.execute(
            f'INSERT OR REPLACE INTO "{self.table}" BY NAME SELECT * FROM incoming'
        ).fetchall()[0]
        return int(written)

    def _ensure_table(self, con: duckdb.DuckDBPyConnection) -> None:
        ddl = self.columns
        if ddl is None:
            columns = con.execute("DESCRIBE SELECT * FROM incoming").fetchall()
            ddl = ", ".join(f'"{name}" {kind}' for name, kind, *_ in columns)
        con.execute(
            f'CREATE TABLE IF NOT EXISTS "{self.table}" ({ddl}, PRIMARY KEY ("{self.key}"))'
        )
        # A table made by an older version lacks the columns added since: add them (null in
        # the rows written before). Rows go in by column name, so the order does not matter.
        held = {row[0] for row in con.execute(f'DESCRIBE "{self.table}"').fetchall()}
        for name, kind, *_ in con.execute("DESCRIBE SELECT * FROM incoming").fetchall():
            if name not in held:
                con.execute(f'ALTER TABLE "{self.table}" ADD COLUMN "{name}" {kind}')
