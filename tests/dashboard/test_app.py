"""The hub and the app against the real broker: history, updates over /ws, status, health."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin

from clickstream.broker.embedded import EmbeddedBroker
from clickstream.dashboard.hub import Hub
from clickstream.events.results import WindowCount
from clickstream.kafka.admin import ensure_topics
from clickstream.settings import Settings
from tests.collector.conftest import free_port
from tests.conftest import cli_env, own_broker, wait_for
from tests.dashboard.conftest import (
    RunningDashboard,
    now_s,
    produce_rows,
    windows,
    with_results_topic,
)

Start = Callable[..., RunningDashboard]


def ws_url(dashboard: RunningDashboard) -> str:
    return dashboard.url.replace("http://", "ws://") + "/ws"


def by_key(rows: list[dict[str, Any]], metric: str) -> dict[tuple[int, str], int]:
    return {(r["window_start"], r["key"]): r["count"] for r in rows if r["metric"] == metric}


def test_history_keeps_the_newest_count_drops_old_windows_and_skips_bad_records(
    results_settings: Settings, start_dashboard: Start
) -> None:
    settings = with_results_topic(results_settings, results_settings.topics.results, history_s=60)
    base = now_s()
    rows: list[WindowCount | bytes] = [
        # Update mode: the same window and key again with a higher count; the newest wins.
        *windows("shop.gender", base, [{"female": 1, "male": 2}]),
        *windows("shop.gender", base, [{"female": 5}]),
        *windows("shop.gender", base - 30_000, [{"male": 3}]),
        # Older than 60 s before the newest shop.gender window: dropped.
        *windows("shop.gender", base - 120_000, [{"male": 9}]),
        # Another metric keeps its own newest window.
        *windows("web.pages", base - 600_000, [{"/": 4, "/pricing": 1}]),
        b"not json",
        b'{"metric": "shop.gender"}',
        b"[1, 2, 3]",
        b'{"metric": "m", "window_start": 2000, "window_end": 1000, "key": "k", "count": 1}',
    ]
    produce_rows(settings, rows)
    dashboard = start_dashboard(settings)

    expected = {
        "shop.gender": {(base, "female"): 5, (base, "male"): 2, (base - 30_000, "male"): 3},
        "web.pages": {(base - 600_000, "/"): 4, (base - 600_000, "/pricing"): 1},
    }

    def held() -> dict[str, dict[tuple[int, str], int]]:
        rows = dashboard.get("/api/history").json()["rows"]
        return {metric: by_key(rows, metric) for metric in expected}

    # Rows arrive from two partitions; wait until both were read (a wrong count times out).
    wait_for(lambda: held() == expected)
    history = dashboard.get("/api/history").json()
    assert history["history_s"] == 60
    status = dashboard.get("/api/status").json()
    assert status["bad_records"] == 4
    assert status["results_received"] == 7
    assert status["metrics"] == {"shop.gender": base + 1000, "web.pages": base - 599_000}
    assert status["kafka"] == "up"
    assert status["topic_ready"] is True
    assert status["last_result_ms"] >= base - 5000
    assert all(r["window_end"] == r["window_start"] + 1000 for r in history["rows"])

    metrics = dashboard.get("/metrics").text
    assert "clickstream_dashboard_bad_records_total 4.0" in metrics
    assert "clickstream_dashboard_results_received_total 7.0" in metrics
    health = dashboard.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json() == {"status": "ok", "kafka": "up", "topic": "ready"}


def test_prometheus_says_how_old_each_panels_newest_data_is(
    results_settings: Settings, start_dashboard: Start
) -> None:
    """clickstream_freshness_seconds{panel}: now minus the newest event time counted, or minus
    the time of writing for counts that carry no event time (the joins' totals)."""
    settings = with_results_topic(results_settings, results_settings.topics.results)
    base = now_s()
    shop = windows("shop.gender", base, [{"female": 1}, {"female": 2}])
    shop[0].newest_event_ms, shop[0].written_ms = base - 90_000, base - 1_000
    shop[1].newest_event_ms, shop[1].written_ms = base - 30_000, base - 1_000
    totals = windows("joins.event_types", 0, [{"click": 4}])
    totals[0].written_ms = base - 300_000
    plain = windows("web.pages", base, [{"/": 1}])  # an older job's counts: no freshness
    produce_rows(settings, [*shop, *totals, *plain])
    dashboard = start_dashboard(settings)

    def ages() -> dict[str, float]:
        found = {}
        for line in dashboard.get("/metrics").text.splitlines():
            if line.startswith("clickstream_freshness_seconds{"):
                panel = line.split('panel="', 1)[1].split('"', 1)[0]
                found[panel] = float(line.rsplit(" ", 1)[1])
        return found

    def read_all() -> dict[str, float] | None:
        # The shop windows may sit in two partitions: the newer one may be read after the
        # others. Waited for until its age is under a minute (the older one's is 90 s).
        found = ages()
        everything = set(found) == {"shop.gender", "joins.event_types"}
        return found if everything and found["shop.gender"] < 60 else None

    seen = wait_for(read_all)
    late = (now_s() - base) / 1000 + 1  # the seconds since the rows were stamped, and then some
    assert 30 <= seen["shop.gender"] <= 30 + late  # the newer of the two event times
    assert 300 <= seen["joins.event_types"] <= 300 + late
    stale_after = float(settings.dashboard.stale_after_s)
    assert (
        f"clickstream_dashboard_stale_after_seconds {stale_after}" in dashboard.get("/metrics").text
    )


def test_websocket_sends_history_then_updates_and_counts_connections(
    results_settings: Settings, start_dashboard: Start
) -> None:
    base = now_s()
    produce_rows(results_settings, windows("shop.gender", base - 3000, [{"male": 1}] * 3))
    dashboard = start_dashboard(results_settings)
    wait_for(lambda: len(dashboard.get("/api/history").json()["rows"]) == 3)
    assert dashboard.get("/api/status").json()["connections"] == 0

    with connect(ws_url(dashboard), open_timeout=5) as ws:
        first = json.loads(ws.recv(timeout=5))
        assert first["type"] == "history"
        assert by_key(first["rows"], "shop.gender") == {
            (base - 3000, "male"): 1,
            (base - 2000, "male"): 1,
            (base - 1000, "male"): 1,
        }
        assert abs(first["server_time"] - time.time() * 1000) < 5000
        assert first["status"]["kafka"] == "up"
        assert dashboard.get("/api/status").json()["connections"] == 1
        assert "clickstream_dashboard_connections 1.0" in dashboard.get("/metrics").text

        sent = time.monotonic()
        produce_rows(results_settings, windows("shop.gender", base, [{"female": 4, "male": 2}]))
        seen: dict[tuple[int, str], int] = {}
        while len(seen) < 2:
            message = json.loads(ws.recv(timeout=5))
            assert message["type"] in ("update", "status")
            if message["type"] == "update":
                seen.update(by_key(message["rows"], "shop.gender"))
        assert time.monotonic() - sent < 3.0  # produce + fetch + push; usually ~50 ms
        assert seen == {(base, "female"): 4, (base, "male"): 2}

        # An update of a count already sent: pushed again with the new count.
        produce_rows(results_settings, windows("shop.gender", base, [{"female": 6}]))
        message = json.loads(ws.recv(timeout=5))
        assert by_key(message["rows"], "shop.gender") == {(base, "female"): 6}

    wait_for(lambda: dashboard.get("/api/status").json()["connections"] == 0)


def test_a_cross_site_page_may_not_open_the_websocket(
    results_settings: Settings, start_dashboard: Start
) -> None:
    dashboard = start_dashboard(results_settings)
    with pytest.raises(Exception, match="403"):
        connect(ws_url(dashboard), origin=Origin("https://evil.example"), open_timeout=5)
    with connect(ws_url(dashboard), origin=Origin(dashboard.url), open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "history"


def test_waits_for_the_results_topic_then_reads_it(
    settings: Settings, new_topic: Callable[..., str], start_dashboard: Start
) -> None:
    topic = new_topic(create=False)
    dashboard = start_dashboard(with_results_topic(settings, topic))
    # Kafka answers (the reader may still be connecting at first); the jobs create the topic later.
    health = wait_for(lambda: (r := dashboard.get("/healthz")).json()["kafka"] == "up" and r)
    assert health.status_code == 200
    assert health.json()["topic"] == "waiting"
    assert dashboard.get("/api/status").json()["topic_ready"] is False

    ensure_topics(settings, [topic], partitions=2)
    produce_rows(dashboard.settings, windows("shop.action", now_s(), [{"click": 3}]))
    rows = wait_for(lambda: dashboard.get("/api/history").json()["rows"], timeout=15)
    assert [(r["metric"], r["key"], r["count"]) for r in rows] == [("shop.action", "click", 3)]
    assert dashboard.get("/healthz").json()["topic"] == "ready"


def test_unreachable_kafka_makes_healthz_503_then_recovers_when_it_answers(
    results_settings: Settings, start_dashboard: Start, tmp_path: Path
) -> None:
    port = free_port()
    nowhere = results_settings.with_bootstrap(f"127.0.0.1:{port}")
    nowhere = nowhere.model_copy(
        update={"kafka": nowhere.kafka.model_copy(update={"timeout_s": 1.0})}
    )
    dashboard = start_dashboard(nowhere)
    response = wait_for(lambda: (r := dashboard.get("/healthz")).json()["kafka"] == "down" and r)
    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert "transport" in response.json()["error"].lower()
    # The page and the API keep answering.
    assert dashboard.get("/").status_code == 200
    assert dashboard.get("/api/status").json()["kafka"] == "down"
    assert "clickstream_dashboard_kafka_up 0.0" in dashboard.get("/metrics").text

    # A broker appears at that address: the hub finds it, then the topic, then results.
    with own_broker(tmp_path / "kafka", port=port):
        healthy: Any = wait_for(lambda: (r := dashboard.get("/healthz")).status_code == 200 and r)
        assert healthy.json()["kafka"] == "up"
        ensure_topics(nowhere, [nowhere.topics.results], partitions=1)
        produce_rows(nowhere, windows("shop.gender", now_s(), [{"female": 2}]))
        rows = wait_for(lambda: dashboard.get("/api/history").json()["rows"], timeout=15)
        assert [(r["key"], r["count"]) for r in rows] == [("female", 2)]
        dashboard.stop()  # before the broker, which waits for its clients to leave


def test_cli_says_when_the_port_is_taken(broker: EmbeddedBroker) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "clickstream", "dashboard", "--port", str(port)],
            env=cli_env(CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"error: port {port} on 127.0.0.1 is in use" in result.stderr


def test_a_slow_subscriber_is_dropped_without_holding_up_the_others(
    results_settings: Settings,
) -> None:
    async def scenario() -> None:
        hub = Hub(results_settings, client_queue=3)  # not started: rows are handed in directly
        slow, _ = hub.subscribe()
        fast, history = hub.subscribe()
        assert [json.loads(message)["rows"] for message in history] == [[]]
        received = []
        for i in range(10):
            hub.deliver(windows("shop.gender", now_s() + i * 1000, [{"male": i}]))
            received.append(await asyncio.wait_for(fast.next(), 1))  # fast keeps up
        assert len(received) == 10
        assert slow.dropped
        assert slow not in hub.subscribers
        assert await slow.next() is None  # its sender is told to stop
        assert fast in hub.subscribers
        assert not fast.dropped
        assert hub.metrics.dropped_clients._value.get() == 1
        assert hub.status()["connections"] == 1

    asyncio.run(scenario())


def test_closing_an_open_websocket_when_the_server_stops(
    results_settings: Settings, start_dashboard: Start
) -> None:
    dashboard = start_dashboard(results_settings)
    with connect(ws_url(dashboard), open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "history"
        started = time.monotonic()
        dashboard.stop()
        closed = None
        while closed is None:
            try:
                message = json.loads(ws.recv(timeout=10))
            except ConnectionClosed as exc:
                closed = exc
            else:  # a status message may come first
                assert message["type"] == "status"
    assert time.monotonic() - started < 8
    assert closed.rcvd is not None
    assert closed.rcvd.code in (1001, 1012)
    assert not dashboard.hub.reader.running


def test_clickstream_status_prints_each_metrics_freshness(
    settings: Settings, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """`clickstream status` reads the result topic's newest records: per metric, the newest
    event time counted and when it was last written, stale past dashboard.stale_after_s."""
    from tests.dashboard.conftest import now_s, produce_rows, windows, with_results_topic

    s = with_results_topic(settings, new_topic(partitions=2))
    base = now_s()
    fresh = windows("shop.gender", base - 5000, [{"female": 1}, {"female": 2}])
    fresh[0].newest_event_ms, fresh[0].written_ms = base - 4_000, base - 3_000
    fresh[1].newest_event_ms, fresh[1].written_ms = base - 2_000, base - 1_000
    old = windows("shop.action", base - 5000, [{"click": 1}])
    old[0].newest_event_ms, old[0].written_ms = base - 600_000, base - 1_000
    produce_rows(s, [*fresh, *old, b"not a count"])

    env = cli_env(
        CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS=str(s.kafka.bootstrap_servers),
        CLICKSTREAM_TOPICS_RESULTS=s.topics.results,
        CLICKSTREAM_DATA_DIR=str(tmp_path),
        CLICKSTREAM_DASHBOARD_STALE_AFTER_S="60",
    )
    done = subprocess.run(
        [sys.executable, "-m", "clickstream", "status", "--json"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["freshness"]
    assert report == {
        "shop.action": {
            "newest_event_ms": base - 600_000,
            "written_ms": base - 1_000,
            "stale": True,
        },
        "shop.gender": {
            "newest_event_ms": base - 2_000,
            "written_ms": base - 1_000,
            "stale": False,
        },
    }
    table = subprocess.run(
        [sys.executable, "-m", "clickstream", "status"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "Freshness" in table.stdout
    line = next(x for x in table.stdout.splitlines() if "shop.action" in x and "ago" in x)
    assert "10 min ago" in line
    assert "stale" in line
