"""Hostile requests, written by hand, against a real collector and broker: each gets a 4xx that
names what is wrong (never a 500), and nothing malformed reaches Kafka. Slow senders, proxies
and the collector's own pages are in test_hostile_connections.py."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.collector.conftest import RunningCollector
from tests.collector.hostile import BATCH, ONE, collector, raw_request, read_answer, refused, stored
from tests.collector.test_collector import CHROME, post, seed_payload

__all__ = ["collector"]


@pytest.fixture
def nothing_stored(collector: RunningCollector) -> Iterator[None]:
    """The test's requests add nothing to Kafka."""
    before = stored(collector)
    yield
    assert stored(collector) == before


def custom(**changes: Any) -> dict[str, Any]:
    event = {
        "eventType": "Custom",
        "timestamp": int(time.time() * 1000),
        "uiud": str(uuid.uuid4()),
        "sessionId": "s1",
        "pageUrl": "https://shop.example/",
        "name": "signup",
        "props": {"plan": "pro"},
    }
    event.update(changes)
    return event


# -- bodies that are not JSON, or not the JSON we take ------------------------------------------


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("path", [ONE, BATCH])
@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"timestamp": 1,', "not valid JSON"),
        (b"{'single': 'quotes'}", "not valid JSON"),
        (b'{"pageUrl": "a\x00b"}', "not valid JSON"),  # a raw NUL byte
        (b"\x00" * 64, "not valid JSON"),
        (b'{"pageUrl": "\xff\xfe"}', "not valid UTF-8"),
        # Bad bytes in a field the collector ignores: the event is refused all the same.
        (b'{"unknown": "\xc0\xaf", ' + json.dumps(seed_payload())[1:].encode(), "not valid UTF-8"),
        (b'{"pageUrl": "\\ud800"}', "not valid JSON"),  # a lone surrogate escape
        (b'{"unknown": "\\udc00x", "eventType": "Pageview"}', "not valid JSON"),
        (b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested too deeply"),
        (b'{"x": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}", "nested too deeply"),
        (b"   \n  ", "empty body"),
    ],
)
def test_not_json_is_400(collector: RunningCollector, path: str, body: bytes, words: str) -> None:
    if path == BATCH and body.startswith(b"{"):
        body = b"[" + body + b"]"  # the batch endpoint's own framing
    response = post(collector.url + path, body)
    if path == BATCH and body == b"\x00" * 64:  # one NDJSON line, refused by its index
        refused(response, 422, None, "no valid event in the batch")
        assert words in response.json()["rejected"][0]["error"]
        return
    refused(response, 400, None, words)


@pytest.mark.usefixtures("nothing_stored")
def test_deep_nesting_in_a_batch_item_or_ndjson_line_is_refused(
    collector: RunningCollector,
) -> None:
    deep = b"[" * 3000 + b"]" * 3000
    refused(post(collector.url + BATCH, b"[" + deep + b"]"), 400, None, "nested too deeply")
    line = b'{"eventType": "Pageview", "x": ' + deep + b"}"
    response = post(collector.url + BATCH, line + b"\n" + line)
    assert response.status_code == 422, response.text
    assert [r["error"] for r in response.json()["rejected"]] == [
        "body is not accepted: JSON nested too deeply"
    ] * 2


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    ("content_type", "words"),
    [
        ("application/x-www-form-urlencoded", "content type application/x-www-form-urlencoded"),
        ("multipart/form-data; boundary=x", "content type multipart/form-data"),
        ("application/xml", "content type application/xml"),
        ("image/png", "content type image/png"),
        ("application/json; charset=latin-1", "charset latin-1"),
        ("text/plain; charset=utf-16", "charset utf-16"),
    ],
)
def test_wrong_content_types_are_415(
    collector: RunningCollector, content_type: str, words: str
) -> None:
    for path in (ONE, BATCH):
        response = post(
            collector.url + path, seed_payload(), headers={"content-type": content_type}
        )
        refused(response, 415, "Content-Type", words)


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ([seed_payload()], 422, None, "Expected `object`, got `array`"),
        ("just a string", 422, None, "Expected `object`, got `str`"),
        (None, 422, None, "Expected `object`, got `null`"),
        (seed_payload(timestamp="soon"), 422, "timestamp", "Expected `int`, got `str`"),
        (seed_payload(timestamp=1.5), 422, "timestamp", "Expected `int`, got `float`"),
        (seed_payload(timestamp=-1), 422, "timestamp", "Expected `int` >= 0"),
        (seed_payload(timestamp=10**20), 422, "timestamp", "Expected `int` <="),
        (seed_payload(sessionId=[1]), 422, "sessionId", "got `array`"),
        (seed_payload(sessionId=True), 422, "sessionId", "got `bool`"),
        (seed_payload(eventType=5), 422, "eventType", "eventType"),
        (seed_payload(eventType="Teleport"), 422, "eventType", "Invalid value 'Teleport'"),
        (seed_payload(landingPage=2), 422, "landingPage", "landingPage"),
        (seed_payload(pageUrl=""), 422, "pageUrl", "length >= 1"),
        (seed_payload(uiud={"a": 1}), 422, "uiud", "got `object`"),
        (custom(props={"a": {"b": 1}}), 422, "props", "props: a value"),
        (custom(props=["a"]), 422, "props", "got `array`"),
        (custom(name=None), 422, "name", "got `null`"),
    ],
)
def test_wrong_types_are_422_naming_the_field(
    collector: RunningCollector, body: Any, status: int, field: str | None, words: str
) -> None:
    refused(post(collector.url + ONE, body), status, field, words)


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize(
    ("event", "field", "words"),
    [
        (seed_payload(pageUrl="https://a.example/" + "p" * 4096), "pageUrl", "length <= 4096"),
        (seed_payload(referrer="r" * 4097), "referrer", "length <= 4096"),
        (seed_payload(lastPageVisited="l" * 4097), "lastPageVisited", "length <= 4096"),
        (seed_payload(pageTitle="t" * 1025), "pageTitle", "length <= 1024"),
        (seed_payload(uiud="u" * 129), "uiud", "length <= 128"),
        (seed_payload(sessionId="s" * 129), "sessionId", "length <= 128"),
        (seed_payload(eventId="e" * 129), "eventId", "length <= 128"),
        (custom(name="n" * 257), "name", "length <= 256"),
        (custom(props={f"k{i}": i for i in range(65)}), "props", "length <= 64"),
        (custom(props={"k" * 129: 1}), "props", "props: a name"),
        (custom(props={"k": "v" * 1025}), "props", "props: a value"),
    ],
)
def test_over_long_fields_are_422_naming_the_field(
    collector: RunningCollector, event: dict[str, Any], field: str, words: str
) -> None:
    refused(post(collector.url + ONE, event), 422, field, words)
    batch = post(collector.url + BATCH, [event])
    refused(batch, 422, None, "no valid event in the batch")
    assert [(r["index"], r["field"]) for r in batch.json()["rejected"]] == [(0, field)]


def test_longest_fields_are_taken_whole(collector: RunningCollector) -> None:
    event = seed_payload(
        eventId=str(uuid.uuid4()),
        pageUrl="https://a.example/" + "p" * (4096 - 18),
        referrer="r" * 4096,
        pageTitle="t" * 1024,
    )
    assert post(collector.url + ONE, event).status_code == 200
    (got,) = [e for e in stored(collector) if e["eventId"] == event["eventId"]]
    assert (got["pageUrl"], got["referrer"], got["pageTitle"]) == (
        event["pageUrl"],
        event["referrer"],
        event["pageTitle"],
    )


# -- sizes --------------------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("path", [ONE, BATCH])
def test_ten_megabytes_are_refused_without_reading_them(
    collector: RunningCollector, path: str
) -> None:
    size = 10 * 1024 * 1024
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    with raw_request(collector, head, b"[" + b" " * 1000) as sock:
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body of 10485760 bytes is over the limit of 1048576 bytes" in answer
    assert b"connection: close" in answer.lower()


@pytest.mark.usefixtures("nothing_stored")
def test_ten_megabytes_chunked_are_refused_at_the_limit(collector: RunningCollector) -> None:
    head = (
        f"POST {BATCH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    with raw_request(collector, head) as sock:
        sent = 0
        try:
            while sent < 10 * 1024 * 1024:
                sock.sendall(chunk)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body is over the limit of 1048576 bytes" in answer
    assert sent < 10 * 1024 * 1024  # refused on the way, not after 10 MB


@pytest.mark.usefixtures("nothing_stored")
def test_huge_batches_are_413(collector: RunningCollector) -> None:
    events = [seed_payload() for _ in range(1001)]
    refused(post(collector.url + BATCH, events), 413, None, "batch of 1001 events is over")
    ndjson = b"\n".join(json.dumps(e).encode() for e in events)
    refused(post(collector.url + BATCH, ndjson), 413, None, "batch of 1001 events is over")


@pytest.mark.usefixtures("nothing_stored")
def test_an_empty_batch_is_a_no_op(collector: RunningCollector) -> None:
    response = post(collector.url + BATCH, [])
    assert (response.status_code, response.json()) == (200, {"accepted": 0, "rejected": []})


# -- times --------------------------------------------------------------------------------------


def clamped_count(collector: RunningCollector) -> float:
    text = httpx.get(collector.url + "/metrics").text
    (line,) = [
        x for x in text.splitlines() if x.startswith("clickstream_collector_events_clamped_total ")
    ]
    return float(line.split()[-1])


def test_far_future_times_are_clamped_to_the_receive_time(collector: RunningCollector) -> None:
    before = clamped_count(collector)
    now = int(time.time() * 1000)
    far = seed_payload(eventId=str(uuid.uuid4()), timestamp=now + 2 * 3600 * 1000)
    near = seed_payload(eventId=str(uuid.uuid4()), timestamp=now + 30 * 60 * 1000)
    batch_far = custom(eventId=str(uuid.uuid4()), timestamp=now + 400 * 24 * 3600 * 1000)
    assert post(collector.url + ONE, far).status_code == 200
    assert post(collector.url + ONE, near).status_code == 200
    assert post(collector.url + BATCH, [batch_far]).json()["accepted"] == 1
    events = {e["eventId"]: e for e in stored(collector)}
    for clamped in (far, batch_far):
        got = events[clamped["eventId"]]
        assert got["timestamp"] == got["receivedAt"]
        assert abs(got["receivedAt"] - now) < 60_000
    assert events[near["eventId"]]["timestamp"] == near["timestamp"]  # within max_future_s
    assert clamped_count(collector) == before + 2


# -- methods ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("nothing_stored")
@pytest.mark.parametrize("path", [ONE, BATCH])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
def test_other_methods_are_405_with_allow(
    collector: RunningCollector, path: str, method: str
) -> None:
    response = httpx.request(method, collector.url + path, content=b"{}")
    assert response.status_code == 405
    assert response.headers["allow"] == "OPTIONS, POST"
    if method != "HEAD":
        assert "method " + method + " is not allowed" in response.json()["error"]
    options = httpx.options(collector.url + path)
    assert (options.status_code, options.headers["allow"]) == (204, "OPTIONS, POST")


# -- what comes from headers --------------------------------------------------------------------


def test_header_fields_are_cut_to_their_bounds(collector: RunningCollector) -> None:
    event_id = str(uuid.uuid4())
    agent = CHROME + " " + "x" * 8000
    url = "https://a.example/?utm_source=" + "s" * 3000
    response = post(
        collector.url + ONE,
        seed_payload(eventId=event_id, pageUrl=url),
        headers={"user-agent": agent},
    )
    assert response.status_code == 200, response.text
    (got,) = [e for e in stored(collector) if e["eventId"] == event_id]
    assert got["userAgent"] == agent[:512]
    assert got["browser"] == "Chrome 120"
    assert got["utmSource"] == "s" * 512
