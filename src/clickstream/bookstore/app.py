"""The bookstore web app (``clickstream bookstore``): the catalogue, a page per book, and Buy.

Description opens and closes are the visitor's behaviour: the page's tracker (the collector's
``clickstream.js``) sends them as custom events, and the collector puts them on
``topics.bookstore``. A purchase is business data: the server records it, straight to Kafka,
when the Buy form reaches it, and answers only once Kafka acknowledged it (503 otherwise), so
no purchase depends on a browser delivering it.
"""

from __future__ import annotations

import html
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from clickstream.bookstore.catalogue import Book, catalogue
from clickstream.errors import KafkaUnavailableError
from clickstream.events.bookstore import encode, new_event
from clickstream.kafka.clients import EventProducer, make_producer
from clickstream.settings import Settings

USER_COOKIE = "bookstore_user"

STYLE = """body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}
a{color:#1a5fb4}li{margin:.3rem 0}.price{font-weight:600}#description[hidden]{display:none}
button{font-size:1rem;padding:.4rem 1rem;margin:.5rem .5rem .5rem 0}"""


def _page(title: str, body: str, tracker: str = "") -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style>{tracker}</head><body>{body}</body></html>"
    )


def create_app(settings: Settings) -> FastAPI:
    section = settings.bookstore
    books = catalogue(section.books, section.catalogue_seed)
    by_id = {book.book_id: book for book in books}
    collector = (
        section.collector_url or f"http://{settings.collector.host}:{settings.collector.port}"
    ).rstrip("/")
    tracker = f'<script src="{html.escape(collector)}/clickstream.js" data-flush-ms="200"></script>'
    producer: list[EventProducer] = []

    def record_purchase(user_id: str, book: Book) -> str:
        if not producer:
            producer.append(make_producer(settings, **{"linger.ms": 0}))
        event = new_event("purchase", user_id, book.book_id, int(time.time() * 1000))
        p = producer[0]
        answer: list[str | None] = []
        p.produce(
            settings.topics.bookstore,
            encode(event),
            user_id.encode(),
            on_delivery=lambda err, _msg: answer.append(err.str() if err else None),
        )
        deadline = time.monotonic() + settings.kafka.timeout_s
        while not answer and time.monotonic() < deadline:
            p.poll(0.05)  # serves this record's delivery report (and others')
        if not answer or answer[0] is not None:
            raise KafkaUnavailableError(answer[0] if answer else "Kafka did not acknowledge")
        return event.event_id

    app = FastAPI(title="clickstream bookstore", docs_url=None, redoc_url=None)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        items = "".join(
            f'<li><a href="/books/{b.book_id}">{html.escape(b.title)}</a> by '
            f"{html.escape(b.author)} <span class=price>${b.price}</span></li>"
            for b in books
        )
        return _page("Bookstore", f"<h1>Bookstore</h1><ul>{items}</ul>", tracker)

    @app.get("/books/{book_id}", response_class=HTMLResponse)
    def book_page(book_id: str) -> str:
        book = by_id.get(book_id)
        if book is None:
            raise HTTPException(404, f"no book {book_id!r} in the catalogue")
        bid = html.escape(book.book_id)
        body = f"""<p><a href="/">All books</a></p>
<h1>{html.escape(book.title)}</h1><p>by {html.escape(book.author)}</p>
<p class=price>${book.price}</p>
<button id=toggle type=button aria-expanded=false>Show description</button>
<div id=description hidden><p>{html.escape(book.description)}</p></div>
<form id=buy method=post action="/books/{bid}/buy">
<input type=hidden name=user_id id=user_id value=""><button id=buy-button>Buy</button></form>
<script>
const toggle = document.getElementById("toggle");
const text = document.getElementById("description");
const cs = () => window.clickstream;
toggle.addEventListener("click", () => {{
  const opening = text.hidden;
  text.hidden = !opening;
  toggle.textContent = opening ? "Hide description" : "Show description";
  toggle.setAttribute("aria-expanded", String(opening));
  if (cs()) cs().track(opening ? "description_open" : "description_close", {{book_id: "{bid}"}});
}});
document.getElementById("buy").addEventListener("submit", () => {{
  if (cs() && cs().visitorId()) document.getElementById("user_id").value = cs().visitorId();
}});
</script>"""
        return _page(book.title, body, tracker)

    @app.post("/books/{book_id}/buy", response_class=HTMLResponse)
    async def buy(book_id: str, request: Request) -> Any:
        book = by_id.get(book_id)
        if book is None:
            raise HTTPException(404, f"no book {book_id!r} in the catalogue")
        body = await request.body()
        if len(body) > 4096:
            raise HTTPException(413, "the form is larger than 4096 bytes")
        form = parse_qs(body.decode("utf-8", "replace"))
        user_id = (form.get("user_id") or [""])[0]
        user = user_id.strip()[:64] or f"anon-{uuid.uuid4().hex[:12]}"
        try:
            order = await run_in_threadpool(record_purchase, user, book)
        except KafkaUnavailableError as exc:
            raise HTTPException(503, f"the purchase was not recorded, try again: {exc}") from None
        thanks = (
            f"<h1>Thank you!</h1><p>You bought <b>{html.escape(book.title)}</b>.</p>"
            f'<p>Order <code id=order>{order}</code></p><p><a href="/">More books</a></p>'
        )
        return HTMLResponse(_page("Thank you", thanks, tracker))

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    return app
