"""Faults end to end, through `clickstream up`'s own jobs process: poison records (oversized
fields, times from year 2999, bytes that are not UTF-8) neither stop a job nor poison a replay,
and a jobs process killed with SIGKILL at several points neither loses nor double counts: every
warehouse table equals a recount of what is in Kafka. Both tests share one `up`: each sends
records of its own (its own visitors, keys and times) and reads back only those. The killing
runs first: its pageviews are hours old, and the poison test's are of now, which moves the
sessions' watermark past them."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from clickstream.events.shop import ACTIONS, GENDERS, ShopEvent
from clickstream.events.web import EnrichedWebEvent
from clickstream.kafka.clients import make_producer
from clickstream.settings import Settings, load_settings
from tests.conftest import read_topic
from tests.up.support import RunningUp, sql, up_env

pytestmark = pytest.mark.slow
YEAR_2999 = 32_472_144_000_000
MIN = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


def kafka(up: RunningUp) -> Settings:
    settings = load_settings(environ={"CLICKSTREAM_DATA_DIR": up.env["CLICKSTREAM_DATA_DIR"]})
    return settings.with_bootstrap(f"127.0.0.1:{up.env['CLICKSTREAM_BROKER_PORT']}")


def produce(settings: Settings, topic: str, values: list[bytes], key: bytes = b"k") -> None:
    producer = make_producer(settings, **{"message.max.bytes": 2_000_000})
    for value in values:
        producer.produce(topic, value, key=key)
    producer.flush()


def pageview(visitor: str, session: str, at_ms: int, page: str, **extra: Any) -> EnrichedWebEvent:
    return EnrichedWebEvent(
        eventId=str(uuid.uuid4()),
        eventType="Pageview",
        timestamp=at_ms,
        receivedAt=extra.pop("receivedAt", at_ms),
        uiud=visitor,
        sessionId=session,
        pageUrl=f"https://shop.example.com{page}",
        **extra,
    )


CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


def counts(
    env: dict[str, str], metric: str, since_ms: int = 0, until_ms: int = YEAR_2999
) -> dict[tuple[int, str], int]:
    """The counts of ``metric`` by (window start, key), of the windows from ``since_ms`` to
    ``until_ms`` (the seconds they fall in included)."""
    rows = sql(
        env,
        "SELECT epoch_ms(window_start) AS s, key, count FROM window_counts "
        f"WHERE metric = '{metric}'",
        missing_ok=True,
    )
    since, until = since_ms // 1000 * 1000, until_ms // 1000 * 1000
    return {
        (int(r["s"]), str(r["key"])): int(r["count"]) for r in rows if since <= int(r["s"]) <= until
    }


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def quiet_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningUp]:
    """`up` without simulators, for this module's tests; sessions close after 60 s of
    inactivity."""
    data_dir = tmp_path_factory.mktemp("quiet-up")
    up = RunningUp(
        up_env(data_dir, CLICKSTREAM_JOBS_SESSION_GAP_S="60"),
        "--no-demo",
        "--jobs=shop,web-live,sessions",  # the jobs these tests count with
    )
    try:
        yield up
    finally:
        up.stop(("broker", "collector", "dashboard", "jobs"))


def test_a_jobs_process_killed_at_several_points_neither_loses_nor_double_counts(
    quiet_up: RunningUp,
) -> None:
    up, s = quiet_up, kafka(quiet_up)
    env = up.env
    restarts = int(up.part("jobs")["restarts"])  # type: ignore[call-overload]
    began = now_ms()  # the shop events' times: from here
    rng = random.Random(11)
    produced = {"shop": 0}
    stop = threading.Event()
    base = now_ms() - 240 * MIN  # pageviews: four hours ago, in order
    pageviews: list[EnrichedWebEvent] = []

    def traffic() -> None:
        producer = make_producer(s)
        i = 0
        while not stop.is_set():
            for _ in range(20):
                event = ShopEvent(
                    user_id=rng.randrange(100),
                    action=rng.randrange(4),
                    gender=rng.choice([0, 1, 2, None]),
                    timestamp=now_ms(),
                )
                producer.produce(s.topics.shop, msgspec.json.encode(event), key=str(i))
                produced["shop"] += 1
                # 40 visitors, back every 4 s (the same session), and after 2 min (a new one)
                # every 300 events; event times only grow, so none is late.
                at = base + i * 100 + (i // 300) * 2 * MIN
                view = pageview(f"v{i % 40}", f"s{i % 40}", at, f"/p{i % 7}")
                producer.produce(s.topics.web_events, msgspec.json.encode(view), key=view.uiud)
                pageviews.append(view)
                i += 1
            producer.flush()
            time.sleep(0.2)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        wait_until(lambda: counts(env, "shop.gender", began), 240, "first counts")
        for kills, delay in enumerate((0.0, 4.0, 9.0), 1):  # after a count, starting, mid-run
            pid = up.part("jobs")["pid"]
            assert isinstance(pid, int)
            time.sleep(delay)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pytest.fail(f"the jobs process {pid} ended by itself: {''.join(up.out + up.err)}")
            # Restarted, by the count of restarts: right after the kill, status may still give
            # the dead process's watchdog as the part's PID.
            wait_until(lambda n=restarts + kills: up.part("jobs")["restarts"] == n, 120, "restart")
            if delay:
                seen = sum(counts(env, "shop.gender", began).values())
                wait_until(
                    lambda n=seen: sum(counts(env, "shop.gender", began).values()) > n, 240, "more"
                )
    finally:
        stop.set()
        thread.join(30)
    # A last pageview, an hour after the others, closes every session.
    closing = pageview("closer", "z", pageviews[-1].timestamp + 60 * MIN, "/")
    produce(s, s.topics.web_events, [msgspec.json.encode(closing)], key=b"closer")
    total = produced["shop"]
    ended = now_ms()
    wait_until(
        lambda: sum(counts(env, "shop.gender", began, ended).values()) >= total, 300, "the backlog"
    )
    assert up.part("jobs")["restarts"] == restarts + 3

    # Recount from Kafka: the records of this test (keyed by their number, its visitors).
    keys = {str(i).encode() for i in range(total)}
    shop_records = [v for _, v in read_topic(s, s.topics.shop, timeout=60, keys=keys)]
    assert len(shop_records) == total
    gender: Counter[tuple[int, str]] = Counter()
    action: Counter[tuple[int, str]] = Counter()
    for r in shop_records:
        second = r["timestamp"] // 1000 * 1000
        gender[second, GENDERS.get(r["gender"], "unknown")] += 1
        action[second, ACTIONS[r["action"]]] += 1
    assert counts(env, "shop.gender", began, ended) == dict(gender)
    assert counts(env, "shop.action", began, ended) == dict(action)

    visitors = {f"v{n}" for n in range(40)}
    keys = {v.encode() for v in visitors | {"closer"}}
    views = [v for _, v in read_topic(s, s.topics.web_events, timeout=60, keys=keys)]
    assert len(views) == len(pageviews) + 1
    by_page: Counter[tuple[int, str]] = Counter()
    hits: dict[tuple[str, str], list[int]] = {}
    for v in views:
        path = v["pageUrl"].removeprefix("https://shop.example.com")
        by_page[v["receivedAt"] // 1000 * 1000, path] += 1
        hits.setdefault((v["uiud"], v["sessionId"]), []).append(v["timestamp"])
    first_at, last_at = base, closing.timestamp  # received then, as the helper stamps them
    wait_until(
        lambda: counts(env, "web.pages", first_at, last_at) == dict(by_page), 60, "web counts"
    )
    expected = set()
    for (visitor, session), times in hits.items():
        if visitor == "closer":
            continue
        times.sort()
        first = times[0]
        n = 1
        for before, after in itertools.pairwise(times):
            if after - before >= MIN:
                expected.add((visitor, session, first, n))
                first, n = after, 0
            n += 1
        expected.add((visitor, session, first, n))

    def stored() -> set[tuple[str, str, int, int]]:
        rows = sql(
            env,
            "SELECT visitor_id, session_id, epoch_ms(session_start) AS s, pageviews FROM sessions",
            missing_ok=True,
        )
        return {
            (r["visitor_id"], r["session_id"], r["s"], r["pageviews"])
            for r in rows
            if r["visitor_id"] in visitors
        }

    wait_until(lambda: len(stored()) >= len(expected), 120, "every session")
    assert stored() == expected


def test_poison_records_are_dead_lettered_and_every_job_keeps_counting(
    quiet_up: RunningUp,
) -> None:
    up, s = quiet_up, kafka(quiet_up)
    env, collector = up.env, f"http://127.0.0.1:{up.env['CLICKSTREAM_COLLECTOR_PORT']}"
    restarts = int(up.part("jobs")["restarts"])  # type: ignore[call-overload]
    start = now_ms()
    v1, v2 = f"v1-{start}", f"v2-{start}"  # visitors of this test's own
    # Straight to Kafka: what the collector would refuse or clamp.
    poison = [
        pageview("p1", "x", start - 1000, "/" + "u" * 900_000),
        pageview("p2", "x", YEAR_2999, "/from-2999"),
        pageview("p3", "x", start - 1000, "/", referrer="https://r.example/" + "r" * 600_000),
    ]
    produce(s, s.topics.web_events, [msgspec.json.encode(p) for p in poison] + [b"\xff\xfe{"])
    shop_poison = [
        json.dumps({"user_id": 1, "action": 0, "timestamp": YEAR_2999}).encode(),
        json.dumps({"user_id": 1, "action": 0, "timestamp": -5}).encode(),
        json.dumps({"user_id": "one", "action": 0, "timestamp": start}).encode(),
    ]
    produce(s, s.topics.shop, shop_poison)
    # Through the collector: an over-long field is refused, naming it; a far-future time is
    # clamped to the receive time. From a browser: httpx's own user agent is a bot's, and bots
    # are not counted in the panels.
    base = {"eventType": "Pageview", "uiud": "c1", "sessionId": "s1"}
    browser = {"user-agent": CHROME}
    refused = httpx.post(
        f"{collector}/api/webeventspub",
        json={
            **base,
            "timestamp": start,
            "pageUrl": "https://a.example/",
            "referrer": "r" * 600_000,
        },
        headers=browser,
        timeout=30,
    )
    assert refused.status_code == 422
    assert "referrer" in refused.text
    clamped = httpx.post(
        f"{collector}/api/webeventspub",
        json={**base, "timestamp": YEAR_2999, "pageUrl": "https://a.example/clamped"},
        headers=browser,
        timeout=30,
    )
    assert clamped.status_code < 300, clamped.text

    # Then normal events: all counted by the same jobs process.
    for _ in range(5):
        ok = httpx.post(
            f"{collector}/api/webeventspub",
            json={**base, "timestamp": now_ms(), "pageUrl": "https://a.example/after"},
            headers=browser,
            timeout=30,
        )
        assert ok.status_code < 300, ok.text
    shop = [ShopEvent(user_id=i, action=2, gender=1, timestamp=now_ms()) for i in range(7)]
    produce(s, s.topics.shop, [msgspec.json.encode(e) for e in shop])
    # A session (of now: later than the hours-old pageviews of the killing test) that ends when
    # a later pageview (30 min ahead, less than the hour allowed) moves the watermark past it.
    visits = [pageview(v1, "a", start + i * 10_000, f"/p{i}") for i in range(3)]
    visits.append(pageview(v2, "b", start + 30 * MIN, "/"))
    produce(s, s.topics.web_events, [msgspec.json.encode(v) for v in visits])

    def pages() -> Counter[str]:
        got: Counter[str] = Counter()
        for (_, key), n in counts(env, "web.pages", since_ms=start).items():
            got[key] += n
        return got

    wait_until(lambda: pages()["/after"] == 5 and pages()["/clamped"] == 1, 240, "web counts")
    wait_until(
        lambda: (
            sum(n for (_, k), n in counts(env, "shop.action", start).items() if k == "purchase")
            == 7
        ),
        240,
        "shop counts",
    )
    one = f"SELECT pageviews FROM sessions WHERE visitor_id = '{v1}'"
    wait_until(lambda: sql(env, one, missing_ok=True), 240, "a session")
    (session,) = sql(env, one)
    assert session["pageviews"] == 3
    jobs = up.part("jobs")
    assert (jobs["state"], jobs["restarts"]) == ("running", restarts)

    def reasons() -> Counter[str]:
        return Counter(v["reason"] for _, v in read_topic(s, s.topics.dead_letter))

    wait_until(lambda: sum(reasons().values()) >= 7, 120, "the dead letters")
    assert reasons() == Counter(
        {
            "field pageUrl is longer than 4096 characters": 1,
            # a pageview and a shop event
            "field timestamp is more than 3600 s ahead of its arrival in Kafka": 2,
            "field referrer is longer than 4096 characters": 1,
            "value is not valid UTF-8": 1,
            "field timestamp is before 1970": 1,
            "field user_id: expected an integer": 1,
        }
    )
