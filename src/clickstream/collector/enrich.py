"""What the collector adds to an event: receive time, parsed user agent, bot flag, anonymised
client address, UTM parameters, and a stable event id."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
from functools import lru_cache
from typing import Any, Literal, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from clickstream.events.web import Custom, EnrichedWebEvent, PagePing, Pageview, WebEvent

_BOT = re.compile(r"bot|crawl|spider|slurp|headless|lighthouse|preview|monitor", re.IGNORECASE)
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
    is_bot: bool


@lru_cache(maxsize=8192)
def parse_user_agent(user_agent: str) -> Agent:
    """Browser, OS, device class and bot flag (ua-parser, cached per distinct string)."""
    if not user_agent:
        return Agent(None, None, None, False)
    from ua_parser import parse

    result = parse(user_agent)
    browser = result.user_agent
    system = result.os
    device = result.device
    is_bot = (device is not None and device.family == "Spider") or bool(_BOT.search(user_agent))
    return Agent(
        browser=_join(browser.family, browser.major) if browser else None,
        os=_join(system.family, system.major) if system else None,
        device="bot" if is_bot else _device_class(device.family if device else None, system),
        is_bot=is_bot,
    )


def _join(family: str, major: str | None) -> str:
    return f"{family} {major}" if major else family


def _device_class(family: str | None, system: object) -> str:
    name = f"{family or ''} {getattr(system, 'family', '')}".lower()
    if "ipad" in name or "tablet" in name:
        return "tablet"
    if any(word in name for word in ("iphone", "android", "ios", "mobile")):
        return "mobile"
    return "desktop"


def client_address(
    peer: str | None, forwarded_for: str | None, trust_forwarded: bool
) -> str | None:
    if trust_forwarded and forwarded_for:
        return forwarded_for.split(",")[0].strip() or peer
    return peer


@lru_cache(maxsize=8192)
def anonymize_ip(address: str | None, mode: Literal["anonymize", "drop", "full"]) -> str | None:
    """Drop the last IPv4 octet (IPv6: keep the /48), drop it entirely, or keep it."""
    if address is None or mode == "drop":
        return None
    if mode == "full":
        return address
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def utm_parameters(page_url: str) -> dict[str, Any]:
    if "utm_" not in page_url:
        return {}
    return dict(_utm(page_url))


@lru_cache(maxsize=8192)
def _utm(page_url: str) -> tuple[tuple[str, str], ...]:
    """Page URLs repeat: parse each once."""
    query = urlsplit(page_url).query
    return tuple(
        (UTM_FIELDS[key], value) for key, value in parse_qsl(query) if key in UTM_FIELDS and value
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


def edge_fields(
    *, agent: Agent, ip: str | None, user_agent: str | None, site: str | None
) -> dict[str, Any]:
    """The fields that come from the request rather than the event: the same for every event
    of a batch, so they are worked out once per request."""
    return {
        "site": site,
        "ip": ip,
        "userAgent": user_agent,
        "browser": agent.browser,
        "os": agent.os,
        "device": agent.device,
        "isBot": agent.is_bot,
    }


def enrich(
    event: WebEvent, edge: dict[str, Any], received_at: int | None = None
) -> EnrichedWebEvent:
    """``event`` with its id, kind, receive time, ``edge_fields`` and UTM parameters."""
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
    return EnrichedWebEvent(
        eventId=event_id(event),
        eventType=type(event).__name__,  # type: ignore[arg-type]
        timestamp=event.timestamp,
        receivedAt=received_at if received_at is not None else int(time.time() * 1000),
        uiud=event.uiud,
        sessionId=str(event.sessionId),
        pageUrl=event.pageUrl,
        **own,
        **edge,
        **utm_parameters(event.pageUrl),
    )
