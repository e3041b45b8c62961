"""The collector's work, free of any web framework: check the key, read the body, validate,
enrich, produce, and say what happened. The ASGI layer (``app.py``) only moves bytes."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from clickstream.collector.enrich import (
    Countries,
    DatacenterNetworks,
    TrustedProxies,
    anonymize_ip,
    cut_user_agent,
    edge_fields,
    enrich,
    parse_user_agent,
)
from clickstream.collector.metrics import CollectorMetrics
from clickstream.collector.problems import Problem, validation_problem
from clickstream.collector.producer import AsyncProducer
from clickstream.errors import KafkaUnavailableError
from clickstream.events.bookstore import encode as encode_bookstore
from clickstream.events.bookstore import from_tracker
from clickstream.events.web import Custom, EnrichedWebEvent, PagePing, Pageview, WebEvent
from clickstream.settings import Settings

RETRY_AFTER_S = 5
_decode_one = msgspec.json.Decoder(WebEvent, strict=False)
_decode_list = msgspec.json.Decoder(list[msgspec.Raw])
_encode = msgspec.json.Encoder()
Record = tuple[str, bytes, bytes, str]  # topic, key, value, event id


@dataclass
class Incoming:
    """What the collector needs to know about a request besides its body."""

    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)
    peer: str | None = None


class Collector:
    """State (settings, producer, metrics) and the two ingest operations."""

    def __init__(self, settings: Settings, producer: AsyncProducer | None = None) -> None:
        from prometheus_client import CollectorRegistry

        self.settings = settings
        self.config = settings.collector
        self.producer = producer or AsyncProducer(settings)
        self.registry = CollectorRegistry()
        self.metrics = CollectorMetrics(self.registry)
        self.sites_by_key = {key: site for site, key in self.config.write_keys.items()}
        topics = settings.topics
        self.topics: dict[type, str] = {Pageview: topics.web_events, PagePing: topics.web_pings}
        self.custom_topic = topics.web_custom
        self.bookstore_topic = topics.bookstore
        self.proxies = (
            TrustedProxies(self.config.trusted_proxies) if self.config.trust_forwarded_for else None
        )
        self.max_future_ms = int(self.config.max_future_s * 1000)
        path = self.config.datacenter_networks
        self.datacenters = DatacenterNetworks.from_file(path) if path is not None else None
        self.countries = Countries(self.config.geoip_database)
        self._accepted_by_topic: dict[str, Any] = {}

    # -- the two endpoints -------------------------------------------------------------------

    async def one(self, incoming: Incoming, body: bytes) -> bytes:
        """``POST /api/webeventspub``: one event, as the seed's snippet sends it."""
        site = self.site(incoming)
        self.check_body(body)
        try:
            event = _decode_one.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
            self.metrics.rejected.labels("invalid").inc()
            raise validation_problem(exc) from None
        record = self.record(event, self.edge(incoming, site), int(time.time() * 1000))
        await self.produce([record])
        return _encode.encode({"accepted": 1, "id": record[3]})

    async def batch(self, incoming: Incoming, body: bytes) -> bytes:
        """``POST /v1/events``: a JSON array or NDJSON; good events in, bad ones by index."""
        site = self.site(incoming)
        self.check_body(body)
        raws = split_batch(body)
        limit = self.config.max_batch_events
        if len(raws) > limit:
            raise Problem(413, f"batch of {len(raws)} events is over the limit of {limit}")
        if not raws:  # a tracker flushing an empty queue: nothing to do
            return _encode.encode({"accepted": 0, "rejected": []})
        records: list[Record] = []
        rejected: list[dict[str, Any]] = []
        edge = self.edge(incoming, site)
        received_at = int(time.time() * 1000)
        for index, raw in enumerate(raws):
            try:
                records.append(self.record(_decode_one.decode(raw), edge, received_at))
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
                problem = validation_problem(exc)
                rejected.append({"index": index, "error": problem.message, "field": problem.field})
        if rejected:
            self.metrics.rejected.labels("invalid").inc(len(rejected))
        if not records:
            raise Problem(422, "no valid event in the batch", rejected=rejected)
        await self.produce(records)
        return _encode.encode({"accepted": len(records), "rejected": rejected})

    # -- steps -------------------------------------------------------------------------------

    def site(self, incoming: Incoming) -> str | None:
        if not self.sites_by_key:
            return None
        key = incoming.query.get("key") or incoming.headers.get("x-clickstream-key")
        if not key:
            raise Problem(
                401, "missing write key: pass ?key=... or an X-Clickstream-Key header", "key"
            )
        site = self.sites_by_key.get(key)
        if site is None:
            raise Problem(401, "unknown write key", "key")
        return site

    def check_body(self, body: bytes) -> None:
        if not body.strip():
            raise Problem(400, "empty body: send a JSON event")
        try:
            body.decode()
        except UnicodeDecodeError as exc:
            raise Problem(400, f"body is not valid UTF-8 (byte {exc.start})") from None

    def edge(self, incoming: Incoming, site: str | None) -> EnrichedWebEvent:
        """What the request adds to each of its events (user agent, client address, site), in
        an event of its own (:func:`~clickstream.collector.enrich.edge_fields`)."""
        headers = incoming.headers
        user_agent = cut_user_agent(headers.get("user-agent", ""))
        address = incoming.peer
        if self.proxies is not None:
            address = self.proxies.client(address, headers.get("x-forwarded-for"))
        return edge_fields(
            agent=parse_user_agent(user_agent),
            ip=anonymize_ip(address, self.config.ip_mode),
            user_agent=user_agent or None,
            site=site,
            network_reason=self.datacenters.reason(address) if self.datacenters else None,
            country=self.countries.of(address),
        )

    def record(self, event: WebEvent, edge: EnrichedWebEvent, received_at: int) -> Record:
        enriched = enrich(event, edge, received_at, self.max_future_ms)
        if enriched.timestamp != event.timestamp:
            self.metrics.clamped.inc()
        if isinstance(event, Custom):  # a bookstore page's description events
            book = from_tracker(
                enriched.eventId, event.name, event.props, enriched.uiud, enriched.timestamp
            )
            if book is not None:
                value = encode_bookstore(book)
                return self.bookstore_topic, enriched.uiud.encode(), value, enriched.eventId
        topic = self.topics.get(type(event), self.custom_topic)
        return topic, enriched.uiud.encode(), _encode.encode(enriched), enriched.eventId

    async def produce(self, records: list[Record]) -> None:
        started = time.perf_counter()
        try:
            await self.producer.send_many(records)
        except KafkaUnavailableError as exc:
            self.metrics.unavailable.inc()
            raise Problem(
                503,
                f"events not stored, Kafka is unavailable ({exc}); retry later",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            ) from None
        self.metrics.ack_seconds.observe(time.perf_counter() - started)
        if len(records) == 1:
            self._accepted(records[0][0]).inc()
            return
        for topic, count in Counter(record[0] for record in records).items():
            self._accepted(topic).inc(count)

    def _accepted(self, topic: str) -> Any:
        """The per-topic counter (looked up once: ``labels()`` takes a lock every call)."""
        child = self._accepted_by_topic.get(topic)
        if child is None:
            child = self._accepted_by_topic[topic] = self.metrics.accepted.labels(topic)
        return child


def split_batch(body: bytes) -> list[msgspec.Raw]:
    """A JSON array, or one JSON value per line (NDJSON)."""
    if body.lstrip()[:1] == b"[":
        try:
            return _decode_list.decode(body)
        except msgspec.ValidationError as exc:  # a JSON value, but not an array of values
            raise Problem(400, f"body is not a JSON array or NDJSON: {exc}") from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise validation_problem(exc) from None
    return [msgspec.Raw(line) for line in body.splitlines() if line.strip()]
