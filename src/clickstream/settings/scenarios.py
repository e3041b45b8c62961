"""Settings of the scenarios with sinks or topics of their own: bookstore (and its Cassandra
sink), songs, joins."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
)

from clickstream.settings.base import Section


class BookstoreSettings(Section):
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


class CassandraSettings(Section):
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


class SongsSettings(Section):
    """The songs scenario (``clickstream simulate songs``, the ``songs`` job)."""

    topic: str = Field(default="tony-allen-plays", min_length=1)
    """Song plays (the seed's topic name)."""
    open_windows_s: int = Field(default=40 * 86_400, ge=60)
    """Minute and hour windows take plays this long (of event time) behind the newest play: the
    seed stamps plays anywhere earlier in the current month, and those must count."""


class JoinsSettings(Section):
    """The stream-joins scenario (seed 003): page events counted per user, joined to the users
    in the warehouse."""

    users_topic: str = Field(default="CorpAppsTopic", min_length=1)
    """Users (``event_timestamp, user_id, email, name``); the seed's topic name."""
    events_topic: str = Field(default="test", min_length=1)
    """Page events (``event_timestamp, user_id, page, event``); the seed's topic name."""
    trigger_s: float = Field(default=1.0, ge=0)
    """Micro-batch interval of the joins job."""
    max_offsets_per_trigger: int = Field(default=500_000, ge=1)
    """Records one micro-batch reads from each topic at most."""
