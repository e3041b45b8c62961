"""Send simulated web traffic to a collector over HTTP, at a rate, with bounded retries.

:func:`simulate_web` POSTs the requests of a :class:`~clickstream.simulators.web.
WebTrafficGenerator` to ``{collector_url}/v1/events``, each visitor's with its user agent and
its own public address as ``X-Forwarded-For`` (believed only by a collector that trusts the
sender as its proxy), on kept-alive connections (:mod:`clickstream.simulators.poster`: plain
HTTP/1.1 for ``http://``, a tenth of httpx's CPU a request); :func:`run_web_simulation` wraps it
with a progress bar for the CLI.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import httpx
import msgspec

from clickstream.errors import ConfigError
from clickstream.simulators.poster import Poster, poster
from clickstream.simulators.web import (
    MAX_ATTEMPTS,
    MAX_RETRY_AFTER_S,
    NOMINAL_RATE,
    WebSimulationStats,
    WebTrafficGenerator,
    _check,
    visitor_address,
)


async def simulate_web(
    collector_url: str,
    *,
    rate: float = 20.0,
    count: int | None = None,
    duration_s: float | None = None,
    seed: int | None = None,
    write_key: str | None = None,
    concurrency: int = 8,
    time_scale: float = 1.0,
    late_share: float = 0.02,
    endless: bool = False,
    progress: Callable[[WebSimulationStats], None] | None = None,
) -> WebSimulationStats:
    """POST simulated traffic to ``{collector_url}/v1/events`` until ``count`` events are sent or
    ``duration_s`` seconds have passed (never with only ``endless``). A 503 is retried after its
    ``Retry-After`` (5 attempts, same events); ``progress`` gets the live stats after each batch."""
    _check(math.isfinite(rate) and rate >= 0, "rate must be >= 0 events per second", rate)
    _check(count is None or count >= 1, "count must be >= 1 event", count)
    _check(duration_s is None or duration_s > 0, "duration_s must be > 0 seconds", duration_s)
    _check(concurrency >= 1, "concurrency must be >= 1", concurrency)
    if count is None and duration_s is None and not endless:
        raise ConfigError("give count or duration_s to bound the simulation, or endless=True")
    try:
        url = httpx.URL(collector_url.rstrip("/") + "/v1/events")
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"collector_url must be an http(s) URL, got {collector_url!r}")
    generator = WebTrafficGenerator(seed, time_scale, late_share, rate=rate or NOMINAL_RATE)
    stream = generator.batches()  # builds the site (Faker) before the clock starts
    stats, sessions, visitors = WebSimulationStats(), set[str](), set[str]()
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + duration_s if duration_s is not None else math.inf
    slots, tasks = asyncio.Semaphore(concurrency), set[asyncio.Task[None]]()
    last_of: dict[str, asyncio.Task[None]] = {}  # each visitor's newest request

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()
        if last_of.get(task.get_name()) is task:
            del last_of[task.get_name()]
        if progress is not None:
            progress(stats)

    if write_key:  # the same on every request
        url = url.copy_merge_params({"key": write_key})
    client = poster(url, concurrency, timeout_s=10.0)
    try:
        for agent, batch in stream:
            events = batch if count is None else batch[: count - stats.sent]
            if rate and start + stats.sent / rate < loop.time() - 1.0:  # behind: no burst
                start = loop.time() - 1.0 - stats.sent / rate
            due = start + stats.sent / rate if rate else loop.time()
            if not events or due >= deadline:
                break
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            await slots.acquire()  # bounded: each request has a timeout
            if loop.time() >= deadline:
                slots.release()
                break
            stats.sent += len(events)
            sessions.update(event["sessionId"] for event in events)
            visitors.update(event["uiud"] for event in events)
            stats.sessions, stats.visitors = len(sessions), len(visitors)
            uiud = events[0]["uiud"]
            after = last_of.get(uiud)  # a visitor's requests go one after the other
            post = _post(client, url, agent, events, stats, after)
            task = last_of[uiud] = loop.create_task(post, name=uiud)
            tasks.add(task)
            task.add_done_callback(finished)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
    return stats


async def _post(
    client: Poster,
    url: httpx.URL,
    agent: str,
    events: list[dict[str, Any]],
    stats: WebSimulationStats,
    after: asyncio.Task[None] | None,
) -> None:
    """One batch, once ``after`` is done; a 503 is retried after ``Retry-After``, same events."""
    if after is not None:
        await asyncio.wait([after])  # bounded: that request has a timeout
    n, body = len(events), msgspec.json.encode(events)
    headers = {
        "content-type": "application/json",
        "user-agent": agent,
        "x-forwarded-for": visitor_address(events[0]["uiud"]),
    }
    for attempt in range(1, MAX_ATTEMPTS + 1):
        stats.requests += 1
        try:
            response = await client.post(url, body, headers)
        except httpx.HTTPError as exc:  # not sent, or no answer: not retried
            stats.failed += n
            stats.first_error = stats.first_error or f"{type(exc).__name__}: {exc} ({url})"
            return
        status = response.status_code
        if status == 503 and attempt < MAX_ATTEMPTS:
            await asyncio.sleep(_retry_after(response.headers.get("retry-after")))
            continue
        accepted = _accepted(response.content, n) if response.is_success else 0
        stats.accepted += accepted
        stats.rejected += n - accepted if status < 500 else 0
        stats.failed += n if status >= 500 else 0
        if accepted < n:
            stats.first_error = stats.first_error or f"HTTP {status}: {response.text[:500]}"
        return


def _retry_after(value: str | None) -> float:
    """Seconds to wait, 0-30 (1 when missing or an HTTP date)."""
    try:
        seconds = float(value or 1.0)
    except ValueError:
        return 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else 1.0


def _accepted(content: bytes, n: int) -> int:
    """``accepted`` of the collector's answer (all n when the answer does not say)."""
    try:
        value = msgspec.json.decode(content).get("accepted")
    except (msgspec.DecodeError, AttributeError):
        return n
    return min(value, n) if isinstance(value, int) and value >= 0 else n


def run_web_simulation(collector_url: str, **kwargs: Any) -> WebSimulationStats:
    """:func:`simulate_web` with a progress bar on stderr; Ctrl-C returns the stats so far."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    latest: list[WebSimulationStats] = []
    columns = (TextColumn("[bold]web traffic"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("events", total=kwargs.get("count"))

        def report(stats: WebSimulationStats) -> None:
            latest[:] = [stats]
            bar.update(task, completed=stats.accepted + stats.rejected + stats.failed)

        try:
            return asyncio.run(simulate_web(collector_url, progress=report, **kwargs))
        except KeyboardInterrupt:
            if latest:
                return latest[0]
            raise
