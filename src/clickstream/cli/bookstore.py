"""``clickstream bookstore`` and ``clickstream simulate bookstore``."""

from __future__ import annotations

import click

from clickstream.cli.base import Context, cli, pass_context
from clickstream.cli.data import simulate


@cli.command()
@click.option("--host", help="Default: bookstore.host.")
@click.option("--port", type=int, help="Default: bookstore.port.")
@pass_context
def bookstore(ctx: Context, host: str | None, port: int | None) -> None:
    """Run the bookstore web app (its pages send events through the collector)."""
    import uvicorn

    from clickstream.bookstore.app import create_app

    settings = ctx.client_settings()
    section = settings.bookstore
    bind_host = host or section.host
    bind_port = port if port is not None else section.port
    click.echo(
        f"bookstore on http://{bind_host}:{bind_port} ({section.books} books) -> topic "
        f"{settings.topics.bookstore} at {settings.kafka.bootstrap_servers}"
    )
    uvicorn.run(create_app(settings), host=bind_host, port=bind_port, log_level="warning")


@simulate.command("bookstore")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Events/s (0: flat out).")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--endless", is_flag=True, help="Run until Ctrl-C.")
@click.option("--seed", type=int, help="Random seed, for reproducible traffic.")
@click.option("--topic", help="Topic to send to. Default: topics.bookstore.")
@pass_context
def simulate_bookstore(
    ctx: Context,
    rate: float,
    count: int | None,
    endless: bool,
    seed: int | None,
    topic: str | None,
) -> None:
    """Bookstore visitors: description opens and closes, and purchases, straight to Kafka.

    Without --count or --endless, sends 1000 events."""
    from clickstream.simulators.bookstore import simulate_bookstore as run

    if count is not None and endless:
        raise click.UsageError("--count and --endless exclude each other")
    limit = None if endless else (count or 1000)
    stats = run(ctx.client_settings(), rate=rate, count=limit, seed=seed, topic=topic)
    click.echo(stats.summary())
