"""Parquet files written by Spark on the executors, and the warehouse loading them itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickstream.sinks.base import fan_out
from clickstream.sinks.duckdb_table import DuckDBTable, connect
from clickstream.sinks.parquet_files import ParquetFilesSink, read_parquet

ROWS = [
    ("k1", ["/a", "/b"], datetime(2026, 1, 1, 10, 0, tzinfo=UTC), 2),
    ("k2", ["/c"], datetime(2026, 1, 1, 11, 30, tzinfo=UTC), 1),
]
SCHEMA = "key string, pages array<string>, started timestamp, pageviews long"


def test_the_warehouse_loads_the_files_of_the_batch_and_a_replay_replaces_them(
    spark: Any, tmp_path: Path
) -> None:
    files = ParquetFilesSink(str(tmp_path / "files"), "t")
    table = DuckDBTable(tmp_path / "w.duckdb", "t", "key", files=files)
    assert list(table.needs) == [files]
    write = fan_out(table, files)  # the table is written after the files it needs

    write(spark.createDataFrame(ROWS, SCHEMA), 7)
    write(spark.createDataFrame(ROWS[:1], SCHEMA), 7)  # the batch again, after a failure
    write(spark.createDataFrame([], SCHEMA), 8)  # closes no session: no files

    assert [p.name for p in (tmp_path / "files" / "t").iterdir()] == ["batch=0000000007"]
    in_files = read_parquet(str(tmp_path / "files" / "t"))
    assert [(r["key"], r["pages"], r["started"]) for r in in_files] == [
        ("k1", ["/a", "/b"], ROWS[0][2])
    ]
    with connect(tmp_path / "w.duckdb", read_only=True) as con:
        rows = con.execute("SELECT key, pages, started, pageviews FROM t ORDER BY key").fetchall()
        kinds = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE t)").fetchall())
    # k2 stays from the first attempt: the warehouse upserts, it does not delete.
    assert rows == [("k1", ["/a", "/b"], ROWS[0][2], 2), ("k2", ["/c"], ROWS[1][2], 1)]
    assert kinds["started"] == "TIMESTAMP WITH TIME ZONE"


def test_the_warehouse_loads_the_files_not_the_frame(spark: Any, tmp_path: Path) -> None:
    """What DuckDB loads is what the files hold: the batch does not pass through the driver."""
    files = ParquetFilesSink(str(tmp_path / "files"), "t")
    files.write(spark.createDataFrame(ROWS, SCHEMA), 3)
    table = DuckDBTable(tmp_path / "w.duckdb", "t", "key", files=files)
    assert table.write(spark.createDataFrame([], SCHEMA), 3) == 2
    with connect(tmp_path / "w.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM t").fetchall() == [(2,)]


def test_files_elsewhere_are_not_loaded_by_the_warehouse(tmp_path: Path) -> None:
    remote = ParquetFilesSink("s3://bucket/path", "t")
    assert remote.local_folder is None
    table = DuckDBTable(tmp_path / "w.duckdb", "t", "key", files=remote)
    assert table.files is None
    assert list(table.needs) == []
    assert ParquetFilesSink(f"file://{tmp_path}", "t").local_folder == str(tmp_path)
