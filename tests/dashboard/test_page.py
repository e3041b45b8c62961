"""The page in real headless Chromium: history, live updates, empty states, reconnecting."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast

import httpx
import pytest

from clickstream.dashboard.hub import MAX_MESSAGE_BYTES
from clickstream.settings import Settings
from tests.collector.conftest import free_port
from tests.conftest import alive, cli_env, wait_for
from tests.dashboard.conftest import (
    RunningDashboard,
    busy_history,
    now_s,
    produce_rows,
    windows,
    with_results_topic,
)

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
XSS = '<img src=x onerror="window.__xss=1">'
SHOP_HINT = (
    "No shop events yet: run clickstream up, or clickstream simulate shop and "
    "clickstream jobs run shop"
)


class Page:
    """A dashboard page, with everything that would make it fail collected."""

    def __init__(
        self, browser: Any, base_url: str, path: str = "/", hold: dict[str, float] | None = None
    ) -> None:
        """``hold``: seconds to keep back the responses whose address ends with each key."""
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.frames: list[int] = []  # sizes in UTF-8 bytes of the WebSocket messages received
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

        def on_websocket(ws: Any) -> None:
            def received(payload: str | bytes) -> None:
                self.frames.append(len(payload.encode() if isinstance(payload, str) else payload))

            ws.on("framereceived", received)

        self.page.on("websocket", on_websocket)

        def only_local(route: Any) -> None:
            if route.request.url.startswith(base_url):
                for ending, seconds in (hold or {}).items():
                    if route.request.url.endswith(ending):
                        time.sleep(seconds)
                route.continue_()
            else:  # the page must work with no internet: nothing may be fetched from elsewhere
                self.outside.append(route.request.url)
                route.abort()

        self.context.route("**/*", only_local)
        self.page.goto(base_url + path)

    def wait(self, expression: str, timeout_s: float = 10) -> Any:
        """Poll ``expression`` until truthy. (Not ``wait_for_function``: it evaluates strings
        inside the page, which the dashboard's Content-Security-Policy forbids.)"""
        deadline = time.monotonic() + timeout_s
        while not (value := self.page.evaluate(expression)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} still false after {timeout_s:g}s")
            self.page.wait_for_timeout(50)
        return value

    def chart(self, metric: str) -> dict[str, Any]:
        found: dict[str, Any] = self.page.eval_on_selector(
            f'.chart[data-metric="{metric}"]',
            "el => ({points: Number(el.dataset.points), last: JSON.parse(el.dataset.last)})",
        )
        return found

    def wait_chart(self, metric: str, condition: str, timeout_s: float = 10) -> dict[str, Any]:
        """Wait until ``condition`` (JS, over ``points`` and ``last``) holds for the chart."""
        self.wait(
            f"""(() => {{
                const el = document.querySelector('.chart[data-metric="{metric}"]');
                const points = Number(el.dataset.points), last = JSON.parse(el.dataset.last);
                return {condition};
            }})()""",
            timeout_s,
        )
        return self.chart(metric)

    def text(self, selector: str) -> str:
        return str(self.page.inner_text(selector))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Page]]:
    """``open_page(base_url, path="/")``: a new browser context (no cookies) at that page."""
    pages: list[Page] = []

    def open_(url: str, path: str = "/", hold: dict[str, float] | None = None) -> Page:
        pages.append(Page(browser, url, path, hold))
        return pages[-1]

    yield open_
    for page in pages:
        page.close()


def seed_rows(base: int) -> list[Any]:
    """20 seconds of every metric the page shows, ending one second before ``base``."""
    start = base - 20_000
    return [
        *windows(
            "shop.gender",
            start,
            [{"female": 10 + i % 5, "male": 6 + i % 3, "unknown": 1} for i in range(20)],
        ),
        *windows(
            "shop.action",
            start,
            [{"click": 14, "cart": 2, "purchase": 1, "favourite": i % 2} for i in range(20)],
        ),
        *windows("web.pageviews", start, [{"Pageview": 5, "PagePing": 9, "Custom": 1}] * 20),
        *windows("web.active_sessions", start, [{"all": 40 + i} for i in range(20)]),
        *windows("web.pages", start, [{"/": 3, "/pricing": 5, XSS: 1}] * 20),
        *windows("web.referrers", start, [{"direct": 4, "news.example.com": 2}] * 20),
    ]


def test_page_draws_history_then_live_updates_with_nothing_from_the_internet(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],
) -> None:
    base = now_s()
    produce_rows(results_settings, seed_rows(base))
    dashboard = start_dashboard(results_settings)
    wait_for(lambda: len(dashboard.get("/api/status").json()["metrics"]) == 6)
    wait_for(lambda: len(dashboard.get("/api/history").json()["rows"]) == 20 * 16)

    page = open_page(dashboard.url)
    page.wait("document.body.dataset.connection === 'live'")
    gender = page.wait_chart("shop.gender", "points === 20")
    assert gender["last"] == {"female": 14, "male": 7, "unknown": 1}
    assert page.text("#connection") == "Live"
    assert page.page.locator('.chart[data-metric="shop.gender"] canvas').count() == 1
    assert page.chart("shop.action")["points"] == 20
    assert page.chart("web.pageviews")["last"] == {"Custom": 1, "PagePing": 9, "Pageview": 5}
    assert page.text("#panel-sessions .big-number") == "59"

    # Top lists: sums over the last 60 s of windows, largest first; keys shown as text only.
    labels = page.page.locator("#panel-pages .bars .label").all_inner_texts()
    assert labels == ["/pricing", "/", XSS]
    assert page.page.locator("#panel-pages .bars .value").all_inner_texts()[0] == "100"
    assert page.page.evaluate("window.__xss") is None
    assert page.page.locator("#panel-referrers .bars .label").all_inner_texts() == [
        "direct",
        "news.example.com",
    ]
    for panel in ("gender", "action", "pageviews", "sessions", "pages", "referrers"):
        assert page.page.locator(f"#panel-{panel} .empty").is_hidden(), panel

    # Newer results reach the chart without a reload: a new window, then its count updated.
    produce_rows(results_settings, windows("shop.gender", base, [{"female": 3, "male": 1}]))
    # The two records of an update may reach the page in one push or two: wait for both.
    ready = "points === 21 && last.female === 3 && last.male === 1"
    gender = page.wait_chart("shop.gender", ready, timeout_s=5)
    assert gender["last"] == {"female": 3, "male": 1}
    produce_rows(results_settings, windows("shop.gender", base, [{"female": 25, "unknown": 2}]))
    gender = page.wait_chart("shop.gender", "last.female === 25 && last.unknown === 2", timeout_s=5)
    assert gender == {"points": 21, "last": {"female": 25, "male": 1, "unknown": 2}}
    assert page.page.evaluate("window.clickstreamDashboard.rows.length") == 20 * 16 + 3
    assert page.page.evaluate("window.clickstreamDashboard.state") == "live"

    ARTIFACTS.mkdir(exist_ok=True)
    page.page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    # Narrow screens: one column, charts resized to fit, nothing wider than the window.
    page.page.set_viewport_size({"width": 420, "height": 900})
    page.wait("document.querySelector('#panel-gender canvas').getBoundingClientRect().width < 420")
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 420
    page.page.screenshot(path=str(ARTIFACTS / "dashboard-narrow.png"), full_page=True)

    assert page.outside == []
    assert page.errors == []
    assert dashboard.get("/api/status").json()["connections"] == 1


def test_each_panel_shows_how_old_its_newest_data_is_amber_past_the_threshold(
    settings: Settings,
    new_topic: Callable[..., str],
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],
) -> None:
    """The result records say the newest event time their job counted and when they were
    written; each panel shows the age of the first (of the second where a job does not know
    it), amber past ``dashboard.stale_after_s``."""
    s = with_results_topic(settings, new_topic(partitions=2), stale_after_s=60)
    base = now_s()
    rows = [
        *windows("shop.gender", base - 3000, [{"female": 4}]),
        *windows("shop.action", base - 3000, [{"click": 2}]),
        *windows("web.pageviews", base - 3000, [{"Pageview": 1}]),
    ]
    rows[0].newest_event_ms, rows[0].written_ms = base - 2_000, base - 1_000  # fresh
    rows[1].newest_event_ms, rows[1].written_ms = base - 300_000, base - 1_000  # 5 min behind
    rows[2].written_ms = base - 2_000  # no event time: its age is since it was written
    produce_rows(s, rows)
    dashboard = start_dashboard(s)
    wait_for(lambda: len(dashboard.get("/api/history").json()["rows"]) == 3)
    assert dashboard.get("/api/history").json()["stale_after_s"] == 60

    page = open_page(dashboard.url)
    page.wait("document.body.dataset.connection === 'live'")
    page.wait("document.querySelector('#panel-gender .age').textContent !== ''")
    gender = page.text("#panel-gender h2 .age")
    assert gender.startswith("data "), gender
    assert gender.endswith(" s ago"), gender
    assert 0 <= int(gender.split()[1]) < 30
    assert page.page.locator("#panel-gender h2 .age.stale").count() == 0
    assert page.text("#panel-action h2 .age") == "data 5 min ago"
    assert page.page.locator("#panel-action h2 .age.stale").count() == 1
    color = page.page.eval_on_selector("#panel-action h2 .age", "e => getComputedStyle(e).color")
    assert color == "rgb(210, 153, 34)"  # --warn: amber
    assert page.text("#panel-pageviews h2 .age").startswith("written ")
    assert page.page.locator("#panel-pages h2 .age").is_hidden()  # no data, no age

    # A fresher count reaches the panel: no longer amber.
    update = windows("shop.action", base, [{"click": 3}])
    update[0].newest_event_ms, update[0].written_ms = now_s(), now_s()
    produce_rows(s, update)
    page.wait("document.querySelector('#panel-action h2 .age.stale') === null", timeout_s=5)
    assert page.errors == []


def test_the_bot_share_and_the_top_countries_are_shown_live(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],
) -> None:
    base = now_s()
    produce_rows(
        results_settings,
        [
            *windows("web.pageviews", base - 3000, [{"Pageview": 6, "PagePing": 2}] * 3),
            *windows("web.bots", base - 3000, [{"crawler": 1}, {}, {"headless browser": 2}]),
            *windows("web.countries", base - 3000, [{"DE": 3, "JP": 2, "unknown": 1}] * 3),
        ],
    )
    dashboard = start_dashboard(results_settings)
    page = open_page(dashboard.url)
    page.wait("document.body.dataset.connection === 'live'")
    page.wait("document.querySelector('#panel-bots .chart').dataset.share === '11.1'")
    assert page.text("#panel-bots .big-number") == "11.1%"  # 3 bots of 27 events
    assert page.text("#panel-bots .bot-kinds") == "headless browser 2 · crawler 1"
    assert page.page.locator("#panel-bots .empty").is_hidden()
    countries = page.page.locator("#panel-countries .bars .label").all_inner_texts()
    assert countries == ["DE", "JP", "unknown"]
    assert page.page.locator("#panel-countries .bars .value").all_inner_texts()[0] == "9"

    produce_rows(results_settings, windows("web.bots", base, [{"crawler": 5}]))
    page.wait("document.querySelector('#panel-bots .chart').dataset.share === '25.0'", 5)
    assert page.errors == []


def test_each_panel_says_what_to_start_when_there_are_no_results(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],
) -> None:
    dashboard = start_dashboard(results_settings)
    page = open_page(dashboard.url)
    page.wait("document.body.dataset.connection === 'live'")
    page.wait("!document.querySelector('#panel-gender .empty').hidden")
    assert " ".join(page.text("#panel-gender .empty").split()) == SHOP_HINT
    assert "clickstream simulate shop" in page.text("#panel-action .empty")
    for panel in ("pageviews", "sessions", "pages", "referrers"):
        hint = " ".join(page.text(f"#panel-{panel} .empty").split())
        assert hint.startswith("No web events yet"), hint
        assert "clickstream simulate web and clickstream jobs run web-live" in hint
    assert page.chart("shop.gender") == {"points": 0, "last": {}}

    # The first result replaces the empty state of its panel only.
    produce_rows(results_settings, windows("shop.gender", now_s(), [{"male": 2}]))
    page.wait_chart("shop.gender", "points === 1")
    assert page.page.locator("#panel-gender .empty").is_hidden()
    assert page.page.locator("#panel-action .empty").is_visible()
    assert page.errors == []


def test_panels_whose_script_arrives_late_draw_when_it_runs(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[..., Page],
) -> None:
    """The history reaches the page before a slow panels/*.js: those panels wait for their
    renderer (an error before, the generic top list finding no list to fill)."""
    base = now_s()
    produce_rows(
        results_settings,
        [
            *windows("songs.minute", base - 3000, [{"tony-allen/asiko": 4, "ebo-taylor/love": 2}]),
            *windows("bookstore.opens", base - 3000, [{"book-1": 5}]),
            *windows("web.pages", base - 3000, [{"/": 3}]),
        ],
    )
    dashboard = start_dashboard(results_settings)
    wait_for(lambda: len(dashboard.get("/api/history").json()["rows"]) == 4)
    page = open_page(dashboard.url, hold={"panels/songs.js": 2.0, "panels/bookstore.js": 2.0})
    page.wait("document.body.dataset.connection === 'live'")
    page.wait_chart("songs.minute", "points === 1", timeout_s=15)
    page.wait_chart("bookstore.opens", "points === 1")
    assert page.chart("web.pages")["points"] == 1
    artists = page.page.eval_on_selector_all(
        '.chart[data-metric="songs.minute"] .artist', "els => els.map(e => e.dataset.artist)"
    )
    assert artists == ["ebo-taylor", "tony-allen"]
    assert page.text("#panel-bookstore .by-opens .label") == "book-1"
    assert page.errors == []


def start_cli_dashboard(settings: Settings, port: int) -> subprocess.Popen[str]:
    env = cli_env(
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(settings.kafka.bootstrap_servers),
        CLICKSTREAM_TOPICS_RESULTS=settings.topics.results,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "clickstream", "dashboard", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert f"dashboard on http://127.0.0.1:{port}/" in first, (
        first + cast(IO[str], process.stderr).read()
    )

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=20)
    return process


@pytest.mark.slow
def test_page_reconnects_to_a_restarted_server_without_reloading(
    results_settings: Settings, open_page: Callable[[str], Page]
) -> None:
    base = now_s()
    produce_rows(results_settings, windows("shop.gender", base - 5000, [{"male": 1}] * 5))
    port = free_port()
    processes = [start_cli_dashboard(results_settings, port)]
    try:
        page = open_page(f"http://127.0.0.1:{port}")
        page.wait("document.body.dataset.connection === 'live'")
        page.wait_chart("shop.gender", "points === 5")
        page.page.evaluate("window.__marker = 42")

        first = processes[0]
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=15)
        assert first.returncode == 0
        assert "dashboard stopped" in out
        page.wait("document.body.dataset.connection === 'reconnecting'", timeout_s=5)
        assert page.text("#connection").startswith("Reconnecting")

        # While it is down, results go on; the history sent on reconnect brings them.
        produce_rows(results_settings, windows("shop.gender", base, [{"female": 8}]))
        processes.append(start_cli_dashboard(results_settings, port))
        page.wait("document.body.dataset.connection === 'live'", timeout_s=20)
        gender = page.wait_chart("shop.gender", "points === 6 && last.female === 8")
        assert gender["last"] == {"female": 8}
        assert page.page.evaluate("window.__marker") == 42  # same page: not reloaded
        assert page.page.evaluate("window.clickstreamDashboard.connects") == 2
        assert page.text("#connection") == "Live"
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.communicate(timeout=15)
    assert processes[1].returncode == 0
    assert not any(alive(process.pid) for process in processes)
    # Chromium logs each refused connection attempt; nothing else may have gone wrong.
    assert [error for error in page.errors if "WebSocket connection" not in error] == []


def test_a_busy_history_reaches_the_page_in_pieces_and_is_drawn_whole(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],
) -> None:
    rows = busy_history(now_s())  # five minutes at 500 events/s: 1.98 MB as one message
    produce_rows(results_settings, list(rows))
    dashboard = start_dashboard(results_settings)
    wait_for(lambda: len(dashboard.get("/api/history").json()["rows"]) == len(rows))

    page = open_page(dashboard.url)
    page.wait("document.body.dataset.connection === 'live'")
    assert page.page.evaluate("window.clickstreamDashboard.rows.length") == len(rows)
    parts = page.page.evaluate("window.clickstreamDashboard.historyParts")
    assert parts >= 6
    assert len(page.frames) >= parts
    assert max(page.frames) <= MAX_MESSAGE_BYTES
    # Drawn once, from the whole history: the top list sums the newest 60 windows.
    pages = page.wait_chart("web.pages", "points === 60")
    assert len(pages["last"]) == 50
    assert len(page.page.locator("#panel-pages .bars li").all()) == 10
    assert page.errors == []
