"""Hostile connections against a real collector: slow senders are cut off at their timeouts,
forwarded addresses are believed only from our proxies, and the collector's own pages stay
closed."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from clickstream.settings import Settings
from tests.collector.conftest import RunningCollector, collector_settings, serve
from tests.collector.hostile import BATCH, ONE, collector, raw_request, read_answer, refused, stored
from tests.collector.test_collector import post, seed_payload

__all__ = ["collector"]


# -- slow senders -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def impatient(settings: Settings) -> Iterator[RunningCollector]:
    running = serve(collector_settings(settings, header_timeout_s=1.0, body_timeout_s=1.5))
    yield running
    running.stop()


def closed_within(socks: list[socket.socket], seconds: float) -> list[bytes]:
    """What each connection got before the server closed it; fails if one is still open."""
    deadline = time.monotonic() + seconds
    answers = []
    for sock in socks:
        answers.append(read_answer(sock, max(0.1, deadline - time.monotonic())))
    return answers


def test_half_sent_headers_are_closed_at_the_header_timeout(
    impatient: RunningCollector,
) -> None:
    started = time.monotonic()
    socks = [
        raw_request(impatient, b"POST /v1/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(50)
    ]
    socks += [raw_request(impatient, b"") for _ in range(50)]  # connected, nothing sent
    try:
        for sock in socks[:25]:
            sock.sendall(b"a")  # a byte now and then does not keep it open
        answers = closed_within(socks, 1.0 + 1.5)
    finally:
        for sock in socks:
            sock.close()
    assert time.monotonic() - started < 1.0 + 1.5
    assert {answer[:12] for answer in answers} == {b"HTTP/1.1 408"}
    assert httpx.get(impatient.url + "/healthz").status_code == 200  # still serving


@pytest.mark.parametrize("path", [BATCH, "/healthz"])
def test_half_sent_bodies_are_closed_at_the_body_timeout(
    impatient: RunningCollector, path: str
) -> None:
    before = stored(impatient)
    line = json.dumps(seed_payload()).encode() + b"\n"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(line) * 10}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    socks = [raw_request(impatient, head, line * 3) for _ in range(50)]
    try:
        answers = closed_within(socks, 1.5 + 1.0 + 1.5)
    finally:
        for sock in socks:
            sock.close()
    assert time.monotonic() - started < 1.5 + 1.0 + 1.5
    if path == BATCH:
        assert {a[:12] for a in answers} == {b"HTTP/1.1 408"}
        assert b"body not received within 1.5 s" in answers[0]
    assert stored(impatient) == before


def test_a_client_gone_mid_body_has_nothing_produced(impatient: RunningCollector) -> None:
    before = stored(impatient)
    lines = b"".join(json.dumps(seed_payload()).encode() + b"\n" for _ in range(3))
    head = (
        f"POST {BATCH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
        f"Content-Length: {len(lines) * 2}\r\n\r\n"
    ).encode()
    for _ in range(5):
        sock = raw_request(impatient, head, lines)
        sock.shutdown(socket.SHUT_WR)  # gone: the server reads the end of the stream
        assert read_answer(sock, 10.0) == b""  # it closed the connection, with no answer
        sock.close()
    # A marker event, acknowledged once Kafka has it: what the server had made of the cut
    # requests before it answers this one would be stored by now.
    marker = str(uuid.uuid4())
    assert post(impatient.url + ONE, seed_payload(eventId=marker)).status_code == 200
    after = stored(impatient)
    assert [e["eventId"] for e in after if e not in before] == [marker]
    assert len(after) == len(before) + 1


# -- client addresses behind proxies ------------------------------------------------------------


@pytest.fixture(scope="module")
def proxied(settings: Settings) -> Iterator[Callable[..., RunningCollector]]:
    running: dict[tuple[Any, ...], RunningCollector] = {}

    def get(**overrides: Any) -> RunningCollector:
        key = tuple(sorted((k, str(v)) for k, v in overrides.items()))
        if key not in running:
            running[key] = serve(
                collector_settings(settings, trust_forwarded_for=True, ip_mode="full", **overrides)
            )
        return running[key]

    yield get
    for each in running.values():
        each.stop()


@pytest.mark.parametrize(
    ("forwarded", "proxies", "ip"),
    [
        # The client sends its own X-Forwarded-For; our proxy (loopback) appends the real peer.
        (["6.6.6.6, 203.0.113.7"], None, "203.0.113.7"),
        (["203.0.113.7"], None, "203.0.113.7"),
        # A second header line is the same list, continued.
        (["6.6.6.6", "203.0.113.7"], None, "203.0.113.7"),
        # Behind two proxies of ours: the first untrusted hop from the right.
        (["6.6.6.6, 203.0.113.7, 10.1.2.3"], ["127.0.0.1", "10.0.0.0/8"], "203.0.113.7"),
        (["6.6.6.6, 203.0.113.7, 10.1.2.3"], None, "10.1.2.3"),
        # Every hop one of ours: the leftmost.
        (["10.9.9.9, 10.1.2.3"], ["127.0.0.1", "10.0.0.0/8"], "10.9.9.9"),
        # The peer is no proxy of ours: its header is not believed.
        (["6.6.6.6"], ["10.0.0.0/8"], "127.0.0.1"),
        # Garbage where the client's address should be: no address, not the garbage.
        (["6.6.6.6, not-an-address"], None, None),
        (["6.6.6.6, " + "9" * 5000], None, None),
        (["6.6.6.6, [2001:db8::7]:443"], None, "2001:db8::7"),
        (["6.6.6.6, ::ffff:203.0.113.7"], None, "203.0.113.7"),
    ],
)
def test_forwarded_for_trusts_only_our_proxies(
    proxied: Callable[..., RunningCollector],
    forwarded: list[str],
    proxies: list[str] | None,
    ip: str | None,
) -> None:
    collector = proxied(**({"trusted_proxies": proxies} if proxies is not None else {}))
    event_id = str(uuid.uuid4())
    headers = [("content-type", "application/json"), *(("x-forwarded-for", f) for f in forwarded)]
    response = httpx.post(
        collector.url + ONE,
        content=json.dumps(seed_payload(eventId=event_id)).encode(),
        headers=headers,
    )
    assert response.status_code == 200, response.text
    (got,) = [e for e in stored(collector) if e["eventId"] == event_id]
    assert got["ip"] == ip


# -- the collector's own pages ------------------------------------------------------------------


def test_metrics_need_the_token_when_one_is_set(settings: Settings) -> None:
    token = "t-" + uuid.uuid4().hex
    with_token = settings.model_copy(
        update={"dashboard": settings.dashboard.model_copy(update={"token": SecretStr(token)})}
    )
    collector = serve(collector_settings(with_token))
    try:
        url = collector.url + "/metrics"
        for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": token}):
            response = httpx.get(url, headers=headers)
            refused(response, 401, "token", "Authorization: Bearer")
            assert response.headers["www-authenticate"].startswith("Bearer")
        good = httpx.get(url, headers={"authorization": f"Bearer {token}"})
        assert good.status_code == 200
        assert "clickstream_collector_events_accepted" in good.text
        # The event endpoints stay open (they have write keys of their own).
        assert post(collector.url + ONE, seed_payload()).status_code == 200
    finally:
        collector.stop()


def test_docs_load_nothing_from_elsewhere(collector: RunningCollector) -> None:
    import re

    page = httpx.get(collector.url + "/docs")
    assert page.status_code == 200
    links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    links += re.findall(r"""url: ?["']([^"']+)["']""", page.text)
    assert len(links) >= 4, page.text
    assert not [link for link in links if not link.startswith("/")], links
    assert "validatorUrl" in page.text
    for link in links:
        assert httpx.get(collector.url + link).status_code == 200, link
    assert httpx.get(collector.url + "/redoc").status_code == 404
