"""The web traffic simulator: the generator alone, and against a real HTTP server."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import re
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest

from clickstream.errors import ConfigError
from clickstream.events.web import WebEvent
from clickstream.simulators.sender import run_web_simulation, simulate_web
from clickstream.simulators.web import (
    BOTS,
    BROWSERS,
    SESSION_GAP_MS,
    WebSimulationStats,
    WebTrafficGenerator,
)

START = 1_700_000_000_000
Event = dict[str, Any]


def take(generator: WebTrafficGenerator, n: int) -> list[tuple[str, list[Event]]]:
    """Batches until at least n events."""
    batches, total = [], 0
    for agent, events in generator.batches():
        batches.append((agent, events))
        total += len(events)
        if total >= n:
            return batches
    raise AssertionError("the stream ended")


def flat(batches: list[tuple[str, list[Event]]]) -> list[Event]:
    return [event for _, events in batches for event in events]


def sessions_of(events: list[Event]) -> dict[tuple[str, str], list[Event]]:
    """Events per (uiud, sessionId), in timestamp order."""
    sessions: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for event in events:
        sessions[event["uiud"], event["sessionId"]].append(event)
    for hits in sessions.values():
        hits.sort(key=lambda event: event["timestamp"])
    return sessions


# The generator alone.


def test_generator_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[tuple[str, list[Event]]]:
        return take(WebTrafficGenerator(seed=seed, start_ms=START, time_scale=60), 3000)

    first = run(7)
    assert first == run(7)
    assert first != run(8)
    generator = WebTrafficGenerator(seed=7, start_ms=START, time_scale=60)
    assert take(generator, 3000) == take(generator, 3000) == first  # batches() starts over


def test_every_event_matches_the_contract() -> None:
    batches = take(WebTrafficGenerator(seed=1, start_ms=START, time_scale=60), 10_000)
    events = flat(batches)
    decoded = msgspec.json.decode(msgspec.json.encode(events), type=list[WebEvent], strict=False)
    assert len(decoded) == len(events)
    assert {event["eventType"] for event in events} == {"Pageview", "PagePing", "Custom"}
    assert len({event["eventId"] for event in events}) == len(events)
    uuid4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(uuid4.match(event["eventId"]) and uuid4.match(event["uiud"]) for event in events)
    assert all(re.fullmatch(r"[0-9a-f]{16}", event["sessionId"]) for event in events)
    assert all(event["pageUrl"].startswith("https://shop.example.com/") for event in events)
    pages = {event["pageUrl"].split("?")[0] for event in events}
    assert 30 <= len(pages) <= 60
    customs = [event for event in events if event["eventType"] == "Custom"]
    assert {"add_to_cart", "signup"} <= {event["name"] for event in customs}
    for agent, batch in batches:  # one visitor per request, with a real user agent
        assert len({event["uiud"] for event in batch}) == 1
        assert agent in BROWSERS or agent in BOTS
    agents = {batch[0]["uiud"]: agent for agent, batch in batches}
    bots = sum(agent in BOTS for agent in agents.values())
    assert 0 < bots < 0.08 * len(agents)


def test_landing_and_internal_navigation_follow_the_tracker_rules() -> None:
    generator = WebTrafficGenerator(seed=2, start_ms=START, time_scale=60, late_share=0)
    events = flat(take(generator, 10_000))
    for hits in sessions_of(events).values():
        times = [event["timestamp"] for event in hits]
        assert times == sorted(times)
        views = [event for event in hits if event["eventType"] == "Pageview"]
        first = views[0]
        assert first["landingPage"] == 1
        if first["referrer"] == "direct":
            assert first["lastPageVisited"] == ""
        else:
            assert first["referrer"].startswith("https://")
            assert first["lastPageVisited"] == first["referrer"]
        for previous, view in itertools.pairwise(views):
            assert view["landingPage"] == 0
            assert view["referrer"] == "direct"
            assert view["lastPageVisited"] == previous["pageUrl"]
            assert "utm_" not in view["pageUrl"]
        assert all(b - a < SESSION_GAP_MS for a, b in itertools.pairwise(times))
    landings = [e for e in events if e["eventType"] == "Pageview" and e["landingPage"] == 1]
    tagged = [e for e in landings if "utm_" in e["pageUrl"]]
    assert 0.12 < len(tagged) / len(landings) < 0.28
    assert all(
        re.search(r"\?utm_source=[\w-]+&utm_medium=[\w-]+&utm_campaign=[\w-]+$", e["pageUrl"])
        for e in tagged
    )
    assert any("utm_campaign=black-friday" in e["pageUrl"] for e in tagged)
    referrers = {e["referrer"] for e in landings}
    assert {"direct", "https://www.google.com/", "https://t.co/"} <= referrers


def test_visitors_return_and_sessions_split_after_idle_gaps() -> None:
    generator = WebTrafficGenerator(seed=3, start_ms=START, time_scale=60, late_share=0)
    sessions = sessions_of(flat(take(generator, 10_000)))
    by_visitor: dict[str, list[list[Event]]] = defaultdict(list)
    for (uiud, _), hits in sessions.items():
        by_visitor[uiud].append(hits)
    returning = [visits for visits in by_visitor.values() if len(visits) > 1]
    assert len(returning) > 0.1 * len(by_visitor)
    for visits in returning:
        visits.sort(key=lambda hits: hits[0]["timestamp"])
        for before, after in itertools.pairwise(visits):
            assert after[0]["sessionId"] != before[0]["sessionId"]
            assert after[0]["timestamp"] - before[-1]["timestamp"] > SESSION_GAP_MS
            assert after[0]["eventType"] == "Pageview"
            assert after[0]["landingPage"] == 1


def test_late_events_keep_their_time_and_arrive_after_later_ones() -> None:
    for share in (0.0, 0.1):
        generator = WebTrafficGenerator(seed=4, start_ms=START, late_share=share)
        newest: dict[tuple[str, str], int] = {}
        newest_overall, late, lateness = 0, 0, []
        events = flat(take(generator, 10_000))
        for event in events:  # in the order they are sent
            key, ts = (event["uiud"], event["sessionId"]), event["timestamp"]
            if ts < newest.get(key, 0):
                late += 1
                lateness.append(newest_overall - ts)
            newest[key] = max(newest.get(key, 0), ts)
            newest_overall = max(newest_overall, ts)
        if share == 0:
            assert late == 0
        else:
            assert 0.04 < late / len(events) < 0.12
            assert max(lateness) <= 200_000  # within the pipeline's default watermark


def test_time_scale_sets_how_fast_the_simulated_clock_runs() -> None:
    for scale, rate in ((1.0, 20.0), (60.0, 20.0), (1.0, 500.0)):
        generator = WebTrafficGenerator(seed=5, start_ms=START, time_scale=scale, rate=rate)
        events = flat(take(generator, 4000))
        step = 1000 * scale / rate
        span = max(event["timestamp"] for event in events) - START
        assert abs(span - len(events) * step) < 10 * step
        assert min(event["timestamp"] for event in events) >= START


def test_generator_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="time_scale"):
        WebTrafficGenerator(time_scale=0)
    with pytest.raises(ConfigError, match="late_share"):
        WebTrafficGenerator(late_share=1.5)


# Against a real HTTP server.


@dataclass
class Post:
    path: str
    body: bytes
    user_agent: str
    content_type: str
    events: list[Event] = field(default_factory=list)
    forwarded_for: str = ""


class Recorder(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the default 5 drops connects beyond it: a 1 s SYN retry

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.posts: list[Post] = []
        self.lock = threading.Lock()
        self.unavailable = 0  # answer this many requests with 503 first
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def events(self) -> list[Event]:
        return [event for post in self.posts for event in post.events]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    wbufsize = 1 << 16  # the answer in one write (flushed after each request)
    disable_nagle_algorithm = True
    server: Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        agent, kind = self.headers.get("user-agent", ""), self.headers.get("content-type", "")
        with self.server.lock:
            unavailable = self.server.unavailable > 0
            self.server.unavailable -= unavailable
            status = 503 if unavailable else self.server.status
            post = Post(self.path, body, agent, kind, json.loads(body) if status == 200 else [])
            post.forwarded_for = self.headers.get("x-forwarded-for", "")
            self.server.posts.append(post)
        answer = {"accepted": len(post.events)} if status == 200 else {"error": f"no ({status})"}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        if unavailable:
            self.send_header("retry-after", "0")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    thread = threading.Thread(target=recorder.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield recorder
    recorder.shutdown()
    recorder.server_close()
    thread.join(5)


def simulate(url: str, **kwargs: Any) -> WebSimulationStats:
    return asyncio.run(simulate_web(url, **kwargs))


def test_posts_batches_of_one_visitor_that_validate(server: Recorder) -> None:
    before = time.time() * 1000
    reports: list[int] = []
    stats = simulate(
        server.url + "/",
        count=80,
        rate=0,
        seed=11,
        write_key="k-shop",
        progress=lambda s: reports.append(s.accepted),
    )
    events = server.events()
    assert len(events) == 80  # the count bound, exactly
    assert stats == WebSimulationStats(
        sent=80,
        accepted=80,
        rejected=0,
        failed=0,
        requests=len(server.posts),
        sessions=len({e["sessionId"] for e in events}),
        visitors=len({e["uiud"] for e in events}),
        first_error=None,
    )
    assert reports[-1] == 80
    agents: dict[str, str] = {}
    addresses: dict[str, str] = {}
    for post in server.posts:
        assert post.path == "/v1/events?key=k-shop"
        assert post.content_type == "application/json"
        msgspec.json.decode(post.body, type=list[WebEvent], strict=False)
        (uiud,) = {event["uiud"] for event in post.events}
        assert agents.setdefault(uiud, post.user_agent) == post.user_agent
        assert post.user_agent in BROWSERS or post.user_agent in BOTS
        # Each visitor has a public address of its own, the same on every request.
        assert addresses.setdefault(uiud, post.forwarded_for) == post.forwarded_for
        assert ipaddress.IPv4Address(post.forwarded_for).is_global
    assert len(set(addresses.values())) == len(addresses)
    assert abs(min(e["timestamp"] for e in events) - before) < 10_000  # time_scale 1: about now


def test_same_seed_sends_the_same_traffic(server: Recorder) -> None:
    runs = []
    for _ in range(2):
        server.posts.clear()
        simulate(server.url, count=60, rate=0, seed=12, concurrency=4)
        events = server.events()
        start = min(event["timestamp"] for event in events)
        runs.append(sorted((e["eventId"], e["uiud"], e["timestamp"] - start) for e in events))
    assert runs[0] == runs[1]


def test_sessions_split_and_late_events_through_the_server(server: Recorder) -> None:
    # 72 simulated seconds per event (rate 0 counts as 100/s): 400 events span 8 hours.
    simulate(server.url, count=400, rate=0, seed=13, time_scale=7200, late_share=0.05)
    events = server.events()
    assert len(events) == 400
    by_visitor: dict[str, list[list[Event]]] = defaultdict(list)
    for (uiud, _), hits in sessions_of(events).items():
        by_visitor[uiud].append(hits)
    split = [visits for visits in by_visitor.values() if len(visits) > 1]
    assert split
    for visits in split:
        visits.sort(key=lambda hits: hits[0]["timestamp"])
        for before, after in itertools.pairwise(visits):
            assert after[0]["timestamp"] - before[-1]["timestamp"] > SESSION_GAP_MS
    newest: dict[str, int] = {}
    late = 0
    for post in server.posts:  # in the order received
        for event in post.events:
            late += event["timestamp"] < newest.get(event["sessionId"], 0)
            newest[event["sessionId"]] = max(newest.get(event["sessionId"], 0), event["timestamp"])
    assert 0 < late < 0.1 * len(events)


def test_503_is_retried_with_the_same_events(server: Recorder) -> None:
    server.unavailable = 1
    stats = simulate(server.url, count=30, rate=0, seed=14, concurrency=1)
    first, retry = server.posts[0], server.posts[1]
    assert first.events == []
    assert retry.events
    assert [e["eventId"] for e in json.loads(first.body)] == [e["eventId"] for e in retry.events]
    assert len(server.events()) == 30
    assert stats.sent == stats.accepted == 30
    assert stats.failed == stats.rejected == 0
    assert stats.requests == len(server.posts) == len([p for p in server.posts if p.events]) + 1


def test_rejected_and_failed_requests_are_counted(server: Recorder) -> None:
    server.status = 422
    stats = simulate(server.url, count=20, rate=0, seed=15)
    assert (stats.sent, stats.accepted, stats.rejected, stats.failed) == (20, 0, 20, 0)
    assert stats.first_error == 'HTTP 422: {"error": "no (422)"}'
    server.status, server.unavailable = 500, 0
    stats = simulate(server.url, count=20, rate=0, seed=15)
    assert (stats.accepted, stats.rejected, stats.failed) == (0, 0, 20)
    server.unavailable = 10**6  # always 503: five attempts per batch, then failed
    stats = simulate(server.url, count=3, rate=0, seed=15, concurrency=1)
    assert stats.failed == 3
    assert stats.requests % 5 == 0
    assert (stats.first_error or "").startswith("HTTP 503")
    with socket.socket() as unused:  # nobody listening: connection errors
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    stats = simulate(f"http://127.0.0.1:{port}", count=10, rate=0, seed=15)
    assert (stats.sent, stats.accepted, stats.failed) == (10, 0, 10)
    assert "ConnectError" in (stats.first_error or "")


def test_rate_and_duration_bound_the_run(server: Recorder) -> None:
    started = time.monotonic()
    stats = simulate(server.url, count=40, rate=200, seed=16)
    assert 0.15 <= time.monotonic() - started < 5
    assert stats.sent == stats.accepted == 40
    started = time.monotonic()
    stats = simulate(server.url, duration_s=0.4, rate=50, seed=16)
    assert 0.3 <= time.monotonic() - started < 3
    assert 5 <= stats.sent <= 30


def test_run_web_simulation_shows_progress(
    server: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = run_web_simulation(server.url, count=25, rate=0, seed=17)
    assert stats.accepted == 25
    assert "web traffic" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": -1, "count": 5}, "rate must be >= 0"),
        ({"count": 0}, "count must be >= 1"),
        ({"duration_s": 0}, "duration_s must be > 0"),
        ({"count": 5, "concurrency": 0}, "concurrency must be >= 1"),
        ({"count": 5, "time_scale": -2}, "time_scale must be > 0"),
        ({"count": 5, "late_share": 2}, "late_share must be between 0 and 1"),
        ({}, "give count or duration_s"),
        ({"collector_url": "localhost:8000", "count": 5}, "collector_url must be an http"),
        ({"collector_url": "ftp://example.com", "count": 5}, "collector_url must be an http"),
        ({"collector_url": "http://", "count": 5}, "collector_url must be an http"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], message: str) -> None:
    url = kwargs.pop("collector_url", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        simulate(url, **kwargs)
    assert "\n" not in str(raised.value)
