"""The dashboard's token (sign-in cookie or bearer) and its WebSocket Origin allowlist, against a
real server reading the test broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from clickstream.errors import ConfigError
from clickstream.settings import Settings, load_settings
from tests.dashboard.conftest import RunningDashboard, with_results_topic

Start = Callable[..., RunningDashboard]
TOKEN = "kWq3-test-token-4f0e9c1b7a2d"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def guarded(settings: Settings, **dashboard: Any) -> Settings:
    return with_results_topic(settings, settings.topics.results, **dashboard)


def ws_url(dashboard: RunningDashboard) -> str:
    return dashboard.url.replace("http://", "ws://") + "/ws"


def refused(dashboard: RunningDashboard, **options: Any) -> int:
    """The HTTP status a WebSocket handshake got instead of the upgrade."""
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(dashboard), open_timeout=5, **options)
    return caught.value.response.status_code


def history_over_ws(dashboard: RunningDashboard, **options: Any) -> dict[str, Any]:
    with connect(ws_url(dashboard), open_timeout=5, **options) as ws:
        first: dict[str, Any] = json.loads(ws.recv(timeout=5))
    return first


def test_without_the_token_only_healthz_and_static_files_answer(
    results_settings: Settings, start_dashboard: Start
) -> None:
    dashboard = start_dashboard(guarded(results_settings, token=SecretStr(TOKEN)))
    url = dashboard.url

    page = httpx.get(url + "/", headers=HTML)
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["www-authenticate"].startswith("Bearer")
    assert '<form method="post" action="./">' in page.text
    assert "CLICKSTREAM_DASHBOARD_TOKEN" in page.text
    assert "set-cookie" not in page.headers
    for path in ("/api/history", "/api/status"):
        answer = httpx.get(url + path)
        assert answer.status_code == 401, path
        assert "Authorization: Bearer" in answer.json()["error"]
    metrics = httpx.get(url + "/metrics")
    assert metrics.status_code == 401
    assert metrics.headers["www-authenticate"].startswith("Bearer")
    assert "clickstream_dashboard" not in metrics.text
    assert refused(dashboard) == 401

    # A wrong token is no better than none.
    wrong = {"Authorization": "Bearer " + TOKEN[:-1]}
    assert httpx.get(url + "/api/status", headers=wrong).status_code == 401
    assert httpx.get(url + "/metrics", headers=wrong).status_code == 401
    assert httpx.get(url + "/metrics", headers={"Authorization": TOKEN}).status_code == 401
    assert refused(dashboard, additional_headers=wrong) == 401

    # Probes and the package's own files stay open.
    assert httpx.get(url + "/healthz").status_code in (200, 503)
    assert httpx.get(url + "/static/dashboard.js").status_code == 200

    # Scripts and Prometheus: Authorization: Bearer.
    assert httpx.get(url + "/api/status", headers=BEARER).json()["kafka"] in ("up", "connecting")
    assert httpx.get(url + "/api/history", headers=BEARER).status_code == 200
    scraped = httpx.get(url + "/metrics", headers={"Authorization": f"bearer  {TOKEN}"})
    assert scraped.status_code == 200
    assert "clickstream_dashboard_connections" in scraped.text
    assert httpx.get(url + "/", headers=BEARER).status_code == 200
    assert history_over_ws(dashboard, additional_headers=BEARER)["type"] == "history"


def test_the_page_takes_the_token_once_and_keeps_an_httponly_cookie(
    results_settings: Settings, start_dashboard: Start
) -> None:
    dashboard = start_dashboard(guarded(results_settings, token=SecretStr(TOKEN)))
    url = dashboard.url

    signed_in = httpx.get(url + "/", params={"token": TOKEN}, headers=HTML)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "./"  # the token leaves the address bar
    cookie = signed_in.headers["set-cookie"]
    name, _, rest = cookie.partition("=")
    value = rest.split(";")[0]
    flags = [flag.strip() for flag in rest.split(";")[1:]]
    assert name == "clickstream_dashboard"
    assert "HttpOnly" in flags
    assert "SameSite=Strict" in flags
    assert "Secure" not in flags  # plain http on loopback: a Secure cookie would not be sent
    assert TOKEN not in value  # an HMAC of the token, not the token

    jar = {"Cookie": f"clickstream_dashboard={value}"}
    page = httpx.get(url + "/", headers={**HTML, **jar})
    assert page.status_code == 200
    assert "static/dashboard.js" in page.text
    assert httpx.get(url + "/api/status", headers=jar).status_code == 200
    assert httpx.get(url + "/metrics", headers=jar).status_code == 200
    assert history_over_ws(dashboard, additional_headers=jar)["type"] == "history"
    # Other applications on 127.0.0.1 set cookies too, some that strict parsers stop at.
    crowded = {"Cookie": f'_xsrf=2|a|b; bad"name=1; clickstream_dashboard={value}; x=y'}
    assert httpx.get(url + "/api/status", headers=crowded).status_code == 200
    assert (
        httpx.get(url + "/api/status", headers={"Cookie": "clickstream_dashboard=0f"}).status_code
        == 401
    )

    # A wrong token: the sign-in page says so, and no cookie.
    wrong = httpx.get(url + "/", params={"token": "guess"}, headers=HTML)
    assert wrong.status_code == 401
    assert "not this dashboard" in wrong.text
    assert "set-cookie" not in wrong.headers

    # The sign-in form posts the token (it never appears in a URL).
    posted = httpx.post(url + "/", data={"token": TOKEN}, headers=HTML)
    assert posted.status_code == 303
    assert posted.headers["set-cookie"].startswith(f"clickstream_dashboard={value};")
    assert httpx.post(url + "/", data={"token": "guess"}).status_code == 401

    # Behind a TLS proxy (X-Forwarded-Proto from a trusted address), the cookie is Secure.
    proxied = httpx.get(url + "/", params={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in [flag.strip() for flag in proxied.headers["set-cookie"].split(";")]


def test_a_cookie_of_another_token_is_refused(
    results_settings: Settings, start_dashboard: Start
) -> None:
    before = start_dashboard(guarded(results_settings, token=SecretStr("an-old-token-1234")))
    old = httpx.get(before.url + "/", params={"token": "an-old-token-1234"})
    jar = {"Cookie": old.headers["set-cookie"].split(";")[0]}
    assert httpx.get(before.url + "/api/status", headers=jar).status_code == 200

    after = start_dashboard(guarded(results_settings, token=SecretStr(TOKEN)))
    assert httpx.get(after.url + "/api/status", headers=jar).status_code == 401
    assert refused(after, additional_headers=jar) == 401


def test_an_origin_allowlist_refuses_other_and_missing_origins(
    results_settings: Settings, start_dashboard: Start
) -> None:
    site = "https://dash.example.com"
    dashboard = start_dashboard(guarded(results_settings, allowed_origins=[site]))
    assert refused(dashboard) == 403  # no Origin at all
    assert refused(dashboard, origin=Origin("https://evil.example")) == 403
    assert refused(dashboard, origin=Origin("http://dash.example.com")) == 403
    # Its own address is not enough once a list is set: a page on a rebound name
    # (DNS rebinding) would look same-origin.
    assert refused(dashboard, origin=Origin(dashboard.url)) == 403
    assert history_over_ws(dashboard, origin=Origin(site))["type"] == "history"
    # The allowlist guards /ws only; plain HTTP has no token here.
    assert httpx.get(dashboard.url + "/api/status").status_code == 200


def test_origin_and_token_are_both_needed_when_both_are_set(
    results_settings: Settings, start_dashboard: Start
) -> None:
    site = "https://dash.example.com"
    settings = guarded(results_settings, token=SecretStr(TOKEN), allowed_origins=[site])
    dashboard = start_dashboard(settings)
    assert refused(dashboard, origin=Origin(site)) == 401
    assert (
        refused(dashboard, origin=Origin("https://evil.example"), additional_headers=BEARER) == 403
    )
    first = history_over_ws(dashboard, origin=Origin(site), additional_headers=BEARER)
    assert first["type"] == "history"


def test_token_and_origins_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "CLICKSTREAM_DASHBOARD_TOKEN": TOKEN,
            "CLICKSTREAM_DASHBOARD_ALLOWED_ORIGINS": "https://Dash.example.com/, http://10.0.0.5:8050",
        }
    )
    dashboard = settings.dashboard
    assert dashboard.token is not None
    assert dashboard.token.get_secret_value() == TOKEN
    assert TOKEN not in repr(settings)
    assert dashboard.allowed_origins == ["https://dash.example.com", "http://10.0.0.5:8050"]
    assert load_settings(environ={"CLICKSTREAM_DASHBOARD_TOKEN": ""}).dashboard.token is None
    with pytest.raises(ConfigError, match=r"CLICKSTREAM_DASHBOARD_ALLOWED_ORIGINS.*scheme://host"):
        load_settings(environ={"CLICKSTREAM_DASHBOARD_ALLOWED_ORIGINS": "dash.example.com"})


def test_clickstream_status_sends_the_token(
    results_settings: Settings, start_dashboard: Start
) -> None:
    from clickstream.status import gather

    dashboard = start_dashboard(guarded(results_settings, token=SecretStr(TOKEN)))
    port = int(dashboard.url.rsplit(":", 1)[1])
    board = dashboard.settings.dashboard.model_copy(update={"port": port})
    report = gather(dashboard.settings.model_copy(update={"dashboard": board}), None)
    assert report.dashboard == f"up (http://127.0.0.1:{port})"
    assert report.dashboard_connections == 0
    # Without the token the same dashboard refuses the probe.
    board = board.model_copy(update={"token": None})
    report = gather(dashboard.settings.model_copy(update={"dashboard": board}), None)
    assert report.dashboard == f"unhealthy (http://127.0.0.1:{port} answered 401)"
