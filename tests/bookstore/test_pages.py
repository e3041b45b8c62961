"""End to end: clicks in headless Chromium on the bookstore's pages, and a purchase, become rows
of the seed's table in Cassandra. Description events go page -> tracker -> collector -> Kafka;
the purchase goes server -> Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clickstream.bookstore.app import create_app
from clickstream.broker.embedded import free_port
from clickstream.jobs import builder
from clickstream.settings import Settings
from clickstream.streaming.runner import start_job
from tests.bookstore.conftest import bookstore_settings, cassandra_settings
from tests.bookstore.test_cassandra import query
from tests.browser.conftest import browser  # noqa: F401 (the fixture)
from tests.cassandra_node import CassandraNode
from tests.collector.conftest import serve
from tests.conftest import read_topic, serve_in_thread, wait_for

pytestmark = pytest.mark.slow


def test_clicks_and_a_purchase_become_rows_in_cassandra(
    spark: Any,
    settings: Settings,
    tmp_path: Path,
    cassandra: CassandraNode,
    browser: Any,  # noqa: F811
) -> None:
    c = cassandra_settings(cassandra)
    s = bookstore_settings(settings, tmp_path, cassandra=c)
    collector = serve(s)
    s = s.model_copy(
        update={"bookstore": s.bookstore.model_copy(update={"collector_url": collector.url})}
    )
    port = free_port()
    server, thread = serve_in_thread(create_app(s), port, "bookstore")
    try:
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.click("a[href='/books/b-0003']")
        page.wait_for_function("window.clickstream && window.clickstream.visitorId()")
        visitor = page.evaluate("window.clickstream.visitorId()")
        page.click("#toggle")  # open
        assert page.is_visible("#description")
        page.click("#toggle")  # close
        assert not page.is_visible("#description")
        page.evaluate("window.clickstream.flush()")
        page.click("#buy-button")
        order = page.text_content("#order")
        page.close()

        def arrived() -> list[Any]:
            found = read_topic(s, s.topics.bookstore)
            return found if len(found) >= 3 else []

        wait_for(arrived, timeout=20)
    finally:
        server.should_exit = True
        thread.join(10)
        collector.stop()

    start_job(spark, s, builder("bookstore"), available_now=True).await_all(300)
    rows = query(cassandra, f"SELECT * FROM {c.keyspace}.events")
    got = sorted((r.event_type, r.user_id, r.book_id) for r in rows)
    assert got == [
        ("description_close", visitor, "b-0003"),
        ("description_open", visitor, "b-0003"),
        ("purchase", visitor, "b-0003"),
    ]
    purchase = next(r for r in rows if r.event_type == "purchase")
    assert str(purchase.event_id) == order
    opened = next(r for r in rows if r.event_type == "description_open")
    closed = next(r for r in rows if r.event_type == "description_close")
    assert opened.event_time <= closed.event_time <= purchase.event_time
