"""``clickstream status``: how the running parts are doing."""

from __future__ import annotations

import dataclasses
import json

import click

from clickstream.cli.base import Context, cli, pass_context
from clickstream.errors import ClickstreamError
from clickstream.settings import Settings


def _age(ms: int | None) -> str:
    """``12 s ago (10:04:05)``, or ``-``."""
    if ms is None:
        return "-"
    import time
    from datetime import UTC, datetime

    ago = max(0.0, time.time() - ms / 1000)
    moment = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    if ago < 120:
        return f"{ago:.0f} s ago ({moment})"
    if ago < 7200:
        return f"{ago / 60:.0f} min ago ({moment})"
    return f"{ago / 3600:.0f} h ago ({moment})"


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def status(ctx: Context, as_json: bool) -> None:
    """Topics, each job's lag, the newest results, the collector and dashboard, and the parts
    of a running `clickstream up` (restarts, last error)."""
    from clickstream.status import gather

    kafka: Settings | None
    try:
        kafka = ctx.client_settings()
    except ClickstreamError:
        kafka = None
    report = gather(ctx.settings, kafka)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), default=str, indent=2))
        return

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if report.kafka_error:
        console.print(f"[bold]Kafka[/]: [red]{report.kafka_error}[/]")
    else:
        topics = Table("topic", "partitions", "records", title="Kafka topics", title_justify="left")
        for topic in report.topics:
            topics.add_row(topic.name, str(topic.partitions), str(topic.records))
        console.print(topics)

    jobs = Table(
        "job", "query", "batches", "lag (records)", "last batch", title="Jobs", title_justify="left"
    )
    for query in report.queries:
        lag = "?" if query.lag is None else str(query.lag)
        ago = "-" if query.last_commit_s is None else f"{query.last_commit_s:.0f} s ago"
        jobs.add_row(query.job, query.query, str(query.batches), lag, ago)
    if not report.queries:
        jobs.add_row("-", "no job has run yet (clickstream jobs run NAME)", "", "", "")
    console.print(jobs)

    if report.warehouse_error:
        console.print(f"[bold]Warehouse[/]: {report.warehouse_error}")
    else:
        results = Table(
            "metric",
            "last window ends",
            "rows",
            title="Results in the warehouse",
            title_justify="left",
        )
        for metric, (end, rows) in report.last_windows.items():
            results.add_row(metric, end, str(rows))
        if report.sessions is not None:
            n, newest = report.sessions
            results.add_row("sessions", newest or "-", str(n))
        console.print(results)

    if report.freshness:
        fresh = Table(
            "metric",
            "newest event counted",
            "last written",
            "",
            title="Freshness (the result topic's newest records)",
            title_justify="left",
        )
        for metric, f in report.freshness.items():
            state = "[yellow]stale[/]" if f.stale else "fresh"
            fresh.add_row(metric, _age(f.newest_event_ms), _age(f.written_ms), state)
        console.print(fresh)

    console.print(f"[bold]Collector[/]: {report.collector}")
    connections = (
        f", {report.dashboard_connections} browser connection(s)"
        if report.dashboard_connections is not None
        else ""
    )
    console.print(f"[bold]Dashboard[/]: {report.dashboard}{connections}")

    if report.up is None:
        console.print("[bold]clickstream up[/]: not running on this data folder")
        return
    parts = Table(
        "part",
        "state",
        "pid",
        "restarts",
        "last exit",
        "last error",
        title=f"clickstream up (pid {report.up.pid})",
        title_justify="left",
    )
    for part in report.up.parts:
        state = part.state if part.healthy or part.state != "running" else "running, unhealthy"
        color = {"failed": "red", "restarting": "yellow"}.get(part.state, "")
        parts.add_row(
            part.name,
            f"[{color}]{state}[/]" if color else state,
            str(part.pid or "-"),
            str(part.restarts),
            part.exit or "-",
            Text(part.last_error or "-"),  # not rich markup: a log line may hold [brackets]
        )
    console.print(parts)
