"""``clickstream results``: what the count jobs wrote to the result topic."""

from __future__ import annotations

import click

from clickstream.cli.base import Context, cli, pass_context, warn


@cli.group()
def results() -> None:
    """Read the result topic (topics.results)."""


@results.command("tail")
@click.option(
    "--metric",
    default="shop.gender",
    show_default=True,
    help="Which counts (shop.gender, shop.action, web.pages, ...: the dashboard's metrics).",
)
@click.option("--from-beginning", is_flag=True, help="Start at the topic's oldest record.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many lines.")
@click.option("--with-window", is_flag=True, help="Start each line with the window's start time.")
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Print a window once it had no new count for this many seconds.",
)
@pass_context
def results_tail(
    ctx: Context,
    metric: str,
    from_beginning: bool,
    count: int | None,
    with_window: bool,
    settle: float,
) -> None:
    """Print a line per window as seed 001's console consumer did: [{"0":12},{"1":9},{"2":3}]
    (for shop.gender the seed's gender codes: 0 female, 1 male, 2 unknown). A window is printed
    once its counts settle, and again if a late count changes it. Ctrl-C stops."""
    from clickstream.signals import stop_signals
    from clickstream.tail import ResultsTail, window_time

    settings = ctx.client_settings()

    def emit(window_start: int, line: str) -> None:
        click.echo(f"{window_time(window_start)} {line}" if with_window else line)

    tail = ResultsTail(settings, metric, from_beginning=from_beginning, settle_s=settle)
    with stop_signals() as stop:
        stats = tail.run(emit, stop, count, on_wait=warn)
    if stats.skipped:
        warn(f"skipped {stats.skipped} records that are not window counts")
