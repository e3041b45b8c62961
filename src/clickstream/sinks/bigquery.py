"""Sessions into BigQuery (``pip install 'clickstream[bigquery]'``).

Like the seed's Cloud Function, each micro-batch's Avro files (the files sink must point at a
``gs://`` URL) are loaded with a load job; to make a replayed batch harmless they are loaded
into a staging table (WRITE_TRUNCATE) and MERGEd into ``sessions`` on ``session_key``.
Credentials come from the environment as for any Google client
(``GOOGLE_APPLICATION_CREDENTIALS`` or the metadata server); see docs/scenarios/web.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clickstream.errors import ConfigError, MissingExtraError
from clickstream.settings import Settings
from clickstream.sinks.avro_files import AvroFilesSink
from clickstream.sinks.base import BaseSink, Replay

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def _client(project: str, endpoint: str | None = None) -> Any:
    """The ``bigquery`` module and a client; with ``endpoint`` (an emulator), anonymous."""
    try:
        from google.cloud import bigquery
    except ImportError:
        raise MissingExtraError("bigquery", "google-cloud-bigquery") from None
    if endpoint is None:
        return bigquery, bigquery.Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    options = ClientOptions(api_endpoint=endpoint)
    return bigquery, bigquery.Client(
        project=project,
        client_options=options,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )


class BigQuerySessions(BaseSink):
    """Loads the Avro files that ``files`` wrote for a batch (it needs them: see
    :attr:`needs`) and MERGEs them on ``session_key``; a replay loads the same files again
    into a truncated staging table, so it replaces."""

    replay = Replay.REPLACES

    def __init__(self, settings: Settings, files: AvroFilesSink, table: str = "sessions") -> None:
        if not files.url.startswith("gs://"):
            raise ConfigError(
                "BigQuery loads files from Cloud Storage: set files.url to a gs:// URL "
                "(CLICKSTREAM_FILES_URL=gs://bucket/path)"
            )
        self.name = f"bigquery:{table}"
        self.files = files
        self.needs = (files,)
        self.project = str(settings.warehouse.bigquery_project)
        self.dataset = settings.warehouse.bigquery_dataset
        self.table = table
        self.endpoint = settings.warehouse.bigquery_endpoint

    def write_frame(self, frame: DataFrame, batch_id: int) -> int:
        """Loads the files of ``batch_id``: the rows are read from them, not from ``frame``."""
        bigquery, client = _client(self.project, self.endpoint)
        target = f"{self.project}.{self.dataset}.{self.table}"
        staging = f"{target}_staging"
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.AVRO,
            use_avro_logical_types=True,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        uri = f"{self.files.batch_url(batch_id)}/*.avro"
        client.load_table_from_uri(uri, staging, job_config=config).result()
        client.query(f"CREATE TABLE IF NOT EXISTS `{target}` LIKE `{staging}`").result()
        columns = [field.name for field in client.get_table(staging).schema]
        assignments = ", ".join(f"`{c}` = s.`{c}`" for c in columns)
        names = ", ".join(f"`{c}`" for c in columns)
        values = ", ".join(f"s.`{c}`" for c in columns)
        client.query(
            f"MERGE `{target}` t USING `{staging}` s ON t.session_key = s.session_key "
            f"WHEN MATCHED THEN UPDATE SET {assignments} "
            f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        ).result()
        return int(client.get_table(staging).num_rows)
