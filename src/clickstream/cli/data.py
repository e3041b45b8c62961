"""``clickstream sql`` and ``clickstream simulate``."""

from __future__ import annotations

import sys
from typing import Any

import click

from clickstream.cli.base import Context, cli, pass_context, warn
from clickstream.errors import ClickstreamError


@cli.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@pass_context
def sql(ctx: Context, query: str, fmt: str) -> None:
    """Run a SQL QUERY on the warehouse (DuckDB), e.g. "select * from sessions limit 5"."""
    from clickstream.sinks.duckdb_table import connect

    path = ctx.settings.duckdb_path
    if not path.exists():
        raise ClickstreamError(f"no warehouse at {path} yet: run a job first (clickstream up)")
    import duckdb

    with connect(path, read_only=True, timeout=ctx.settings.warehouse.lock_timeout_s) as con:
        try:
            cursor = con.execute(query)
        except duckdb.Error as exc:
            raise ClickstreamError(f"query failed: {str(exc).splitlines()[0]}") from None
        columns = [d[0] for d in cursor.description or []]
        rows = cursor.fetchall()
    _print_rows(columns, rows, fmt)


def _print_rows(columns: list[str], rows: list[tuple[Any, ...]], fmt: str) -> None:
    if fmt == "json":
        import json

        for row in rows:
            click.echo(json.dumps(dict(zip(columns, row, strict=True)), default=str))
    elif fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        Console().print(table)
        click.echo(f"{len(rows)} rows")


@cli.group()
def simulate() -> None:
    """Generate demo traffic."""


@simulate.command("web")
@click.option("--collector", "collector_url", help="Collector URL. Default: collector.host:port.")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Events/s (0: flat out).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--duration", type=float, help="Stop after this many seconds.")
@click.option("--endless", is_flag=True, help="Run until Ctrl-C.")
@click.option("--seed", type=int, help="Random seed, for reproducible traffic.")
@click.option("--write-key", help="Write key of the site, if the collector needs one.")
@click.option(
    "--time-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Simulated time per real second: 60 makes a 30-minute session gap pass in 30 s.",
)
@pass_context
def simulate_web(
    ctx: Context,
    collector_url: str | None,
    rate: float,
    count: int | None,
    duration: float | None,
    endless: bool,
    seed: int | None,
    write_key: str | None,
    time_scale: float,
) -> None:
    """Visitors browsing a shop site, sent through the collector over HTTP."""
    from clickstream.simulators.sender import run_web_simulation

    section = ctx.settings.collector
    url = collector_url or f"http://{section.host}:{section.port}"
    stats = run_web_simulation(
        url,
        rate=rate,
        count=count,
        duration_s=duration,
        seed=seed,
        write_key=write_key,
        endless=endless,
        time_scale=time_scale,
    )
    click.echo(
        f"sent {stats.sent} events in {stats.requests} requests: {stats.accepted} accepted, "
        f"{stats.rejected} rejected, {stats.failed} failed ({stats.sessions} sessions, "
        f"{stats.visitors} visitors)"
    )
    if stats.first_error:
        warn(f"first error: {stats.first_error}")
