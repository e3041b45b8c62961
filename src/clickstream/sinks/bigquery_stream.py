"""Rows streamed into BigQuery, exactly once per key (``pip install 'clickstream[bigquery]'``).

Each micro-batch is sent as DML: ``MERGE`` into the table, on the key, of the batch's rows passed
as one query parameter (an array of structs; chunks of :data:`CHUNK_ROWS`), inserting only the
keys not there yet. A replayed micro-batch (a restart after the rows were written but before
Spark recorded the batch) finds its keys and inserts nothing: no duplicates, whenever the replay
comes. ``insert_rows_json`` with row ids (the seed's call) only drops a repeated id within about
a minute, best effort, so it would not hold across a restart; Storage Write API streams
deduplicate by offset within one stream only. The table (and dataset) is created on the first
batch with the batch's schema. Rows are visible to queries as soon as a MERGE ends.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from clickstream.errors import TransientError
from clickstream.settings import Settings
from clickstream.sinks.base import BaseSink, Replay
from clickstream.sinks.bigquery import client_for

CHUNK_ROWS = 2000
"""Rows per MERGE (a query and its parameters must stay under BigQuery's request size)."""

LEGACY = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}


def bigquery_type(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "INT64"
    if pa.types.is_floating(kind):
        return "FLOAT64"
    if pa.types.is_boolean(kind):
        return "BOOL"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "STRING"
    raise TypeError(f"no BigQuery type for Arrow type {kind}")


class BigQueryMerge(BaseSink):
    """A BigQuery table MERGEd on ``key`` (see the module's doc); a micro-batch is collected to
    the driver as Arrow and sent as query parameters."""

    replay = Replay.REPLACES

    def __init__(self, settings: Settings, table: str, key: str) -> None:
        self.name = f"bigquery:{table}"
        self.project = str(settings.warehouse.bigquery_project)
        self.dataset = settings.warehouse.bigquery_dataset
        self.settings = settings
        self.table = table
        self.key = key
        self._ready = False

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def write_table(self, rows: pa.Table, batch_id: int) -> int:
        """MERGE ``rows`` into the table; return how many were new."""
        if rows.num_rows == 0:
            return 0
        bigquery, client = client_for(self.settings)
        types = {f.name: bigquery_type(f.type) for f in rows.schema}
        if not self._ready:
            self._create(bigquery, client, types)
        inserted = 0
        for start in range(0, rows.num_rows, CHUNK_ROWS):
            inserted += self._merge(bigquery, client, types, rows.slice(start, CHUNK_ROWS))
        return inserted

    def _create(self, bigquery: Any, client: Any, types: dict[str, str]) -> None:
        client.create_dataset(f"{self.project}.{self.dataset}", exists_ok=True)
        schema = [  # the names BigQuery reports back (INTEGER for INT64...)
            bigquery.SchemaField(
                name, LEGACY.get(kind, kind), mode="REQUIRED" if name == self.key else "NULLABLE"
            )
            for name, kind in types.items()
        ]
        client.create_table(bigquery.Table(self.table_id, schema=schema), exists_ok=True)
        self._ready = True

    def _merge(self, bigquery: Any, client: Any, types: dict[str, str], rows: pa.Table) -> int:
        def value(name: str, kind: str, item: Any) -> Any:
            if kind == "TIMESTAMP" and item is not None:
                return item.isoformat()
            return item

        param = bigquery.ArrayQueryParameter(
            "rows",
            "STRUCT",
            [
                bigquery.StructQueryParameter(
                    None,
                    *(
                        bigquery.ScalarQueryParameter(n, k, value(n, k, row[n]))
                        for n, k in types.items()
                    ),
                )
                for row in rows.to_pylist()
            ],
        )
        names = ", ".join(f"`{n}`" for n in types)
        source = ", ".join(f"r.`{n}` AS `{n}`" for n in types)
        values = ", ".join(f"s.`{n}`" for n in types)
        sql = (
            f"MERGE `{self.table_id}` t USING (SELECT {source} FROM UNNEST(@rows) AS r) s "
            f"ON t.`{self.key}` = s.`{self.key}` "
            f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        )
        config = bigquery.QueryJobConfig(query_parameters=[param])
        try:
            job = client.query(sql, job_config=config)
            job.result()
        except Exception as exc:  # google.api_core errors: the batch is retried by Spark
            raise TransientError(f"BigQuery MERGE into {self.table_id} failed: {exc}") from exc
        return int(job.num_dml_affected_rows or 0)
