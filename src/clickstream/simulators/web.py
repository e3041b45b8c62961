"""Visitors browsing a shop site, sent to the collector as the browser tracker sends them.

:class:`WebTrafficGenerator` is pure: for a seed (and ``start_ms``) it yields the same requests,
each a visitor's user agent and a batch of that visitor's events.
:func:`clickstream.simulators.sender.simulate_web` POSTs them to ``{collector_url}/v1/events`` at
``rate`` events per second, a few requests in flight.

**Time.** Timestamps follow a simulated clock that starts at ``start_ms`` (default: now) and
advances ``1000 * time_scale / rate`` ms per event sent. Sent at ``rate``, simulated time thus runs
``time_scale`` times as fast as the wall clock: at 1.0 timestamps are about now; at 60 a 30-minute
idle gap passes in 30 real seconds (and timestamps run ahead of the wall clock). With ``rate=0``
the clock assumes 100 events/s. Visitors act when their next action is due on that clock (think
times, a ping batch every 30 s, idle gaps of 31-120 min); a new visitor arrives whenever nobody is
due, so the number of concurrent visitors adapts to the rate. Timestamps are ordered per session;
a late event (``late_share``) keeps its timestamp but is sent 1-150 simulated seconds later.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import itertools
import math
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from faker import Faker

from clickstream.errors import ConfigError

SITE = "https://shop.example.com"
SESSION_GAP_MS = 30 * 60_000
PING_MS = 15_000
MAX_ATTEMPTS = 5
MAX_RETRY_AFTER_S = 30.0
NOMINAL_RATE = 100.0
_POOL = 5000
_WIN, _MAC = "Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7"
_CHROME = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0"
_SAFARI = "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4"
_IOS = f"like Mac OS X) {_SAFARI} Mobile/15E148 Safari/604.1"
BROWSERS: dict[str, int] = {  # user agent: weight
    f"Mozilla/5.0 ({_WIN}) {_CHROME} Safari/537.36": 30,
    f"Mozilla/5.0 ({_MAC}) {_CHROME} Safari/537.36": 10,
    f"Mozilla/5.0 ({_MAC}) {_SAFARI} Safari/605.1.15": 8,
    f"Mozilla/5.0 ({_WIN}; rv:125.0) Gecko/20100101 Firefox/125.0": 6,
    f"Mozilla/5.0 ({_WIN}) {_CHROME} Safari/537.36 Edg/124.0.0.0": 6,
    f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 {_IOS}": 18,
    f"Mozilla/5.0 (iPad; CPU OS 17_4 {_IOS}": 3,
    f"Mozilla/5.0 (Linux; Android 10; K) {_CHROME} Mobile Safari/537.36": 16,
}
BOTS = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
)
REFERRERS: dict[str, int] = {  # referrer: weight
    "https://www.google.com/": 40,
    "https://www.bing.com/": 6,
    "https://duckduckgo.com/": 5,
    "https://t.co/": 8,
    "https://www.facebook.com/": 6,
    "https://news.ycombinator.com/": 3,
    "https://mail.google.com/": 5,
}
CAMPAIGNS = (  # utm_source, utm_medium, utm_campaign, referrer
    ("newsletter", "email", "black-friday", "https://mail.google.com/"),
    ("newsletter", "email", "weekly-digest", "direct"),
    ("google", "cpc", "spring-sale", "https://www.google.com/"),
    ("twitter", "social", "launch-week", "https://t.co/"),
)
SESSION_PAGES = (30, 18, 13, 10, 8, 6, 4, 3, 3, 2, 2, 1)  # weights of 1..12 pageviews
Batch = tuple[str, list[dict[str, Any]]]


class _Page(NamedTuple):
    url: str
    title: str
    kind: str


@dataclass(slots=True, eq=False)
class _Visitor:
    uiud: str
    user_agent: str
    bot: bool
    busy: bool = True  # in a session, or due to come back
    last_ts: int = 0
    session_id: str = ""
    pages_left: int = 0
    page: _Page | None = None
    url: str = ""
    page_end: int = 0
    custom_done: bool = False


@dataclass
class WebSimulationStats:
    """Events sent and what became of them (``requests`` counts retries too)."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0
    sessions: int = 0
    visitors: int = 0
    first_error: str | None = None


class WebTrafficGenerator:
    """Requests of simulated visitors: ``(user_agent, events)``, one visitor per request.

    ``rate`` is the events/s the stream will be sent at (see the module docstring on time). Each
    ``batches()`` call starts the same endless stream over.
    """

    def __init__(
        self,
        seed: int | None = None,
        time_scale: float = 1.0,
        late_share: float = 0.02,
        start_ms: int | None = None,
        *,
        rate: float = 20.0,
    ) -> None:
        _check(time_scale > 0 and math.isfinite(time_scale), "time_scale must be > 0", time_scale)
        _check(0 <= late_share <= 1, "late_share must be between 0 and 1", late_share)
        _check(rate > 0 and math.isfinite(rate), "rate must be > 0 events per second", rate)
        self.seed = seed if seed is not None else random.SystemRandom().getrandbits(63)
        self.time_scale, self.late_share, self.rate = time_scale, late_share, rate
        self.start_ms = start_ms if start_ms is not None else int(time.time() * 1000)

    def batches(self) -> Iterator[Batch]:
        return _Run(self).run()


class _Run:
    def __init__(self, config: WebTrafficGenerator) -> None:
        self.rng = random.Random(config.seed)
        fake = Faker("en_US")
        fake.seed_instance(config.seed)
        self.pages = _site(fake, self.rng)
        self.weights = [1.0 / (rank + 2) for rank in range(len(self.pages))]  # Zipf-like
        self.words = [fake.word() for _ in range(40)]
        self.step, self.late_share = 1000.0 * config.time_scale / config.rate, config.late_share
        self.clock = float(config.start_ms)
        self.due: list[tuple[int, int, _Visitor, str]] = []  # (when, seq, visitor, action)
        self.late: list[tuple[int, int, str, dict[str, Any]]] = []  # (release, seq, agent, event)
        self.known: list[_Visitor] = []
        self.seq = itertools.count()

    def run(self) -> Iterator[Batch]:
        while True:
            now = int(self.clock)
            if self.late and self.late[0][0] <= now:
                _, _, agent, event = heapq.heappop(self.late)
                events = [event]
            else:
                if self.due and self.due[0][0] <= now:
                    _, _, visitor, action = heapq.heappop(self.due)
                else:
                    visitor, action = self.arrival(now), "session"
                if action == "session":
                    events = [self.land(visitor, now)]
                elif action == "pageview":
                    page = self.next_page(visitor.page)
                    events = [self.view(visitor, page, page.url, now, 0, "direct", visitor.url)]
                else:
                    events = self.pings(visitor, now)
                agent = visitor.user_agent
                events = self.hold_late(agent, events)
            self.clock += self.step * len(events)
            if events:
                yield agent, events

    def uuid4(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def schedule(self, visitor: _Visitor, action: str, at: int) -> None:
        heapq.heappush(self.due, (at, next(self.seq), visitor, action))

    def arrival(self, now: int) -> _Visitor:
        """A returning visitor idle for over 30 min (~30% when there are some), or a new one."""
        rng = self.rng
        if self.known and rng.random() < 0.3:
            for _ in range(8):
                known = rng.choice(self.known)
                if not known.busy and now - known.last_ts > SESSION_GAP_MS:
                    known.busy = True
                    return known
        bot = rng.random() < 0.03
        visitor = _Visitor(self.uuid4(), rng.choice(BOTS) if bot else _pick(rng, BROWSERS), bot)
        if not bot and len(self.known) < _POOL:
            self.known.append(visitor)
        elif not bot:
            self.known[rng.randrange(_POOL)] = visitor
        return visitor

    def next_page(self, current: _Page | None) -> _Page:
        page = self.rng.choices(self.pages, self.weights)[0]
        return page if page != current else self.pages[1 if current == self.pages[0] else 0]

    def land(self, visitor: _Visitor, now: int) -> dict[str, Any]:
        """A session's first pageview: direct, from a referrer, or from a campaign (UTM)."""
        rng = self.rng
        visitor.session_id = f"{rng.getrandbits(64):016x}"
        visitor.pages_left = rng.choices(range(1, 13), SESSION_PAGES)[0]
        page = self.pages[0] if rng.random() < 0.35 else self.next_page(None)
        url, referrer, draw = page.url, "direct", rng.random()
        if not visitor.bot and draw < 0.2:
            source, medium, campaign, referrer = rng.choice(CAMPAIGNS)
            url += f"?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}"
        elif not visitor.bot and draw < 0.6:
            referrer = _pick(rng, REFERRERS)
        last = "" if referrer == "direct" else referrer
        return self.view(visitor, page, url, now, 1, referrer, last)

    def view(
        self, v: _Visitor, page: _Page, url: str, now: int, landing: int, referrer: str, last: str
    ) -> dict[str, Any]:
        v.page, v.url, v.last_ts, v.custom_done = page, url, now, False
        v.pages_left -= 1
        event = self.event("Pageview", v, now, lastPageVisited=last, pageTitle=page.title)
        event.update(landingPage=landing, referrer=referrer)
        if v.bot:  # no pings: a bot reads the next page at once
            v.page_end = now + self.rng.randint(500, 3000)
            self.leave(v, v.page_end)
        else:
            dwell = self.rng.lognormvariate(math.log(30_000), 0.9)
            v.page_end = now + int(min(max(dwell, 3000), 600_000))
            self.schedule(v, "ping", min(now + 2 * PING_MS, v.page_end))
        return event

    def pings(self, v: _Visitor, now: int) -> list[dict[str, Any]]:
        """Engagement pings since the last event (about one per 15 s), maybe a custom event."""
        rng, start = self.rng, v.last_ts
        count = max(1, min(4, round((now - start) / PING_MS)))
        events, previous = [], start
        for i in range(1, count + 1):
            ts = start + (now - start) * i // count
            engaged = min(int((ts - previous) * rng.uniform(0.4, 1.0)), 3_600_000)
            events.append(self.event("PagePing", v, ts, engagedMs=engaged))
            previous = ts
        custom = None if v.custom_done else self.custom(v.page.kind if v.page else "")
        if custom is not None:
            v.custom_done = True
            events.append(self.event("Custom", v, now, name=custom[0], props=custom[1]))
        v.last_ts = now
        if now < v.page_end:
            self.schedule(v, "ping", min(now + 2 * PING_MS, v.page_end))
        else:
            self.leave(v, now)
        return events

    def event(self, kind: str, v: _Visitor, ts: int, **fields: Any) -> dict[str, Any]:
        base = {"eventType": kind, "eventId": self.uuid4(), "timestamp": ts, "uiud": v.uiud}
        return {**base, "sessionId": v.session_id, "pageUrl": v.url, **fields}

    def custom(self, kind: str) -> tuple[str, dict[str, Any]] | None:
        rng, draw = self.rng, self.rng.random()
        if kind == "product" and draw < 0.12:
            sku, price = f"SKU-{rng.randint(1000, 9999)}", round(rng.uniform(5, 400), 2)
            return "add_to_cart", {"sku": sku, "price": price, "quantity": rng.choice((1, 1, 2))}
        if kind == "signup" and draw < 0.35:
            return "signup", {"plan": rng.choice(("free", "free", "pro")), "newsletter": True}
        if kind == "checkout" and draw < 0.4:
            return "purchase", {"value": round(rng.uniform(20, 900), 2), "currency": "USD"}
        if draw < 0.03:
            return "search", {"query": " ".join(rng.sample(self.words, rng.randint(1, 3)))}
        return None

    def leave(self, v: _Visitor, now: int) -> None:
        """Next page, or the session ends; some visitors come back after an idle gap."""
        if v.pages_left > 0:
            self.schedule(v, "pageview", now + self.rng.randint(300, 3000))
        elif not v.bot and self.rng.random() < 0.15:
            self.schedule(v, "session", now + self.rng.randint(31 * 60_000, 120 * 60_000))
        else:
            v.busy = False

    def hold_late(self, agent: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Keep back ``late_share`` of the events, to be sent 1-150 s after their timestamp."""
        if self.late_share <= 0:
            return events
        kept = []
        for event in events:
            if self.rng.random() < self.late_share:
                release = event["timestamp"] + self.rng.randint(1000, 150_000)
                heapq.heappush(self.late, (release, next(self.seq), agent, event))
            else:
                kept.append(event)
        return kept


def visitor_address(uiud: str) -> str:
    """A public IPv4 address of the visitor, the same for each visit: sent as
    ``X-Forwarded-For``, so that a collector which trusts the simulator as its proxy (``up``'s
    demo) finds the visitors' countries. Drawn over the whole unicast space, the countries
    follow how addresses are allocated (many in the US, China, Japan...)."""
    digest = hashlib.blake2b(uiud.encode(), digest_size=32).digest()
    for i in range(0, 32, 4):
        address = ipaddress.IPv4Address(digest[i : i + 4])
        if address.is_global and not address.is_multicast:
            return str(address)
    return "8.8.8.8"  # eight non-public draws in a row: about 1 in 10^6 visitors


def _site(fake: Faker, rng: random.Random) -> list[_Page]:
    """30-60 pages: home first, then fixed pages, categories, products and posts in rank order."""
    fixed = [("/about", "About us"), ("/cart", "Your cart"), ("/checkout", "Checkout")]
    fixed += [("/signup", "Create an account"), ("/blog", "Blog")]
    pages = [_Page(f"{SITE}{path}", f"{title} | Example Shop", path[1:]) for path, title in fixed]
    seen = {page.url for page in pages}
    for i in range(rng.randint(30, 60) - len(pages) - 1):
        kind = rng.choices(("product", "category", "blog"), (6, 1, 2))[0]
        if kind == "category":
            word = fake.word()
            url, title = f"{SITE}/category/{word}", word.title()
        else:
            url = f"{SITE}/{'products' if kind == 'product' else 'blog'}/{fake.slug()}"
            title = fake.catch_phrase() if kind == "product" else fake.sentence(6).rstrip(".")
        url = url if url not in seen else f"{url}-{i}"
        seen.add(url)
        pages.append(_Page(url, f"{title} | Example Shop", kind))
    rng.shuffle(pages)
    return [_Page(f"{SITE}/", "Example Shop: everything for the home", "home"), *pages]


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(tuple(weights), tuple(weights.values()))[0]


def _check(ok: bool, message: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{message}, got {value!r}")
