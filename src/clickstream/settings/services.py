"""Settings of the long-running services: the HTTP collector and the dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
)

from clickstream.settings.base import Section


class CollectorSettings(Section):
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
    geoip_database: Path | None = None
    """A MaxMind GeoIP2 or GeoLite2 country (or city) database (``.mmdb``) for the events'
    ``country`` (``pip install 'clickstream[geoip]'``). Unset: geoip2fast's own data file."""
    datacenter_networks: Path | None = None
    """A file of data-centre networks, one CIDR block a line (``#`` comments): events from an
    address in one are labelled bots (``botReason``: ``datacenter network: <block>``)."""
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


class DashboardSettings(Section):
    """The live dashboard's web server."""

    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=0, le=65535)
    history_s: int = Field(default=300, ge=1)
    """Seconds of recent windows a browser receives when it connects."""
    stale_after_s: int = Field(default=60, ge=1)
    """A panel whose newest data (the newest event time its job counted; for all-time totals,
    when they were written) is older than this shows its age in amber."""
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
