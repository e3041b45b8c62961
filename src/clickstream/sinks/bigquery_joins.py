"""The joins job's tables and views in BigQuery (``pip install 'clickstream[bigquery]'``): the
same facts, dimension and views as :mod:`clickstream.sinks.join_tables`, in the dataset
``warehouse.bigquery_dataset``.

Each micro-batch's aggregates are first written to two staging tables (``CREATE OR REPLACE
TABLE ... AS SELECT ... FROM UNNEST(@rows)``, one statement each: a replay writes them again),
then one multi-statement transaction MERGEs them into ``join_users`` (the newest wins) and
``join_event_counts`` (added) and records the batch in ``join_batches``, unless it is there
already: a replayed batch adds nothing. (The staging step is there because query parameters do
not reach the statements of a script on the emulator the tests use.) The totals of what the
batch touched are then read from the views for the dashboard: each batch costs a few queries,
so on BigQuery the joins' panel moves every few seconds, not every second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from clickstream.errors import TransientError
from clickstream.settings import Settings
from clickstream.sinks.base import BaseSink, Replay
from clickstream.sinks.bigquery import client_for
from clickstream.sinks.join_tables import COUNT, USER, BatchChange, user_totals_table

COLUMNS = {
    "join_users": (
        ("user_id", "STRING"),
        ("name", "STRING"),
        ("email", "STRING"),
        ("event_timestamp", "TIMESTAMP"),
        ("source_partition", "INT64"),
        ("source_offset", "INT64"),
    ),
    "join_event_counts": (("user_id", "STRING"), ("event", "STRING"), ("count", "INT64")),
    "join_batches": (("query", "STRING"), ("checkpoint_id", "STRING"), ("batch_id", "INT64")),
}
VIEWS = {
    "user_event_counts": "SELECT c.user_id, u.name, u.email, SUM(c.count) AS event_count "
    "FROM `{d}.join_event_counts` c JOIN `{d}.join_users` u ON c.user_id = u.user_id "
    "GROUP BY c.user_id, u.name, u.email",
    "event_type_counts": "SELECT event, SUM(count) AS count FROM `{d}.join_event_counts` "
    "GROUP BY event",
    "unmatched_event_counts": "SELECT c.user_id, SUM(c.count) AS event_count "
    "FROM `{d}.join_event_counts` c WHERE c.user_id NOT IN "
    "(SELECT user_id FROM `{d}.join_users`) GROUP BY c.user_id",
}
NEWER = (
    "s.event_timestamp > t.event_timestamp OR (s.event_timestamp = t.event_timestamp AND "
    "(s.source_partition > t.source_partition OR (s.source_partition = t.source_partition "
    "AND s.source_offset > t.source_offset)))"
)


class BigQueryJoinTables(BaseSink):
    """:class:`~clickstream.sinks.join_tables.JoinTables` in BigQuery (see the module's doc)."""

    replay = Replay.REPLACES

    def __init__(
        self,
        settings: Settings,
        *,
        query: str,
        checkpoint_id: Callable[[], str],
        on_change: Callable[[BatchChange], None],
    ) -> None:
        warehouse = settings.warehouse
        self.project = str(warehouse.bigquery_project)
        self.dataset = f"{self.project}.{warehouse.bigquery_dataset}"
        self.settings = settings
        self.name = f"bigquery:{warehouse.bigquery_dataset}.joins"
        self.query = query
        self.checkpoint_id = checkpoint_id
        self.on_change = on_change
        self._ready = False

    def write_frame(self, frame: Any, batch_id: int) -> int:
        raise TransientError(f"{self.name} takes the joins' aggregates as Arrow rows")

    def write_table(self, rows: pa.Table, batch_id: int) -> int:
        if not rows.num_rows:
            return 0
        bigquery, client = client_for(self.settings)
        try:
            if not self._ready:
                self._create(client)
            change = self._add(bigquery, client, rows, batch_id)
        except TransientError:
            raise
        except Exception as exc:  # google.api_core errors: the batch is retried by Spark
            raise TransientError(f"BigQuery write of {self.name} failed: {exc}") from exc
        self.on_change(change)
        return int(rows.num_rows)

    def _create(self, client: Any) -> None:
        client.create_dataset(self.dataset, exists_ok=True)
        for table, columns in COLUMNS.items():
            ddl = ", ".join(f"`{name}` {kind}" for name, kind in columns)
            client.query(f"CREATE TABLE IF NOT EXISTS `{self.dataset}.{table}` ({ddl})").result()
        for view, select in VIEWS.items():
            body = select.format(d=self.dataset)
            client.query(f"CREATE OR REPLACE VIEW `{self.dataset}.{view}` AS {body}").result()
        self._ready = True

    def _add(self, bigquery: Any, client: Any, rows: pa.Table, batch_id: int) -> BatchChange:
        d = self.dataset
        counts = rows.filter(pc.equal(rows["kind"], COUNT))
        users = rows.filter(pc.equal(rows["kind"], USER))
        user_ids = users["user_id"].to_pylist()
        touched = sorted(set(counts["user_id"].to_pylist()) | set(user_ids))
        events = sorted(set(counts["event"].to_pylist()))

        def ids(name: str, values: list[str]) -> Any:
            return bigquery.ArrayQueryParameter(name, "STRING", values)

        def run(sql: str, *params: Any) -> list[Any]:
            config = bigquery.QueryJobConfig(query_parameters=list(params))
            return list(client.query(sql, job_config=config).result())

        before = {
            r.user_id: (r.name, r.email)
            for r in run(
                f"SELECT user_id, name, email, event_timestamp, source_partition, source_offset "
                f"FROM `{d}.join_users` WHERE user_id IN UNNEST(@ids)",
                ids("ids", user_ids),
            )
        }
        self._stage(bigquery, client, "join_users", [_user_row(r) for r in users.to_pylist()])
        self._stage(
            bigquery,
            client,
            "join_event_counts",
            [{k: r[k] for k in ("user_id", "event", "count")} for r in counts.to_pylist()],
        )
        user_columns = [name for name, _ in COLUMNS["join_users"]]
        sets = ", ".join(f"`{c}` = s.`{c}`" for c in user_columns[1:])
        names = ", ".join(f"`{c}`" for c in user_columns)
        values = ", ".join(f"s.`{c}`" for c in user_columns)
        checkpoint_id = self.checkpoint_id().replace("'", "")
        batch = f"'{self.query}', '{checkpoint_id}', {int(batch_id)}"
        client.query(
            f"""
BEGIN TRANSACTION;
IF NOT EXISTS (SELECT 1 FROM `{d}.join_batches` WHERE query = '{self.query}'
    AND checkpoint_id = '{checkpoint_id}' AND batch_id = {int(batch_id)}) THEN
  MERGE `{d}.join_users` t USING `{d}.join_users_stage` s ON t.user_id = s.user_id
    WHEN MATCHED AND ({NEWER}) THEN UPDATE SET {sets}
    WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values});
  MERGE `{d}.join_event_counts` t USING `{d}.join_event_counts_stage` s
    ON t.user_id = s.user_id AND t.event = s.event
    WHEN MATCHED THEN UPDATE SET count = t.count + s.count
    WHEN NOT MATCHED THEN INSERT (user_id, event, count) VALUES (s.user_id, s.event, s.count);
  INSERT INTO `{d}.join_batches` (query, checkpoint_id, batch_id) VALUES ({batch});
END IF;
COMMIT TRANSACTION;
"""
        ).result()
        change = BatchChange()
        now = {
            r.user_id: ((r.user_id, r.name, r.email), int(r.event_count))
            for r in run(
                f"SELECT user_id, name, email, event_count FROM `{d}.user_event_counts` "
                "WHERE user_id IN UNNEST(@ids)",
                ids("ids", touched),
            )
        }
        change.user_totals = user_totals_table(list(now.values()))
        change.renamed = [
            ((uid, *old), *now[uid])
            for uid, old in before.items()
            if uid in now and old != now[uid][0][1:]
        ]
        if events:
            change.event_types = {
                r.event: int(r.count)
                for r in run(
                    f"SELECT event, count FROM `{d}.event_type_counts` "
                    "WHERE event IN UNNEST(@events)",
                    ids("events", events),
                )
            }
        (total,) = run(
            f"SELECT COALESCE(SUM(event_count), 0) AS n FROM `{d}.unmatched_event_counts`"
        )
        change.unmatched = int(total.n)
        return change

    def _stage(self, bigquery: Any, client: Any, table: str, rows: list[dict[str, Any]]) -> None:
        """``rows`` as the table ``<table>_stage`` (replaced), with ``table``'s columns."""
        columns = COLUMNS[table]
        target = f"`{self.dataset}.{table}_stage`"
        if not rows:
            empty = ", ".join(f"CAST(NULL AS {kind}) AS `{name}`" for name, kind in columns)
            client.query(f"CREATE OR REPLACE TABLE {target} AS SELECT {empty} LIMIT 0").result()
            return
        param = bigquery.ArrayQueryParameter(
            "rows",
            "STRUCT",
            [
                bigquery.StructQueryParameter(
                    None,
                    *(bigquery.ScalarQueryParameter(n, k, row[n]) for n, k in columns),
                )
                for row in rows
            ],
        )
        select = ", ".join(f"r.`{name}` AS `{name}`" for name, _ in columns)
        client.query(
            f"CREATE OR REPLACE TABLE {target} AS SELECT {select} FROM UNNEST(@rows) AS r",
            job_config=bigquery.QueryJobConfig(query_parameters=[param]),
        ).result()


def _user_row(row: dict[str, Any]) -> dict[str, Any]:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(row["time"] / 1000, UTC)
    return {
        "user_id": row["user_id"],
        "name": row["name"],
        "email": row["email"],
        "event_timestamp": at.isoformat(),
        "source_partition": row["partition"],
        "source_offset": row["offset"],
    }
