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
    from clickstream.sinks.duckdb_table import read_query

    warehouse = ctx.settings
    columns, rows = read_query(
        warehouse.duckdb_path, query, timeout=warehouse.warehouse.lock_timeout_s
    )
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


@simulate.command("shop")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--topic", help="Topic to send to. Default: topics.shop (--seed-format: topics.shop_genders)."
)
@click.option(
    "--seed-format",
    is_flag=True,
    help="Send what seed 001's producer sent: the gender byte alone (0, 1, 2), to topic sex.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Events/s (0: flat out).",
)
@click.option(
    "--start",
    help="Event time of the first row, ISO 8601 (2026-01-01T00:00:00Z; UTC without a zone): "
    "row k gets start + k*1000/rate ms and rows go out as fast as possible. "
    "Default: the time each row is sent.",
)
@click.option("--strict", is_flag=True, help="Stop at the first malformed row (default: skip it).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after S s.")
@click.option("--endless", is_flag=True, help="Synthetic rows until Ctrl-C.")
@click.option("--seed", type=int, help="Random seed of synthetic rows, for reproducible rows.")
@click.option(
    "--generate",
    type=click.IntRange(min=0),
    metavar="N",
    help="Write N synthetic rows to --out in the log's format, and send nothing.",
)
@click.option("--out", type=click.Path(dir_okay=False), help="File of --generate.")
@click.option("--force", is_flag=True, help="Let --generate overwrite --out.")
@pass_context
def simulate_shop(
    ctx: Context,
    path: str | None,
    topic: str | None,
    seed_format: bool,
    rate: float,
    start: str | None,
    strict: bool,
    count: int | None,
    duration: float | None,
    endless: bool,
    seed: int | None,
    generate: int | None,
    out: str | None,
    force: bool,
) -> None:
    """Shopping-log events to Kafka: a replay of PATH, or synthetic rows without PATH.

    PATH is a CSV in the seed's user_log.csv format: a header naming user_id, item_id, cat_id,
    merchant_id, brand_id, month, day, action, age_range, gender and province (any order), then
    one row per line. Malformed rows are skipped and counted (--strict: stop at the first).
    """
    from clickstream.errors import ConfigError
    from clickstream.signals import stop_signals
    from clickstream.simulators.shop import MalformedRowError, parse_start
    from clickstream.simulators.shop_run import ShopSource, run_replay, write_synthetic_log

    if generate is not None or out is not None:
        if generate is None or out is None:
            raise click.UsageError("--generate N and --out FILE go together")
        if path is not None or count or duration or endless:
            raise click.UsageError("--generate takes no PATH, --count, --duration or --endless")
        written, users = write_synthetic_log(out, generate, seed, force)
        click.echo(f"wrote {written} rows ({users} users) to {out}")
        return
    if path is not None and (endless or seed is not None):
        raise click.UsageError("--endless and --seed are for synthetic rows (without PATH)")
    if path is None and not (count or duration or endless):
        raise click.UsageError("synthetic rows never end: give --count, --duration or --endless")
    try:
        start_ms = parse_start(start) if start is not None else None
        if start_ms is not None and rate <= 0:
            raise ConfigError("--start needs --rate > 0 (event times are 1000/rate ms apart)")
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--start") from None
    with ShopSource(path, seed) as source:  # a bad header stops us before Kafka is asked
        settings = ctx.client_settings()
        with stop_signals() as stop:
            try:
                stats = run_replay(
                    settings, source, stop=stop, topic=topic, rate=rate, start_ms=start_ms,
                    strict=strict, count=count, duration_s=duration, seed_format=seed_format,
                )  # fmt: skip
            except MalformedRowError as exc:
                click.echo(exc.stats.summary())
                raise
    click.echo(stats.summary())
    if stats.interrupted:
        warn("stopped early: what was sent is in the topic")
    if stats.failed:
        raise ClickstreamError(f"{stats.failed} events were not delivered: {stats.first_error}")


@simulate.command("users")
@click.option("--rate", type=float, default=1.0, show_default=True, help="Users/s (0: flat out).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many users.")
@click.option("--endless", is_flag=True, help="Run until Ctrl-C.")
@click.option("--seed", type=int, help="Random seed, for reproducible users.")
@pass_context
def simulate_users(
    ctx: Context, rate: float, count: int | None, endless: bool, seed: int | None
) -> None:
    """Users (Faker ru_RU names, emails, a user_id hashed from the email) to joins.users_topic."""
    from clickstream.simulators.joins import simulate_users as run

    if count is None and not endless:
        raise click.UsageError("give --count or --endless")
    settings = ctx.client_settings()
    try:
        stats = run(settings, rate=rate, count=count, endless=endless, seed=seed)
    except KeyboardInterrupt:
        return
    click.echo(f"sent {stats.users} users to {settings.joins.users_topic}")


@simulate.command("page-events")
@click.option("--rate", type=float, default=0.0, show_default=True, help="Events/s (0: flat out).")
@click.option(
    "--count", type=click.IntRange(min=1), help="Stop after the events of this many users."
)
@click.option("--endless", is_flag=True, help="Run until Ctrl-C.")
@click.option("--seed", type=int, help="Random seed, for reproducible events.")
@click.option(
    "--group", default="clickstream-page-events", show_default=True, help="Consumer group."
)
@pass_context
def simulate_page_events(
    ctx: Context, rate: float, count: int | None, endless: bool, seed: int | None, group: str
) -> None:
    """Read users (a consumer group that commits its offsets) and send 1-10 page events of each
    to joins.events_topic."""
    from clickstream.simulators.joins import simulate_page_events as run

    if count is None and not endless:
        raise click.UsageError("give --count or --endless")
    settings = ctx.client_settings()
    try:
        stats = run(settings, rate=rate, count=count, endless=endless, seed=seed, group_id=group)
    except KeyboardInterrupt:
        return
    click.echo(
        f"sent {stats.events} events of {stats.users} users to {settings.joins.events_topic}"
    )
