"""The tracker in real headless Chromium: page -> collector -> Kafka -> sessions table."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clickstream.events.web import EnrichedWebEvent
from clickstream.jobs import builder
from clickstream.kafka.admin import ensure_topics
from clickstream.kafka.clients import make_producer
from clickstream.sinks.duckdb_table import connect
from clickstream.streaming.runner import start_job
from tests.collector.conftest import RunningCollector
from tests.collector.test_collector import seed_payload
from tests.conftest import read_topic

pytestmark = pytest.mark.slow

PAGE = """<!doctype html>
<html><head><title>{title}</title>
<script src="{collector}/clickstream.js" data-collector="{collector}" data-flush-ms="100"></script>
</head><body><h1>{title}</h1><a id="next" href="{next}">next</a></body></html>
"""


TRACKER = (
    Path(__file__).parents[2] / "src" / "clickstream" / "collector" / "static" / "clickstream.js"
)


def wait_for(fetch: Callable[[], list[Any]], count: int, timeout: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout
    found: list[Any] = []
    while time.monotonic() < deadline:
        found = fetch()
        if len(found) >= count:
            return found
        time.sleep(0.3)
    return found


def test_tracker_pageviews_spa_and_custom_events_become_a_session(  # type: ignore[no-untyped-def]
    browser,
    page_server: Callable[[dict[str, str]], str],
    start_collector: Callable[..., RunningCollector],
    spark,
    tmp_path: Path,
) -> None:
    # The collector allows only the site's origin, so the page server must exist first.
    site = page_server({})
    collector = start_collector(allowed_origins=[site])
    c = collector.url
    pages = {
        "index.html": PAGE.format(title="Home", collector=c, next="/products.html"),
        "products.html": PAGE.format(title="Products", collector=c, next="/index.html"),
    }
    for name, html in pages.items():
        (tmp_path / "site0" / name).write_text(html)

    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site}/index.html")
    page.click("#next")
    page.wait_for_url(f"{site}/products.html")
    page.wait_for_function("window.clickstream && typeof window.clickstream.track === 'function'")
    page.evaluate("history.pushState({}, '', '/products/shoes')")
    page.evaluate("clickstream.track('signup', {plan: 'pro'})")
    page.evaluate("clickstream.flush()")

    settings = collector.settings
    views = wait_for(lambda: read_topic(settings, settings.topics.web_events), 3)
    events = sorted((e for _, e in views), key=lambda e: e["timestamp"])
    assert [e["pageUrl"] for e in events] == [
        f"{site}/index.html",
        f"{site}/products.html",
        f"{site}/products/shoes",
    ]
    first, second, spa = events
    assert (first["landingPage"], first["referrer"], first["lastPageVisited"]) == (1, "direct", "")
    assert (second["landingPage"], second["referrer"]) == (0, "direct")
    assert second["lastPageVisited"] == f"{site}/index.html"
    assert (spa["landingPage"], spa["lastPageVisited"]) == (0, f"{site}/products.html")
    assert first["pageTitle"] == "Home"
    assert len({e["uiud"] for e in events}) == 1
    assert len({e["sessionId"] for e in events}) == 1
    assert len({e["eventId"] for e in events}) == 3
    assert first["browser"].startswith(("Chrome", "HeadlessChrome", "Chromium"))
    custom = wait_for(lambda: read_topic(settings, settings.topics.web_custom), 1)
    assert [(e["name"], e["props"]) for _, e in custom] == [("signup", {"plan": "pro"})]
    cookies = {c["name"]: c for c in context.cookies(site)}
    assert cookies["sessionId"]["value"] == first["sessionId"]
    assert 25 * 60 < cookies["sessionId"]["expires"] - time.time() <= 31 * 60
    context.close()

    # The session, once closed by a later event, lands in the warehouse with pages in order.
    ours = settings.model_copy(update={"data_dir": tmp_path / "data"})
    ensure_topics(ours, [ours.topics.dead_letter])
    producer = make_producer(ours)
    # Past the 30-min gap and the watermark, within the hour the jobs take from the future.
    later = int(time.time() * 1000) + 40 * 60_000
    closing = EnrichedWebEvent(
        eventId=str(uuid.uuid4()), eventType="Pageview", timestamp=later, receivedAt=later,
        uiud="closer", sessionId="closer", pageUrl=f"{site}/index.html",
    )  # fmt: skip
    producer.produce(ours.topics.web_events, msgspec.json.encode(closing), key="closer")
    producer.flush()
    start_job(spark, ours, builder("sessions"), available_now=True).await_all(300)
    with connect(ours.duckdb_path, read_only=True) as con:
        rows = con.execute(
            "SELECT pages, landing_page_codes, pageviews FROM sessions WHERE visitor_id = ?",
            [first["uiud"]],
        ).fetchall()
    assert rows == [
        (
            [f"{site}/index.html", f"{site}/products.html", f"{site}/products/shoes"],
            [1, 0, 0],
            3,
        )
    ]


def test_external_referrer_do_not_track_and_retry_queue(  # type: ignore[no-untyped-def]
    browser,
    page_server: Callable[[dict[str, str]], str],
    start_collector: Callable[..., RunningCollector],
) -> None:
    from tests.collector.conftest import free_port

    port = free_port()
    c = f"http://127.0.0.1:{port}"
    # The site serves its own copy of the tracker, so it loads while the collector is down.
    local = PAGE.replace('src="{collector}/clickstream.js"', 'src="/clickstream.js"')
    site = page_server(
        {
            "clickstream.js": TRACKER.read_text(),
            "index.html": local.format(title="Home", collector=c, next="/index.html"),
            "dnt.html": local.format(title="DNT", collector=c, next="/").replace(
                "data-flush-ms", 'data-respect-dnt="true" data-flush-ms'
            ),
        }
    )
    # Nothing listens yet: the pageview goes to the bounded retry queue in localStorage.
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site}/index.html", referer="https://news.example.org/story")
    page.wait_for_function("(localStorage.getItem('clickstream.retry') || '[]').length > 2")
    (stored,) = page.evaluate("JSON.parse(localStorage.getItem('clickstream.retry'))")
    assert (stored["landingPage"], stored["referrer"]) == (1, "https://news.example.org/story")

    collector = start_collector(port=port, allowed_origins=[site])
    page.reload()
    settings = collector.settings
    views = wait_for(lambda: read_topic(settings, settings.topics.web_events), 2)
    assert stored["eventId"] in {e["eventId"] for _, e in views}
    assert page.evaluate("localStorage.getItem('clickstream.retry')") == "[]"
    context.close()

    # Do Not Track respected: nothing sent, no cookie, no visitor id stored.
    dnt = browser.new_context()
    dnt.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    page = dnt.new_page()
    to_collector: list[str] = []  # every request of the page to the collector, beacons too

    def seen(request: Any) -> None:
        if request.url.startswith(c):
            to_collector.append(request.url)

    page.on("request", seen)
    page.goto(f"{site}/dnt.html")
    page.wait_for_function("window.clickstream !== undefined")
    page.evaluate("async () => { clickstream.track('x', {}); await clickstream.flush(); }")
    # Then the page itself posts a marker event as the tracker would: once it is stored,
    # anything the tracker had sent before it would be stored too (and seen leaving the page).
    marker = seed_payload(eventId=str(uuid.uuid4()), pageUrl=f"{site}/dnt.html")
    status = page.evaluate(
        """async ([url, event]) => (await fetch(url, {method: "POST", mode: "cors",
            headers: {"Content-Type": "text/plain;charset=UTF-8"},
            body: JSON.stringify([event])})).status""",
        [f"{c}/v1/events", marker],
    )
    assert status == 200
    assert to_collector == [f"{c}/v1/events"]  # the marker's, and nothing before it
    after = wait_for(lambda: read_topic(settings, settings.topics.web_events), len(views) + 1)
    assert sorted(e["eventId"] for _, e in after) == sorted(
        [e["eventId"] for _, e in views] + [marker["eventId"]]
    )
    assert read_topic(settings, settings.topics.web_custom) == []
    assert dnt.cookies(site) == []
    assert page.evaluate("localStorage.getItem('Uiud')") is None
    assert page.evaluate("localStorage.getItem('clickstream.retry')") is None  # none for later
    dnt.close()
