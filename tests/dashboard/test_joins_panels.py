"""The two panels of the stream-joins scenario in real headless Chromium: top users by events
and events by type, fed by the joins job's result rows, updating live."""

from __future__ import annotations

from collections.abc import Callable

from clickstream.events.results import WindowCount
from clickstream.jobs.joins import EVENT_TYPES, USER_EVENTS, user_key
from clickstream.settings import Settings
from tests.conftest import wait_for
from tests.dashboard.conftest import RunningDashboard, now_s, produce_rows
from tests.dashboard.test_page import Page, open_page  # noqa: F401


def total(metric: str, key: str, count: int) -> WindowCount:
    return WindowCount(metric=metric, window_start=0, window_end=now_s(), key=key, count=count)


def test_top_users_and_event_types_update_live(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],  # noqa: F811
) -> None:
    produce_rows(
        results_settings,
        [
            total(USER_EVENTS, user_key("1", "Анна Петрова", "anna@example.org"), 7),
            total(USER_EVENTS, user_key("2", "Иван Сидоров", "ivan@example.org"), 3),
            total(EVENT_TYPES, "click", 4),
            total(EVENT_TYPES, "scroll", 6),
        ],
    )
    dashboard = start_dashboard(results_settings)
    wait_for(lambda: len(dashboard.get("/api/history").json()["rows"]) == 4)
    page = open_page(dashboard.url)
    page.wait("document.body.dataset.connection === 'live'")
    users = page.page.locator("#panel-join-users .bars .label")
    page.wait("document.querySelectorAll('#panel-join-users .bars li').length === 2")
    assert [" ".join(t.split()) for t in users.all_inner_texts()] == [
        "1 Анна Петрова anna@example.org",
        "2 Иван Сидоров ivan@example.org",
    ]
    types = page.page.locator("#panel-join-types .bars .label")
    assert types.all_inner_texts() == ["scroll", "click"]

    # A newer total replaces the old one: Ivan overtakes Anna, click overtakes scroll.
    produce_rows(
        results_settings,
        [
            total(USER_EVENTS, user_key("2", "Иван Сидоров", "ivan@example.org"), 12),
            total(EVENT_TYPES, "click", 9),
        ],
    )
    page.wait("document.querySelector('#panel-join-types .bars .label').textContent === 'click'")
    assert page.page.locator("#panel-join-users .bars .value").all_inner_texts() == ["12", "7"]
    assert page.page.locator("#panel-join-users .empty").is_hidden()
