"""Signing in to a dashboard with a token, in real headless Chromium."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from clickstream.settings import Settings
from tests.browser.conftest import page_server  # noqa: F401 (fixture)
from tests.dashboard.conftest import (
    RunningDashboard,
    now_s,
    produce_rows,
    windows,
    with_results_topic,
)
from tests.dashboard.test_page import Page, open_page  # noqa: F401 (fixture)

TOKEN = "kWq3-test-token-4f0e9c1b7a2d"
Open = Callable[..., Page]


def with_token(settings: Settings, token: str = TOKEN) -> Settings:
    return with_results_topic(settings, settings.topics.results, token=SecretStr(token))


def other_errors(page: Page) -> list[str]:
    """Console errors, less Chromium's note of each 401 it loaded (the sign-in page)."""
    return [e for e in page.errors if "status of 401" not in e and "WebSocket connection" not in e]


def cookie(page: Page) -> dict[str, Any]:
    (found,) = page.context.cookies()
    return dict(found)


def test_the_sign_in_form_opens_the_dashboard_and_keeps_the_token_out_of_scripts(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Open,  # noqa: F811
) -> None:
    produce_rows(results_settings, windows("shop.gender", now_s() - 3000, [{"male": 2}] * 3))
    dashboard = start_dashboard(with_token(results_settings))

    page = open_page(dashboard.url)
    assert page.text("#sign-in-message") == "This dashboard needs its access token."
    assert page.page.evaluate("window.clickstreamDashboard") is None  # no dashboard script

    page.page.fill("input[name=token]", "a guess")
    page.page.click("button[type=submit]")
    page.page.wait_for_selector("#sign-in-message.error")
    assert page.text("#sign-in-message") == "That token is not this dashboard's."
    assert page.context.cookies() == []

    page.page.fill("input[name=token]", TOKEN)
    page.page.click("button[type=submit]")
    page.wait("document.body.dataset.connection === 'live'")
    page.wait_chart("shop.gender", "points === 3")
    assert page.page.url == dashboard.url + "/"
    jar = cookie(page)
    assert (jar["name"], jar["httpOnly"], jar["sameSite"]) == (
        "clickstream_dashboard",
        True,
        "Strict",
    )
    assert page.page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
    assert TOKEN not in jar["value"]
    assert other_errors(page) == []
    assert page.outside == []


def test_a_link_with_the_token_signs_in_and_leaves_a_clean_address(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Open,  # noqa: F811
) -> None:
    dashboard = start_dashboard(with_token(results_settings))
    page = open_page(dashboard.url, f"/?token={TOKEN}")
    page.wait("document.body.dataset.connection === 'live'")
    assert page.page.url == dashboard.url + "/"
    # The page's own links (API, metrics) work with the cookie.
    status = page.page.evaluate("fetch('api/status').then(r => r.status)")
    assert status == 200
    page.page.reload()
    page.wait("document.body.dataset.connection === 'live'")
    assert other_errors(page) == []
    # The address with the token was redirected away: it is not in the tab's history.
    page.page.go_back()
    assert page.page.url == "about:blank"


def test_a_changed_token_sends_an_open_page_back_to_the_sign_in_form(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Open,  # noqa: F811
) -> None:
    first = start_dashboard(with_token(results_settings, "the-first-token-123"))
    page = open_page(first.url, "/?token=the-first-token-123")
    page.wait("document.body.dataset.connection === 'live'")

    port = int(first.url.rsplit(":", 1)[1])
    first.stop()
    start_dashboard(with_token(results_settings), port=port)
    # It reconnects, is refused, finds the API answering 401, and reloads to the form.
    page.page.wait_for_selector("#sign-in-message", timeout=15_000)
    assert page.text("#sign-in-message") == "This dashboard needs its access token."
    page.page.fill("input[name=token]", TOKEN)
    page.page.click("button[type=submit]")
    page.wait("document.body.dataset.connection === 'live'")


def test_a_link_from_another_site_opens_the_dashboard_when_signed_in(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    browser: Any,
    page_server: Callable[[dict[str, str]], str],  # noqa: F811
) -> None:
    dashboard = start_dashboard(with_token(results_settings))
    # localhost is another site than 127.0.0.1: SameSite=Strict withholds the cookie there.
    chat = page_server({"index.html": f'<a id="go" href="{dashboard.url}/">dashboard</a>'})
    chat = chat.replace("127.0.0.1", "localhost")

    signed_in = browser.new_context()
    signed_out = browser.new_context()
    try:
        page = signed_in.new_page()
        page.goto(f"{dashboard.url}/?token={TOKEN}")
        page.goto(chat)
        page.click("#go")
        page.wait_for_selector("body[data-connection=live]")
        assert page.url == dashboard.url + "/"

        # Without the cookie the reload ends at the sign-in form (once: no loop).
        stranger = signed_out.new_page()
        asked: list[str] = []
        stranger.on(
            "request", lambda r: asked.append(r.url) if r.url.startswith(dashboard.url) else None
        )
        answers: list[Any] = []
        stranger.on(
            "response", lambda r: answers.append(r) if r.url.startswith(dashboard.url) else None
        )
        stranger.goto(chat)
        stranger.click("#go")
        stranger.wait_for_selector("#sign-in-message")
        stranger.wait_for_load_state("load")
        assert stranger.url == dashboard.url + "/"
        assert asked == [dashboard.url + "/"] * 2  # the link, then one reload
        # ... and no more: the form has nothing that could load the page again (no script, no
        # refresh in the page or its headers).
        assert stranger.locator("script, meta[http-equiv]").count() == 0
        assert "refresh" not in answers[-1].all_headers()
    finally:
        signed_in.close()
        signed_out.close()
