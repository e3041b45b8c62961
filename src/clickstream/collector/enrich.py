r"""What the collector adds to an event: receive time, parsed user agent, bot label and its
reason, anonymised client address, UTM parameters, and a stable event id.

Bots are labelled, not dropped: ``bot`` and ``botReason`` (``crawler: Googlebot\/``,
``headless browser: HeadlessChrome``, ``datacenter network: 34.64.0.0/10``, ``no user
agent``). User agents are matched against the crawler-user-agents list (the patterns of
github.com/monperrus/crawler-user-agents, updated with the package), a short list of
headless-browser marks, and ua-parser's spider class; each distinct user agent once (cached).
Client addresses, before they are anonymised, against the optional data-centre networks of
``collector.datacenter_networks``. What comes from headers and URLs is cut
to the bounds of :class:`EnrichedWebEvent`, so nothing a client sends grows a record unbounded."""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import msgspec

from clickstream.errors import ConfigError, MissingExtraError
from clickstream.events.web import (
    MAX_LABEL,
    MAX_USER_AGENT,
    MAX_UTM,
    Custom,
    EnrichedWebEvent,
    PagePing,
    Pageview,
    WebEvent,
)

HEADLESS = re.compile(
    r"HeadlessChrome|PhantomJS|SlimerJS|Puppeteer|Playwright|Selenium|WebDriver|HtmlUnit",
    re.IGNORECASE,
)
"""Marks of a browser driven by a program (not in every crawler list: they are tools)."""
_BOT = re.compile(r"bot|crawl|spider|slurp|headless|lighthouse|preview|monitor", re.IGNORECASE)
"""A last resort for agents no list names: words bots use for themselves."""
_EVENT_KEY = b"clickstream-event-id"
UTM_FIELDS = {
    "utm_source": "utmSource",
    "utm_medium": "utmMedium",
    "utm_campaign": "utmCampaign",
    "utm_term": "utmTerm",
    "utm_content": "utmContent",
}


class Agent(NamedTuple):
    browser: str | None
    os: str | None
    device: str | None
    bot_reason: str | None
    """Why the agent is a bot; None for a human's browser."""

    @property
    def is_bot(self) -> bool:
        return self.bot_reason is not None


def cut_user_agent(user_agent: str) -> str:
    """The ``User-Agent`` header as far as it is kept (and parsed): its first characters."""
    return user_agent[:MAX_USER_AGENT]


@lru_cache(maxsize=8192)
def parse_user_agent(user_agent: str) -> Agent:
    """Browser, OS, device class and bot flag (ua-parser, cached per distinct string) of a user
    agent already cut by :func:`cut_user_agent`."""
    if not user_agent:
        return Agent(None, None, None, "no user agent")
    from ua_parser import parse

    result = parse(user_agent)
    browser = result.user_agent
    system = result.os
    device = result.device
    reason = bot_reason(user_agent, spider=device is not None and device.family == "Spider")
    return Agent(
        browser=_join(browser.family, browser.major) if browser else None,
        os=_join(system.family, system.major) if system else None,
        device="bot" if reason else _device_class(device.family if device else None, system),
        bot_reason=reason,
    )


def bot_reason(user_agent: str, spider: bool = False) -> str | None:
    """Why ``user_agent`` is a bot's (the first that applies: a headless browser, a pattern of
    the crawler list, ua-parser's spider class, a bot's word for itself), or None."""
    found = HEADLESS.search(user_agent)
    if found:
        return f"headless browser: {found.group(0)}"[:MAX_LABEL]
    import crawleruseragents  # type: ignore[import-untyped]

    matches = crawleruseragents.matching_crawlers(user_agent)
    if matches:
        pattern = crawleruseragents.CRAWLER_USER_AGENTS_DATA[matches[0]]["pattern"]
        return f"crawler: {pattern}"[:MAX_LABEL]
    if spider:
        return "crawler: ua-parser spider"
    found = _BOT.search(user_agent)
    if found:
        return f"crawler: says {found.group(0).lower()}"
    return None


def _join(family: str, major: str | None) -> str:
    return (f"{family} {major}" if major else family)[:MAX_LABEL]


def _device_class(family: str | None, system: object) -> str:
    name = f"{family or ''} {getattr(system, 'family', '')}".lower()
    if "ipad" in name or "tablet" in name:
        return "tablet"
    if any(word in name for word in ("iphone", "android", "ios", "mobile")):
        return "mobile"
    return "desktop"


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TrustedProxies:
    """The proxies in front of the collector (addresses and CIDR blocks): only what they add to
    ``X-Forwarded-For`` is believed."""

    def __init__(self, entries: list[str]) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]

    def __contains__(self, address: str) -> bool:
        ip = parse_ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: the rightmost ``X-Forwarded-For`` entry that is not a trusted
        proxy, when the peer is one; else the peer. Entries left of it are whatever the client
        sent, and could be anything."""
        if not forwarded_for or peer is None or peer not in self:
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        for hop in reversed(hops):
            if hop not in self:
                return hop or None
        return hops[0]  # every hop is a proxy of ours


@lru_cache(maxsize=8192)
def parse_ip(text: str) -> IPAddress | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80``, ``::1``), or
    None; IPv4 mapped into IPv6 is IPv4, an IPv6 zone is dropped."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=8192)
def anonymize_ip(address: str | None, mode: Literal["anonymize", "drop", "full"]) -> str | None:
    """Drop the last IPv4 octet (IPv6: keep the /48), drop it entirely, or keep it; anything
    that is not an address is dropped."""
    if address is None or mode == "drop":
        return None
    ip = parse_ip(address)
    if ip is None:
        return None
    if mode == "full":
        return str(ip)
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def utm_parameters(page_url: str) -> dict[str, Any]:
    if "utm_" not in page_url:
        return {}
    return dict(_utm(page_url))


@lru_cache(maxsize=8192)
def _utm(page_url: str) -> tuple[tuple[str, str], ...]:
    """Page URLs repeat: parse each once."""
    try:
        query = urlsplit(page_url).query
    except ValueError:  # e.g. an unclosed IPv6 bracket: a URL with no parameters to take
        return ()
    return tuple(
        (UTM_FIELDS[key], value[:MAX_UTM])
        for key, value in parse_qsl(query)
        if key in UTM_FIELDS and value
    )


def event_id(event: WebEvent) -> str:
    """The client's id, else one derived from the content so a retried POST dedupes."""
    if event.eventId:
        return event.eventId
    kind = type(event).__name__
    basis = f"{event.uiud}|{event.sessionId}|{event.timestamp}|{kind}|{event.pageUrl}"
    if isinstance(event, Custom):
        basis += f"|{event.name}"
    digest = hashlib.blake2b(basis.encode(), digest_size=16, key=_EVENT_KEY).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


class DatacenterNetworks:
    """Networks of data centres and clouds (CIDR blocks): a request from one is a bot's.
    Overlapping blocks are merged, and an address is looked up by bisection."""

    def __init__(self, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self.count = len(networks)
        self._blocks: dict[int, tuple[list[int], list[tuple[int, str]]]] = {}
        for version in (4, 6):
            mine = [n for n in networks if n.version == version]
            merged = sorted(ipaddress.collapse_addresses(mine))  # type: ignore[type-var]
            self._blocks[version] = (
                [int(n.network_address) for n in merged],
                [(int(n.broadcast_address), str(n)) for n in merged],
            )

    @classmethod
    def from_file(cls, path: Path) -> DatacenterNetworks:
        """One CIDR block per line; blank lines and ``#`` comments are skipped."""
        networks = []
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"collector.datacenter_networks: cannot read {path}: {exc}") from None
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ConfigError(
                    f"collector.datacenter_networks: {path} line {number}: {text!r} is not a "
                    "network (1.2.3.0/24, 2001:db8::/32)"
                ) from None
        return cls(networks)

    def reason(self, address: str | None) -> str | None:
        """``datacenter network: <block>`` for an address in one of the blocks, else None."""
        ip = parse_ip(address) if address else None
        if ip is None:
            return None
        starts, blocks = self._blocks[ip.version]
        index = bisect.bisect_right(starts, int(ip)) - 1
        if index >= 0 and int(ip) <= blocks[index][0]:
            return f"datacenter network: {blocks[index][1]}"[:MAX_LABEL]
        return None


class Countries:
    """The country (ISO 3166 code) of a client address, looked up before the address is
    anonymised: in a MaxMind GeoIP2/GeoLite2 database when ``database`` is given
    (``pip install 'clickstream[geoip]'``), else in geoip2fast's own data file, which ships with
    the package (no download, works offline). None for private, local and unknown addresses.
    Each distinct address once (cached)."""

    def __init__(self, database: Path | None = None) -> None:
        self.database = database
        if database is not None:
            try:
                import geoip2.database
            except ImportError:
                raise MissingExtraError("geoip", "geoip2") from None
            try:
                self._maxmind = geoip2.database.Reader(str(database))
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"collector.geoip_database: cannot read {database}: {exc}"
                ) from None
        else:
            from geoip2fast import GeoIP2Fast  # type: ignore[import-untyped]

            self._fast = GeoIP2Fast(verbose=False)
        self.of = lru_cache(maxsize=65536)(self._lookup)

    def _lookup(self, address: str | None) -> str | None:
        ip = parse_ip(address) if address else None
        if ip is None or ip.is_private or ip.is_loopback or ip.is_link_local:
            return None
        if self.database is not None:
            import geoip2.errors

            try:
                code = self._maxmind.country(str(ip)).country.iso_code
            except (geoip2.errors.AddressNotFoundError, ValueError):
                return None
            return str(code) if code else None
        found = self._fast.lookup(str(ip))
        code = getattr(found, "country_code", None)
        return code if isinstance(code, str) and len(code) == 2 and code.isalpha() else None


def edge_fields(
    *,
    agent: Agent,
    ip: str | None,
    user_agent: str | None,
    site: str | None,
    network_reason: str | None = None,
    country: str | None = None,
) -> EnrichedWebEvent:
    """The fields that come from the request rather than the event, in an event whose own
    fields are still empty: the same for every event of a batch, so they are worked out once
    per request, and :func:`enrich` copies them (a copy costs half of making an event anew).
    ``network_reason`` says the client's address is a data centre's."""
    reason = agent.bot_reason or network_reason
    return EnrichedWebEvent(
        eventId="",
        eventType="Pageview",
        timestamp=0,
        receivedAt=0,
        uiud="",
        sessionId="",
        pageUrl="",
        site=site,
        ip=ip,
        userAgent=user_agent,
        browser=agent.browser,
        os=agent.os,
        device="bot" if reason else agent.device,
        bot=reason is not None,
        botReason=reason,
        country=country,
    )


def enrich(
    event: WebEvent,
    edge: EnrichedWebEvent,
    received_at: int | None = None,
    max_future_ms: int | None = None,
) -> EnrichedWebEvent:
    """``event`` with its id, kind, receive time, the request's fields (``edge``, from
    :func:`edge_fields`) and UTM parameters. An event
    time more than ``max_future_ms`` after the receive time becomes the receive time (its id
    is still that of the event as sent, so a retry keeps it)."""
    if received_at is None:
        received_at = int(time.time() * 1000)
    timestamp = event.timestamp
    if max_future_ms is not None and timestamp > received_at + max_future_ms:
        timestamp = received_at
    if isinstance(event, Pageview):
        own: dict[str, Any] = {
            "lastPageVisited": event.lastPageVisited,
            "pageTitle": event.pageTitle,
            "landingPage": event.landingPage,
            "referrer": event.referrer,
        }
    elif isinstance(event, PagePing):
        own = {"engagedMs": event.engagedMs}
    else:
        own = {"name": event.name, "props": event.props}
    return msgspec.structs.replace(
        edge,
        eventId=event_id(event),
        eventType=type(event).__name__,
        timestamp=timestamp,
        receivedAt=received_at,
        uiud=event.uiud,
        sessionId=str(event.sessionId),
        pageUrl=event.pageUrl,
        **own,
        **utm_parameters(event.pageUrl),
    )
