"""Sinks: one module per sink, each behind the contract of :mod:`clickstream.sinks.base`, built
from the settings by its ``from_settings``; the choices the settings make are here."""

from __future__ import annotations

from collections.abc import Callable

from clickstream.settings import Settings
from clickstream.sinks.base import Sink
from clickstream.sinks.duckdb_table import DuckDBTable
from clickstream.sinks.join_tables import BatchChange, JoinTables


def warehouse_table(settings: Settings, table: str, key: str, columns: str | None = None) -> Sink:
    """Table ``table`` of the warehouse, upserted on ``key``: in BigQuery when
    ``warehouse.bigquery_project`` is set (``pip install 'clickstream[bigquery]'``), else in the
    DuckDB file."""
    if settings.warehouse.bigquery_project:
        from clickstream.sinks.bigquery_stream import BigQueryMerge

        return BigQueryMerge(settings, table, key=key)
    return DuckDBTable.from_settings(settings, table, key=key, columns=columns)


def join_store(
    settings: Settings,
    *,
    query: str,
    checkpoint_id: Callable[[], str],
    on_change: Callable[[BatchChange], None],
) -> Sink:
    """The joins job's tables and views: in BigQuery when ``warehouse.bigquery_project`` is
    set, else in the DuckDB file."""
    if settings.warehouse.bigquery_project:
        from clickstream.sinks.bigquery_joins import BigQueryJoinTables

        return BigQueryJoinTables(
            settings, query=query, checkpoint_id=checkpoint_id, on_change=on_change
        )
    return JoinTables(
        settings.duckdb_path,
        query=query,
        checkpoint_id=checkpoint_id,
        on_change=on_change,
        lock_timeout_s=settings.warehouse.lock_timeout_s,
    )
