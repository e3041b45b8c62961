"""The hub's messages stay under their size bound: the history in numbered parts, large updates
in several messages, over a real WebSocket to a client with the common 1 MiB limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgspec
from websockets.sync.client import connect

from clickstream.dashboard.hub import MAX_MESSAGE_BYTES, Hub
from clickstream.events.results import WindowCount
from clickstream.settings import Settings
from tests.conftest import wait_for
from tests.dashboard.conftest import (
    RunningDashboard,
    busy_history,
    now_s,
    produce_rows,
    windows,
)

MIB = 1024 * 1024


def as_dicts(rows: list[WindowCount]) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(row) for row in rows]


def test_history_and_large_updates_are_split_under_the_bound(results_settings: Settings) -> None:
    bound = 16_384

    async def scenario() -> None:
        hub = Hub(results_settings, max_message_bytes=bound)  # not started: rows handed in
        _, empty = hub.subscribe()
        assert [json.loads(m) | {"server_time": 0} for m in empty] == [
            {
                "type": "history",
                "part": 1,
                "parts": 1,
                "server_time": 0,
                "history_s": 300,
                "stale_after_s": 60,
                "status": hub.connection_status(),
                "rows": [],
            }
        ]

        base = now_s()
        hub.deliver(busy_history(base, seconds=60))
        held = as_dicts(hub.windows.rows())
        assert len(held) == 3000
        assert len(msgspec.json.encode(held)) > 10 * bound
        subscriber, history = hub.subscribe()
        assert len(history) > 10
        pieces = [json.loads(message) for message in history]
        assert max(len(message.encode()) for message in history) <= bound
        assert [(p["part"], p["parts"]) for p in pieces] == [
            (i, len(history)) for i in range(1, len(history) + 1)
        ]
        assert all(p["history_s"] == 300 and p["status"]["topic"] for p in pieces)
        assert [row for p in pieces for row in p["rows"]] == held

        # A large update (a backlog read at once) goes out in several messages too.
        newer = busy_history(base + 10_000, seconds=10)
        hub.deliver(newer)
        updates = []
        while not subscriber.queue.empty():
            message = await subscriber.next()
            assert message is not None
            updates.append(message)
        assert len(updates) > 1
        assert max(len(message.encode()) for message in updates) <= bound
        sent = [row for message in updates for row in json.loads(message)["rows"]]
        assert sent == as_dicts(newer)
        assert {json.loads(message)["type"] for message in updates} == {"update"}

        # One row larger than the bound goes alone, whole.
        huge = windows("web.pages", base + 20_000, [{"/" + "x" * bound: 1, "/": 2}])
        hub.deliver(huge)
        alone = [await subscriber.next() for _ in range(2)]
        assert [json.loads(m)["rows"] for m in alone if m] == [[r] for r in as_dicts(huge)]

    asyncio.run(scenario())


def test_a_busy_history_reaches_a_client_with_a_1_mib_limit_in_pieces(
    results_settings: Settings, start_dashboard: Callable[..., RunningDashboard]
) -> None:
    rows = busy_history(now_s())
    whole = len(msgspec.json.encode({"type": "history", "rows": rows}))
    assert whole > 1.4 * MIB  # one message would be refused by the client below
    produce_rows(results_settings, list(rows))
    dashboard = start_dashboard(results_settings)

    def read_all() -> bool:
        # Held, not only read: the reader hands its batches to the loop a moment later.
        return len(dashboard.get("/api/history").json()["rows"]) == len(rows)

    wait_for(read_all, timeout=30)
    ws_url = dashboard.url.replace("http://", "ws://") + "/ws"
    with connect(ws_url, open_timeout=5, max_size=MIB) as ws:
        sizes: list[int] = []
        received: list[dict[str, Any]] = []
        while True:
            text = ws.recv(timeout=10)
            assert isinstance(text, str)
            message = json.loads(text)
            if message["type"] != "history":
                continue
            sizes.append(len(text.encode()))
            received.extend(message["rows"])
            if message["part"] == message["parts"]:
                break
    assert max(sizes) <= MAX_MESSAGE_BYTES
    assert len(sizes) == message["parts"] >= 6
    assert received == as_dicts(sorted(rows, key=lambda r: (r.window_start, r.key)))
