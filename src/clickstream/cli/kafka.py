"""``clickstream broker`` and ``clickstream topics``."""

from __future__ import annotations

import click

from clickstream.broker.embedded import IN_MEMORY_WARNING, EmbeddedBroker
from clickstream.cli.base import Context, cli, pass_context, warn
from clickstream.errors import ClickstreamError


@cli.command()
@click.option("--port", type=int, help="Port to listen on (0: a free one). Default: broker.port.")
@pass_context
def broker(ctx: Context, port: int | None) -> None:
    """Run the embedded Kafka-compatible broker (Tansu) until Ctrl-C."""
    from clickstream.kafka.admin import wait_for_cluster
    from clickstream.stack import stop_signals

    settings = ctx.settings
    if not settings.embedded_broker:
        wait_for_cluster(settings)
        click.echo(
            f"kafka.bootstrap_servers is set: using the cluster at "
            f"{settings.kafka.bootstrap_servers}; no embedded broker started"
        )
        return
    broker_settings = settings.broker
    if port is not None:
        broker_settings = broker_settings.model_copy(update={"port": port})
    with stop_signals() as stop:
        embedded = EmbeddedBroker(broker_settings)
        embedded.start()
        try:
            click.echo(f"broker listening on {embedded.bootstrap} (pid {embedded.pid})")
            warn(f"note: {IN_MEMORY_WARNING}")
            while not stop.wait(0.5):
                if not embedded.running():
                    raise ClickstreamError("the broker exited unexpectedly")
        finally:
            embedded.stop()
            click.echo("broker stopped")


@cli.group()
def topics() -> None:
    """List and create Kafka topics."""


@topics.command("list")
@pass_context
def topics_list(ctx: Context) -> None:
    """Topics with their partitions and record counts."""
    from rich.console import Console
    from rich.table import Table

    from clickstream.kafka.admin import describe_topics

    table = Table("topic", "partitions", "records")
    for info in describe_topics(ctx.client_settings()):
        table.add_row(info.name, str(info.partitions), str(info.records))
    Console().print(table)


@topics.command("create")
@click.argument("names", nargs=-1, required=True)
@click.option("--partitions", type=click.IntRange(min=1), help="Default: topics.partitions.")
@pass_context
def topics_create(ctx: Context, names: tuple[str, ...], partitions: int | None) -> None:
    """Create topics (existing ones are left as they are)."""
    from clickstream.kafka.admin import ensure_topics

    created = ensure_topics(ctx.client_settings(), names, partitions)
    for name in names:
        click.echo(f"{name}: {'created' if name in created else 'exists'}")
