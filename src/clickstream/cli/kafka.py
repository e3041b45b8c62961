"""``clickstream broker``, ``clickstream jars`` and ``clickstream topics``."""

from __future__ import annotations

from pathlib import Path

import click

from clickstream.cli.base import Context, cli, pass_context
from clickstream.errors import ClickstreamError


@cli.command()
@click.option("--port", type=int, help="Port to listen on (0: a free one). Default: broker.port.")
@pass_context
def broker(ctx: Context, port: int | None) -> None:
    """Run the embedded broker (Apache Kafka, one node, data in DATA_DIR/kafka) until Ctrl-C."""
    from clickstream.broker.embedded import EmbeddedBroker
    from clickstream.kafka.admin import wait_for_cluster
    from clickstream.signals import Stopped, stop_signals

    settings = ctx.settings
    if not settings.embedded_broker:
        wait_for_cluster(settings)
        click.echo(
            f"kafka.bootstrap_servers is set: using the cluster at "
            f"{settings.kafka.bootstrap_servers}; no embedded broker started"
        )
        return
    if port is not None:
        broker = settings.broker.model_copy(update={"port": port})
        settings = settings.model_copy(update={"broker": broker})
    with stop_signals() as stop:
        embedded = EmbeddedBroker(
            settings, settings.data_dir / "logs" / "broker.log", progress=click.echo
        )
        try:
            with stop.raising():  # the jar download and the start hear a stop too
                embedded.start()
            click.echo(
                f"broker listening on {embedded.bootstrap} (pid {embedded.pid}, "
                f"data in {settings.broker_dir}, log in {embedded.log_file})"
            )
            while not stop.wait(0.5):
                if not embedded.running():
                    raise ClickstreamError(
                        f"the broker exited unexpectedly (see {embedded.log_file})"
                    )
        except Stopped:
            click.echo("stopped while starting")
        finally:
            embedded.stop()
            click.echo("broker stopped")


@cli.group()
def jars() -> None:
    """The Java libraries fetched from Maven (the broker's, Spark's Kafka connector)."""


@jars.command("fetch")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to put them. Default: jars.dir (DATA_DIR/jars).",
)
@pass_context
def jars_fetch(ctx: Context, folder: Path | None) -> None:
    """Download every jar clickstream needs, to run where there is no network: copy the folder
    to the other machine's jars.dir."""
    from clickstream.broker.node import KAFKA_JARS, java_executable
    from clickstream.maven import resolve
    from clickstream.spark.session import kafka_connector

    settings = ctx.settings
    target = folder or settings.jars_dir
    for jar_set in (KAFKA_JARS, kafka_connector()):
        jars = resolve(
            jar_set,
            target,
            java=java_executable(settings),
            repository=settings.jars.repository,
            progress=click.echo,
        )
        click.echo(f"{jar_set.title}: {len(jars)} jars in {target / jar_set.folder}")


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
