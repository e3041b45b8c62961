"""The Bookstore panel in real headless Chromium: top books by opens and by purchases, with
conversion, from history and then live."""

from __future__ import annotations

from collections.abc import Callable

from clickstream.settings import Settings
from tests.dashboard.conftest import RunningDashboard, now_s, produce_rows, windows
from tests.dashboard.test_page import Page, open_page  # noqa: F401 (the fixture)

MINUTE = 60_000


def test_bookstore_panel_ranks_books_with_conversion_and_updates_live(
    results_settings: Settings,
    start_dashboard: Callable[..., RunningDashboard],
    open_page: Callable[[str], Page],  # noqa: F811
) -> None:
    start = now_s() // MINUTE * MINUTE - 2 * MINUTE
    opens = [{"b-0001": 10, "b-0002": 40, "b-0003": 5}, {"b-0001": 10, "b-0002": 20}]
    buys = [{"b-0001": 3, "b-0003": 2}, {"b-0001": 1, "b-0002": 3}]
    produce_rows(
        results_settings,
        [
            *windows("bookstore.opens", start, opens, width_ms=MINUTE),
            *windows("bookstore.purchases", start, buys, width_ms=MINUTE),
        ],
    )
    dashboard = start_dashboard(results_settings)
    page = open_page(dashboard.url)
    page.wait("document.body.dataset.connection === 'live'")
    page.wait("document.querySelectorAll('#panel-bookstore .by-opens li').length === 3")

    def texts(which: str, part: str) -> list[str]:
        return list(page.page.locator(f"#panel-bookstore .{which} .{part}").all_inner_texts())

    assert texts("by-opens", "label") == ["b-0002", "b-0001", "b-0003"]
    assert texts("by-opens", "value") == [
        "60 · 3 bought · conv 5.0%",
        "20 · 4 bought · conv 20.0%",
        "5 · 2 bought · conv 40.0%",
    ]
    assert texts("by-purchases", "label") == ["b-0001", "b-0002", "b-0003"]
    assert texts("by-purchases", "value")[0] == "4 · 20 opens · conv 20.0%"
    assert page.page.locator("#panel-bookstore .empty").is_hidden()

    # Live: a purchase-only update (a newer count for the same window) redraws the panel.
    produce_rows(
        results_settings,
        windows("bookstore.purchases", start + MINUTE, [{"b-0003": 9}], width_ms=MINUTE),
    )
    page.wait(
        "document.querySelector('#panel-bookstore .by-purchases .label') &&"
        " document.querySelector('#panel-bookstore .by-purchases .label').textContent === 'b-0003'"
    )
    assert texts("by-purchases", "value")[0] == "11 · 5 opens · conv 220.0%"
    assert page.errors == []
    assert page.outside == []
