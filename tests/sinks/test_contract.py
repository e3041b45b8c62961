"""Every sink follows the one contract of ``sinks/base.py``: it says what a replay does, the
docs say the same, and a sink that reads another's output is written after it, or refused."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pyarrow as pa
import pytest

import clickstream.sinks
from clickstream.errors import ConfigError
from clickstream.settings import load_settings
from clickstream.sinks.avro_files import AvroFilesSink
from clickstream.sinks.base import BaseSink, Replay, fan_out, in_order
from clickstream.sinks.bigquery import BigQuerySessions
from clickstream.sinks.duckdb_table import DuckDBTable, connect

DOCS = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def sink_classes() -> list[type[BaseSink]]:
    found: list[type[BaseSink]] = []
    for info in pkgutil.iter_modules(clickstream.sinks.__path__):
        module = importlib.import_module(f"clickstream.sinks.{info.name}")
        found += [
            c
            for _, c in inspect.getmembers(module, inspect.isclass)
            if issubclass(c, BaseSink) and c is not BaseSink and c.__module__ == module.__name__
        ]
    return found


def test_every_sink_declares_its_replay_and_the_docs_say_the_same() -> None:
    classes = sink_classes()
    assert len(classes) >= 8  # avro, duckdb, two bigquery, cassandra, joins, kafka, results
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(\w+)`[^|]*\|[^|]*\| ([^|:]+)", DOCS.read_text(), re.M)
    }
    for sink in classes:
        assert isinstance(sink.replay, Replay), sink
        assert sink.__name__ in rows, f"{sink.__name__} is not in the sinks table of {DOCS}"
        said = rows[sink.__name__].strip()
        if sink.replay is Replay.AT_LEAST_ONCE:
            assert "at least once" in said, (sink.__name__, said)
        else:
            assert said.startswith("replaces"), (sink.__name__, said)


def test_a_sink_is_written_after_the_sink_it_needs_and_refused_without_it(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        environ={
            "CLICKSTREAM_DATA_DIR": str(tmp_path),
            "CLICKSTREAM_WAREHOUSE_BIGQUERY_PROJECT": "p",
            "CLICKSTREAM_FILES_URL": "gs://bucket/files",
        }
    )
    files = AvroFilesSink.from_settings(settings, "sessions")
    loader = BigQuerySessions(settings, files)
    table = DuckDBTable.from_settings(settings, "sessions", key="session_key")
    assert in_order([loader, table, files]) == [files, loader, table]
    with pytest.raises(ConfigError, match="bigquery:sessions needs the output of avro:sessions"):
        fan_out(loader, table)


def test_a_driver_sink_takes_arrow_and_a_replay_replaces(tmp_path: Path) -> None:
    settings = load_settings(environ={"CLICKSTREAM_DATA_DIR": str(tmp_path)})
    table = DuckDBTable.from_settings(settings, "t", key="k")
    rows = pa.table({"k": ["a", "b"], "n": [1, 2]})
    assert table.write(rows, 7) == 2
    assert table.write(rows, 7) == 2  # the same batch again
    with connect(settings.duckdb_path, read_only=True) as con:
        assert con.execute("SELECT k, n FROM t ORDER BY k").fetchall() == [("a", 1), ("b", 2)]


def test_an_executor_sink_refuses_rows_on_the_driver(tmp_path: Path) -> None:
    files = AvroFilesSink(str(tmp_path), "x")
    with pytest.raises(ConfigError, match="avro:x writes micro-batches from the executors"):
        files.write(pa.table({"a": [1]}), 0)
