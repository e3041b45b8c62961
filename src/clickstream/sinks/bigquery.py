"""Sessions into BigQuery (``pip install 'clickstream[bigquery]'``).

Like the seed's Cloud Function, each micro-batch's Avro files (the files sink must point at a
``gs://`` URL) are loaded with a load job; to make a replayed batch harmless they are loaded
into a staging table (WRITE_TRUNCATE) and MERGEd into ``sessions`` on ``session_key``.
Credentials: a service account's key file (``warehouse.bigquery_credentials_file``), else the
environment's, as for any Google client (``GOOGLE_APPLICATION_CREDENTIALS`` or the metadata
server); see docs/scenarios/web.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from clickstream.errors import ConfigError, MissingExtraError
from clickstream.settings import Settings
from clickstream.sinks.avro_files import AvroFilesSink
from clickstream.sinks.base import BaseSink, Replay

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


def _client(project: str, endpoint: str | None = None, credentials_file: Path | None = None) -> Any:
    """The ``bigquery`` module and a client. Credentials: the service-account key in
    ``credentials_file`` when set; else, with ``endpoint`` (an emulator), none; else the
    environment's (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server)."""
    try:
        from google.cloud import bigquery
    except ImportError:
        raise MissingExtraError("bigquery", "google-cloud-bigquery") from None
    credentials: Any = None
    if credentials_file is not None:
        credentials = _key_file_credentials(credentials_file)
    elif endpoint is not None:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    options = None
    if endpoint is not None:
        from google.api_core.client_options import ClientOptions

        options = ClientOptions(api_endpoint=endpoint)
    return bigquery, bigquery.Client(
        project=project, client_options=options, credentials=credentials
    )


def client_for(settings: Settings) -> Any:
    """:func:`_client` for ``warehouse.bigquery_project``, ``bigquery_endpoint`` and
    ``bigquery_credentials_file``."""
    warehouse = settings.warehouse
    return _client(
        str(warehouse.bigquery_project),
        warehouse.bigquery_endpoint,
        warehouse.bigquery_credentials_file,
    )


def _key_file_credentials(path: Path) -> Any:
    """A service account's credentials from its JSON key file (as seed 004 reads it), with
    BigQuery's scope."""
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(path), scopes=["https://www.googleapis.com/auth/bigquery"]
        )
    except FileNotFoundError:
        raise ConfigError(f"warehouse.bigquery_credentials_file: {path} does not exist") from None
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"warehouse.bigquery_credentials_file: {path} is not a service account's JSON key "
            f"({exc})"
        ) from None


_TYPES = {
    "string": "STRING",
    "long": "INTEGER",
    "integer": "INTEGER",
    "short": "INTEGER",
    "byte": "INTEGER",
    "double": "FLOAT",
    "float": "FLOAT",
    "boolean": "BOOLEAN",
    "binary": "BYTES",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}


def bigquery_schema(schema: StructType) -> list[Any]:
    """BigQuery's columns for a Spark schema, as its Avro files load: an array is a REPEATED
    column of its items (BigQuery refuses a null item: the jobs write none), anything else
    NULLABLE."""
    from google.cloud.bigquery import SchemaField

    columns = []
    for field in schema.fields:
        kind, mode = field.dataType, "NULLABLE"
        if kind.typeName() == "array":
            kind, mode = kind.elementType, "REPEATED"  # type: ignore[attr-defined]
        name = _TYPES.get(kind.typeName())
        if name is None:
            raise ValueError(f"no BigQuery column for {field.name} {kind.simpleString()}")
        columns.append(SchemaField(field.name, name, mode=mode))
    return columns


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
        self.settings = settings
        self._tables_made = False

    def write_frame(self, frame: DataFrame, batch_id: int) -> int:
        """Loads the files of ``batch_id``: the rows are read from them, not from ``frame``
        (its schema makes the tables'). A batch that closed no session has no file, and loads
        nothing (BigQuery fails a load whose URI matches no file)."""
        import fsspec

        folder = self.files.batch_url(batch_id)
        fs, path = fsspec.core.url_to_fs(folder)
        fs.invalidate_cache(path)  # written meanwhile by the executors
        if not fs.glob(f"{path}/*.avro"):
            return 0
        bigquery, client = client_for(self.settings)
        target = f"{self.project}.{self.dataset}.{self.table}"
        staging = f"{target}_staging"
        if not self._tables_made:
            # Made from the batch's schema: BigQuery would take it from the Avro files, an
            # emulator may not; either way the same columns.
            client.create_dataset(f"{self.project}.{self.dataset}", exists_ok=True)
            columns = bigquery_schema(frame.schema)
            for name in (staging, target):
                table = client.create_table(bigquery.Table(name, schema=columns), exists_ok=True)
                held = {field.name for field in table.schema}
                added = [column for column in columns if column.name not in held]
                if added:  # made by an older version: add the columns added since
                    table.schema = [*table.schema, *added]
                    client.update_table(table, ["schema"])
            self._tables_made = True
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.AVRO,
            use_avro_logical_types=True,
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
        )
        client.load_table_from_uri(f"{folder}/*.avro", staging, job_config=config).result()
        names = [field.name for field in frame.schema.fields]
        assignments = ", ".join(f"`{c}` = s.`{c}`" for c in names)
        columns_sql = ", ".join(f"`{c}`" for c in names)
        values = ", ".join(f"s.`{c}`" for c in names)
        client.query(
            f"MERGE `{target}` t USING `{staging}` s ON t.session_key = s.session_key "
            f"WHEN MATCHED THEN UPDATE SET {assignments} "
            f"WHEN NOT MATCHED THEN INSERT ({columns_sql}) VALUES ({values})"
        ).result()
        return int(client.get_table(staging).num_rows)
