"""The collector over real HTTP, producing to the real embedded broker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.collector.conftest import RunningCollector
from tests.conftest import read_topic

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def seed_payload(**changes: Any) -> dict[str, Any]:
    """Exactly what the seed's snippet sends (encodeURI'd strings, numeric sessionId)."""
    payload = {
        "timestamp": int(time.time() * 1000),
        "lastPageVisited": "https://www.google.com/",
        "pageUrl": "https://kickassdataprojects.com/about-me/?utm_source=google&utm_medium=cpc",
        "pageTitle": "About%20me",
        "eventType": "Pageview",
        "landingPage": 1,
        "referrer": "https://www.google.com/",
        "uiud": str(uuid.uuid4()),
        "sessionId": 482913,
    }
    payload.update(changes)
    return payload


def post(url: str, body: Any, **kwargs: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json; charset=UTF-8", "user-agent": CHROME}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(url, content=content, headers=headers, timeout=30, **kwargs)


def test_seed_snippet_payload_lands_enriched(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector()
    payload = seed_payload()
    response = post(
        f"{collector.url}/api/webeventspub", payload, headers={"origin": "https://kickass.example"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert response.headers["access-control-allow-origin"] == "https://kickass.example"
    ((key, event),) = read_topic(collector.settings, collector.settings.topics.web_events)
    assert key == payload["uiud"].encode()
    for field in (
        "timestamp",
        "lastPageVisited",
        "pageUrl",
        "pageTitle",
        "landingPage",
        "referrer",
        "uiud",
    ):
        assert event[field] == payload[field]
    assert event["eventType"] == "Pageview"
    assert event["sessionId"] == "482913"
    assert event["eventId"] == response.json()["id"]
    assert abs(event["receivedAt"] - time.time() * 1000) < 60_000
    assert (event["browser"], event["os"], event["device"]) == (
        "Chrome 120",
        "Windows 10",
        "desktop",
    )
    assert event["bot"] is False
    assert event["botReason"] is None
    assert event["ip"] == "127.0.0.0"
    assert (event["utmSource"], event["utmMedium"], event["utmCampaign"]) == ("google", "cpc", None)


def test_retried_seed_payload_keeps_its_event_id(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector()
    payload = seed_payload()
    first = post(f"{collector.url}/api/webeventspub", payload).json()["id"]
    again = post(f"{collector.url}/api/webeventspub", payload).json()["id"]
    other = post(f"{collector.url}/api/webeventspub", seed_payload()).json()["id"]
    assert first == again != other


def test_batch_accepts_good_events_and_reports_bad_ones(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector()
    visitor = str(uuid.uuid4())
    common = {
        "timestamp": int(time.time() * 1000),
        "uiud": visitor,
        "sessionId": "s1",
        "pageUrl": "https://a.example/x",
    }
    batch = [
        {"eventType": "Pageview", "eventId": "e1", **common},
        {"eventType": "Pageview", **{**common, "timestamp": "yesterday"}},
        {"eventType": "PagePing", "eventId": "e2", "engagedMs": 15000, **common},
        {
            "eventType": "Custom",
            "eventId": "e3",
            "name": "signup",
            "props": {"plan": "pro"},
            **common,
        },
        {"eventType": "Teleport", **common},
    ]
    response = post(f"{collector.url}/v1/events", batch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 3
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "timestamp"),
        (4, "eventType"),
    ]
    assert "Expected `int`, got `str`" in body["rejected"][0]["error"]
    topics = collector.settings.topics
    assert [e["eventId"] for _, e in read_topic(collector.settings, topics.web_events)] == ["e1"]
    ((_, ping),) = read_topic(collector.settings, topics.web_pings)
    assert ping["engagedMs"] == 15000
    ((_, custom),) = read_topic(collector.settings, topics.web_custom)
    assert (custom["name"], custom["props"]) == ("signup", {"plan": "pro"})


def test_newline_delimited_batch(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector()
    lines = [json.dumps(seed_payload(eventId=f"n{i}")) for i in range(5)]
    response = post(
        f"{collector.url}/v1/events",
        "\n".join(lines).encode(),
        headers={"content-type": "application/x-ndjson"},
    )
    assert response.json() == {"accepted": 5, "rejected": []}
    got = sorted(
        e["eventId"]
        for _, e in read_topic(collector.settings, collector.settings.topics.web_events)
    )
    assert got == [f"n{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ({"uiud": None}, {}, 422, "uiud"),
        ({"drop": "uiud"}, {}, 422, "missing required field `uiud`"),
        ({"timestamp": "soon"}, {}, 422, "Expected `int`, got `str`"),
        ({"landingPage": 7}, {}, 422, "landingPage"),
        (b'{"timestamp": 1,', {}, 400, "not valid JSON"),
        (b"", {}, 400, "empty body"),
        (b"x" * 2_000_000, {}, 413, "over the limit"),
        ({}, {"origin": "https://evil.example"}, 403, "origin https://evil.example is not allowed"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_produced(
    start_collector: Callable[..., RunningCollector],
    body: Any,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    collector = start_collector(allowed_origins=["https://shop.example.com"])
    if isinstance(body, dict):
        payload = seed_payload()
        if "drop" in body:
            del payload[body["drop"]]
        else:
            payload.update(body)
        body = payload
    response = post(f"{collector.url}/api/webeventspub", body, headers=headers)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert read_topic(collector.settings, collector.settings.topics.web_events) == []


def test_field_named_for_a_wrong_type(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector()
    response = post(f"{collector.url}/api/webeventspub", seed_payload(timestamp="soon"))
    assert response.json()["field"] == "timestamp"


def test_cors_preflight_allowed_and_refused(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector(allowed_origins=["https://shop.example.com"])
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    ok = httpx.options(
        f"{collector.url}/v1/events", headers={"origin": "https://shop.example.com", **preflight}
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://shop.example.com"
    refused = httpx.options(
        f"{collector.url}/v1/events", headers={"origin": "https://evil.example", **preflight}
    )
    assert refused.status_code == 403
    assert "not allowed" in refused.json()["error"]


def test_write_keys(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector(write_keys={"shop": "k-shop", "blog": "k-blog"})
    url = f"{collector.url}/api/webeventspub"
    missing = post(url, seed_payload())
    assert (missing.status_code, missing.json()["field"]) == (401, "key")
    assert "missing write key" in missing.json()["error"]
    wrong = post(url, seed_payload(), params={"key": "nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unknown write key")
    assert read_topic(collector.settings, collector.settings.topics.web_events) == []
    assert post(url, seed_payload(), params={"key": "k-blog"}).status_code == 200
    assert post(url, seed_payload(), headers={"x-clickstream-key": "k-shop"}).status_code == 200
    sites = sorted(
        e["site"] for _, e in read_topic(collector.settings, collector.settings.topics.web_events)
    )
    assert sites == ["blog", "shop"]


USER_AGENTS = {
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl": "curl/8.5.0",
    "headless chrome": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/131.0.0.0 Safari/537.36"
    ),
    "chrome": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
    "safari ios": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
    ),
}
BOT_REASONS = {
    "googlebot": "crawler: Googlebot\\/",
    "curl": "crawler: ^curl",
    "headless chrome": "headless browser: HeadlessChrome",
    "chrome": None,
    "safari ios": None,
}


def test_bots_are_labelled_with_their_reason_and_humans_never(
    start_collector: Callable[..., RunningCollector], tmp_path: Path
) -> None:
    """Real user agents: each bot gets its reason, a human's browser none; an address in a
    data-centre network makes a human's browser a bot too (a script on a cloud machine)."""
    networks = tmp_path / "datacenters.txt"
    networks.write_text("# clouds\n34.64.0.0/10\n2600:1900::/28  # another\n\n")
    collector = start_collector(
        ip_mode="drop",
        datacenter_networks=networks,
        trust_forwarded_for=True,
        trusted_proxies=["127.0.0.1"],
    )
    for name, agent in USER_AGENTS.items():
        post(
            f"{collector.url}/api/webeventspub",
            seed_payload(uiud=name),
            headers={"user-agent": agent, "x-forwarded-for": "203.0.113.9"},
        )
    post(
        f"{collector.url}/api/webeventspub",
        seed_payload(uiud="cloud"),
        headers={"user-agent": USER_AGENTS["chrome"], "x-forwarded-for": "34.80.1.2"},
    )
    post(
        f"{collector.url}/api/webeventspub", seed_payload(uiud="nobody"), headers={"user-agent": ""}
    )
    events = {
        e["uiud"]: e
        for _, e in read_topic(collector.settings, collector.settings.topics.web_events)
    }
    for name, reason in BOT_REASONS.items():
        assert (events[name]["bot"], events[name]["botReason"]) == (reason is not None, reason), (
            name
        )
    assert events["chrome"]["device"] == "desktop"
    assert events["safari ios"]["device"] == "mobile"
    assert events["googlebot"]["device"] == "bot"
    assert (events["cloud"]["bot"], events["cloud"]["botReason"]) == (
        True,
        "datacenter network: 34.64.0.0/10",
    )
    assert (events["nobody"]["bot"], events["nobody"]["botReason"]) == (True, "no user agent")
    assert all(e["ip"] is None for e in events.values())  # looked up before it was dropped


def test_a_bad_datacenter_file_is_one_clear_error(tmp_path: Path) -> None:
    from clickstream.collector.enrich import DatacenterNetworks
    from clickstream.errors import ConfigError

    bad = tmp_path / "bad.txt"
    bad.write_text("10.0.0.0/8\nnot-a-network\n")
    with pytest.raises(ConfigError, match=r"bad.txt line 2: 'not-a-network' is not a network"):
        DatacenterNetworks.from_file(bad)
    nested = DatacenterNetworks.from_file(_write(tmp_path / "n.txt", "10.0.0.0/8\n10.1.0.0/16\n"))
    assert nested.reason("10.1.2.3") == "datacenter network: 10.0.0.0/8"
    assert nested.reason("11.0.0.1") is None
    assert nested.reason("::1") is None


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_batch_limit(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector(max_batch_events=3)
    response = post(f"{collector.url}/v1/events", [seed_payload() for _ in range(4)])
    assert response.status_code == 413
    assert "batch of 4 events is over the limit of 3" in response.json()["error"]


def test_tracker_health_metrics_and_openapi(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector()
    script = httpx.get(f"{collector.url}/clickstream.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("application/javascript")
    assert "sessionId" in script.text
    assert httpx.get(f"{collector.url}/healthz").json() == {"status": "ok", "kafka": "up"}
    post(f"{collector.url}/api/webeventspub", seed_payload())
    metrics = httpx.get(f"{collector.url}/metrics").text
    topic = collector.settings.topics.web_events
    assert f'clickstream_collector_events_accepted_total{{topic="{topic}"}} 1.0' in metrics
    spec = httpx.get(f"{collector.url}/openapi.json").json()
    assert {"/api/webeventspub", "/v1/events"} <= set(spec["paths"])
    assert "Pageview" in spec["components"]["schemas"]


def test_country_of_the_client_address_before_it_is_anonymised(
    start_collector: Callable[..., RunningCollector], tmp_path: Path
) -> None:
    """geoip2fast's own data by default (offline); a MaxMind database when one is configured
    (here one written for the test, which places 81.2.69.0/24 in France: read, not guessed)."""
    addresses = {"gb": "81.2.69.142", "us": "8.8.8.8", "private": "10.0.0.1", "doc": "203.0.113.9"}

    def countries(collector: RunningCollector) -> dict[str, Any]:
        for name, address in addresses.items():
            post(
                f"{collector.url}/api/webeventspub",
                seed_payload(uiud=name),
                headers={"x-forwarded-for": address, "user-agent": USER_AGENTS["chrome"]},
            )
        topic = collector.settings.topics.web_events
        found = {e["uiud"]: e for _, e in read_topic(collector.settings, topic)}
        assert all(e["ip"] != addresses[n] for n, e in found.items())  # anonymised after
        return {name: event["country"] for name, event in found.items()}

    proxied = {"trust_forwarded_for": True, "trusted_proxies": ["127.0.0.1"]}
    assert countries(start_collector(**proxied)) == {
        "gb": "GB",
        "us": "US",
        "private": None,
        "doc": None,
    }

    from mmdb_writer import MMDBWriter
    from netaddr import IPSet  # type: ignore[import-untyped]

    writer = MMDBWriter(
        ip_version=6, database_type="GeoLite2-Country", languages=["en"], ipv4_compatible=True
    )
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "FR"}})
    database = tmp_path / "countries.mmdb"
    writer.to_db_file(str(database))
    assert countries(start_collector(geoip_database=database, **proxied)) == {
        "gb": "FR",
        "us": None,
        "private": None,
        "doc": None,
    }


def test_an_unreadable_geoip_database_is_one_clear_error(tmp_path: Path) -> None:
    from clickstream.collector.enrich import Countries
    from clickstream.errors import ConfigError

    with pytest.raises(ConfigError, match=r"collector.geoip_database: cannot read .*none.mmdb"):
        Countries(tmp_path / "none.mmdb")
